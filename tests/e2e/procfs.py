"""What the kernel says about processes and sockets (/proc), independent of
anything the control plane records: the tests judge the cluster by this."""

from __future__ import annotations

import os
import socket
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
