"""Free TCP ports on 127.0.0.1."""

from __future__ import annotations

import random
import socket
import time
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


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free now, outside the ephemeral range."""
    high = max(_LOWEST + 1000, _ephemeral_low())
    chosen: list[int] = []
    for port in random.sample(range(_LOWEST, high), k=min(high - _LOWEST, 50 * count + 100)):
        if port not in chosen and not port_in_use(port) and _bindable(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"could not find {count} free ports between {_LOWEST} and {high}")


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
