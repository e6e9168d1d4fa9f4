"""What the kernel says about processes and sockets (/proc), independent of
anything the control plane records: the tests judge the cluster by this."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def open_paths(pid: int) -> list[str]:
    """The files, folders and working directory a process holds open."""
    found = []
    for link in (f"/proc/{pid}/cwd", *(f"/proc/{pid}/fd/{fd}" for fd in _fds(pid))):
        try:
            found.append(os.readlink(link))
        except OSError:
            continue
    return found


def _fds(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


def _socket_owners(of: set[int] | None = None) -> dict[str, int]:
    owners = {}
    for pid in of if of is not None else pids():
        for fd in _fds(pid):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners[link[8:-1]] = pid
    return owners


def _address(hex_address: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_address)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening_sockets(of: set[int] | list[int] | None = None) -> list[tuple[str, int, int | None, str]]:
    """(address, port, pid, command line) of every listening TCP socket (of these processes, or all)."""
    owners = _socket_owners(set(of) if of is not None else None)
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # 0A: LISTEN
                continue
            pid = owners.get(fields[9])
            if of is not None and pid is None:
                continue
            hex_address, hex_port = fields[1].split(":")
            found.append((_address(hex_address, v6), int(hex_port, 16), pid, command_line(pid) if pid else ""))
    return found


def is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def cluster_footprint(cluster) -> tuple[dict[int, str], set[int], Path]:
    """Every process started since cluster-up that holds a file, folder or socket of the cluster
    (its state folder, Ray's temp folder), the ports they listen on, and Ray's temp folder."""
    state = cluster.state.load()
    assert state, "the cluster is not up: nothing to check"
    ray_dir = Path(state["ray_temp_dir"]).resolve()
    roots = (str(ray_dir), str(cluster.state.root.resolve()))
    started_since = pids() - cluster.pids_before_up - {os.getpid()}
    held = {pid: command_line(pid) for pid in started_since if any(p.startswith(roots) for p in open_paths(pid))}
    ports = {port for _, port, _, _ in listening_sockets(set(held))}
    return held, ports, ray_dir


def assert_nothing_left(processes: dict[int, str], ports: set[int], ray_dir: Path) -> None:
    """After cluster-down: none of the footprint's processes alive, ports bound, or Ray's folder there."""
    deadline = time.monotonic() + 10  # a killed process takes a moment to be reaped
    while time.monotonic() < deadline and set(processes) & pids():
        time.sleep(0.2)
    alive = {pid: command for pid, command in processes.items() if pid in pids()}
    assert not alive, f"still running after cluster-down: {alive}"
    bound = {port for _, port, _, _ in listening_sockets() if port in ports}
    assert not bound, f"ports of the cluster still listening after cluster-down: {sorted(bound)}"
    assert not ray_dir.exists(), f"Ray's temp folder {ray_dir} is still there"
