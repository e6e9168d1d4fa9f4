"""Whether this host's firewall lets the containers of a bridge network reach each other.

The project's own dockerd leaves the host's firewall alone (`--iptables=false`). But a
default Docker Engine that ran here before (with iptables on) sets the iptables FORWARD
chain's policy to DROP and loads br_netfilter, and both stay after it stops: traffic
between containers on one bridge then passes through FORWARD and is dropped, and the
worker containers never reach the head. This is told before a cluster starts, in one
line, instead of as a timeout minutes later. Nothing here changes the firewall.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def forward_drop_problem(forward_rules: str | None, bridge_nf_call_iptables: str | None) -> str | None:
    """What is wrong, given `iptables -S FORWARD`'s output and the bridge-nf-call-iptables sysctl
    (None where it could not be read); None when bridged traffic can pass."""
    if bridge_nf_call_iptables is None or bridge_nf_call_iptables.strip() != "1" or not forward_rules:
        return None  # br_netfilter off (or unknown): bridged frames never meet iptables
    lines = [line.split() for line in forward_rules.splitlines() if line.strip()]
    policy = next((words[2] for words in lines if words[:2] == ["-P", "FORWARD"] and len(words) > 2), "ACCEPT")
    if policy != "DROP":
        return None
    # A plain `-A FORWARD -j ACCEPT` (no match) lets everything through, whatever the policy.
    if any(words[:2] == ["-A", "FORWARD"] and words[2:] == ["-j", "ACCEPT"] for words in lines):
        return None
    return (
        "this host drops forwarded bridge traffic (iptables FORWARD policy DROP with "
        "net.bridge.bridge-nf-call-iptables=1, as a default Docker Engine that ran here leaves it): the worker "
        "containers could not reach the head. Allow it with `iptables -P FORWARD ACCEPT` (or `sysctl -w "
        "net.bridge.bridge-nf-call-iptables=0`), or use an engine that manages its own rules (DOCKER_HOST=...)"
    )


def read_forward_rules() -> str | None:
    iptables = shutil.which("iptables")
    if not iptables:
        return None
    try:
        result = subprocess.run([iptables, "-S", "FORWARD"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def read_bridge_nf() -> str | None:
    try:
        return BRIDGE_NF.read_text()
    except OSError:
        return None


def check_bridge_forwarding() -> str | None:
    """The problem with this host's firewall for our own dockerd's bridge networks, or None."""
    return forward_drop_problem(read_forward_rules(), read_bridge_nf())
