"""The cluster's state folder (default `.cluster/`, git- and ray-ignored).

.cluster/
  env            client settings, `export NAME=value` lines, mode 0600
  state.json     what `up` started: PIDs, ports, paths (mode 0600)
  auth_token     the Ray token (mode 0600); found through RAY_AUTH_TOKEN_PATH
  s3/            the S3 server's data: survives cluster-down and restarts
  logs/          each server's own output
  ray -> /tmp/rl-ray-...   Ray's temp dir (a short path: Unix sockets
                           must stay under 107 bytes)
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.provider import ClientSettings

STATE_DIR_VAR = "CLUSTER_STATE_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_VAR) or REPO_ROOT / ".cluster").resolve()


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def auth_token(self) -> Path:
        return self.root / "auth_token"

    @property
    def s3_data(self) -> Path:
        return self.root / "s3"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ray_link(self) -> Path:
        return self.root / "ray"

    # -- what `up` recorded ---------------------------------------------------

    def load(self) -> dict[str, Any] | None:
        if not self.state_file.exists():
            return None
        return json.loads(self.state_file.read_text())

    def save(self, state: Mapping[str, Any]) -> None:
        write_private(self.state_file, json.dumps(state, indent=2) + "\n")

    def clear(self) -> None:
        for path in (self.state_file, self.env_file):
            path.unlink(missing_ok=True)

    # -- secrets that outlive a restart (the S3 data needs the same keys) ---

    def ensure_auth_token(self) -> Path:
        if not self.auth_token.exists():
            write_private(self.auth_token, secrets.token_hex(32))
        return self.auth_token

    def s3_credentials(self) -> dict[str, str]:
        path = self.root / "s3-credentials.json"
        if not path.exists():
            write_private(
                path,
                json.dumps(
                    {
                        "access_key_id": "rl" + secrets.token_hex(9),
                        "secret_access_key": secrets.token_urlsafe(30),
                    }
                ),
            )
        return json.loads(path.read_text())

    # -- the client env file --------------------------------------------------

    def write_client_settings(self, settings: ClientSettings, header: str) -> None:
        """Every provider's one way to publish its cluster to clients."""
        self.write_env(settings.variables(), header)

    def write_env(self, variables: Mapping[str, str], header: str) -> None:
        lines = [f"# {line}" if line else "#" for line in header.splitlines()]
        lines += [f"export {name}={shlex.quote(str(value))}" for name, value in variables.items()]
        write_private(self.env_file, "\n".join(lines) + "\n")

    def read_env(self) -> dict[str, str]:
        """Parse the `export NAME=value` lines back (for our own commands)."""
        variables = {}
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                parsed = shlex.split(value)
                variables[name] = parsed[0] if parsed else ""
        return variables
