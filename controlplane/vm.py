"""PROVIDER=vm: the Ray cluster launcher on AWS, driven by cluster.yaml.

    up:     a Ray token for the cluster (copied to every node by cluster.yaml's
            file_mounts), `ray up cluster.yaml`, then `ray dashboard cluster.yaml`
            (an SSH tunnel to 127.0.0.1:8265) in the background, and the client
            env file.
    down:   stop the tunnel, `ray down cluster.yaml`.
    status: `ray exec cluster.yaml "ray status"`.

AWS credentials for launching come from the user's own AWS configuration; the
nodes reach S3 through their instance profile, so no key is written anywhere.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess

from controlplane import processes
from controlplane.errors import ClusterError
from controlplane.ports import wait_for_port
from controlplane.state import REPO_ROOT, StateDir, write_private
from jobs.common import capacity

CONFIG = REPO_ROOT / "cluster.yaml"
# cluster.yaml's file_mounts copies this file to ~/.ray/auth_token on every node.
TOKEN_FILE = REPO_ROOT / ".cluster" / "vm-auth-token"


class VmProvider:
    name = "vm"

    def __init__(self, state_dir: StateDir, dashboard_port: int = 8265, dry_run: bool = False):
        self.state_dir = state_dir
        self.dashboard_port = dashboard_port
        self.dry_run = dry_run

    def _ray(self, *args: str) -> int:
        command = ["ray", *args]
        print("+ " + shlex.join(command), flush=True)
        if self.dry_run:
            return 0
        return subprocess.run(command, cwd=REPO_ROOT).returncode

    def up(self) -> int:
        if not self.dry_run and not TOKEN_FILE.exists():
            write_private(TOKEN_FILE, secrets.token_hex(32))
        if self._ray("up", str(CONFIG.relative_to(REPO_ROOT)), "--yes") != 0:
            raise ClusterError(
                "`ray up cluster.yaml` failed (see its output above); check your AWS credentials and region"
            )
        tunnel = ["ray", "dashboard", str(CONFIG.relative_to(REPO_ROOT)), "--port", str(self.dashboard_port)]
        print("+ " + shlex.join(tunnel) + "  (in the background)", flush=True)
        if self.dry_run:
            return 0
        pid = processes.start_in_own_session(tunnel, dict(os.environ), self.state_dir.logs / "vm-dashboard.log")
        self.state_dir.save({"provider": self.name, "cluster_id": "vm", "pids": {"dashboard": pid}})
        if not wait_for_port(self.dashboard_port, 120):
            raise ClusterError(f"the dashboard tunnel to 127.0.0.1:{self.dashboard_port} did not open")
        text = CONFIG.read_text()
        self.state_dir.write_env(
            {
                "RAY_ADDRESS": f"http://127.0.0.1:{self.dashboard_port}",
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(TOKEN_FILE),
                "AWS_REGION": re.search(r"AWS_REGION=(\S+)", text).group(1),
                "RL_STORAGE_URI": re.search(r"RL_STORAGE_URI=(\S+)", text).group(1),
                capacity.CAPACITY_ENV_VAR: json.dumps(
                    json.loads(re.search(r"RL_WORKER_GROUPS='([^']+)'", text).group(1)), separators=(",", ":")
                ),
            },
            "Client settings for the cluster-launcher cluster in cluster.yaml (dashboard through `ray dashboard`).",
        )
        print(f"client settings: {self.state_dir.env_file}  (use: source {self.state_dir.env_file})")
        return 0

    def down(self) -> int:
        state = self.state_dir.load() or {}
        processes.stop_groups(state.get("pids", {}).values())
        self._ray("down", str(CONFIG.relative_to(REPO_ROOT)), "--yes")
        if not self.dry_run:
            self.state_dir.clear()
        return 0

    def status(self) -> int:
        return self._ray("exec", str(CONFIG.relative_to(REPO_ROOT)), "ray status")
