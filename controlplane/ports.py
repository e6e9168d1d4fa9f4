"""Free TCP ports on 127.0.0.1."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Ports we pre-assign come from below the kernel's ephemeral range. A port the
# kernel handed out with bind(0) is ephemeral, and so may be handed out again
# to any of the many processes a starting Ray node opens, between our choosing
# it and the server binding it; ports below the range are never handed out.
_LOWEST = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


# A port is free when chosen, and bound only seconds later, once the server it is for
# has started. Clusters starting side by side (a second `make cluster-up`, test
# workers) would each find the other's chosen ports still free: every choice is
# recorded here, under a lock, and not handed out again for RESERVED_S.
RESERVATIONS = Path(tempfile.gettempdir()) / "ray-rl-ports.json"
RESERVED_S = 300.0


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free now, outside the ephemeral range, and not
    handed out by this function (in any process on this machine) in the last RESERVED_S."""
    high = max(_LOWEST + 1000, _ephemeral_low())
    with _reservations() as reserved:
        chosen: list[int] = []
        for port in random.sample(range(_LOWEST, high), k=min(high - _LOWEST, 50 * count + 100)):
            if port not in chosen and str(port) not in reserved and not port_in_use(port) and _bindable(port):
                chosen.append(port)
                if len(chosen) == count:
                    reserved.update({str(p): time.time() for p in chosen})
                    return chosen
    raise RuntimeError(f"could not find {count} free ports between {_LOWEST} and {high}")


@contextlib.contextmanager
def _reservations() -> Iterator[dict[str, float]]:
    """The live reservations, read and written back under an exclusive lock (none where
    the temp dir's file is another user's: the ports are still checked free as before)."""
    try:
        lock = open(RESERVATIONS.with_suffix(".lock"), "a")  # noqa: SIM115 - held across the yield
    except OSError:
        yield {}
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            reserved = json.loads(RESERVATIONS.read_text())
        except (OSError, ValueError):
            reserved = {}
        now = time.time()
        live = {port: at for port, at in reserved.items() if isinstance(at, int | float) and now - at < RESERVED_S}
        yield live
        scratch = RESERVATIONS.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(live))
        scratch.replace(RESERVATIONS)


def free_port() -> int:
    return free_ports(1)[0]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.1)
    return False
