"""The KubeRay provider's decisions, against a fake Kubernetes API: operator
present or not, the order of steps, waiting with progress, timeouts that name
the stuck pod and its events, and a dry run that changes nothing."""

from __future__ import annotations

import pytest

from controlplane.errors import ClusterError
from controlplane.kuberay.provider import KubeRayProvider
from controlplane.state import StateDir


class FakeApi:
    def __init__(self, operator=True, states=("pending", "ready"), pods=None):
        self.operator = operator
        self.states = list(states)
        self._pods = pods or [{"name": "ray-rl-head-abcde", "group": "headgroup", "phase": "Running", "ready": True}]
        self.calls = []

    def operator_installed(self):
        return self.operator

    def raycluster(self):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"status": {"state": state}}

    def pods(self):
        return self._pods

    def events(self, pod):
        return ["FailedScheduling: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."]

    def ensure_namespace(self):
        self.calls.append("namespace")

    def secret_value(self, name, key):
        return "token-from-kuberay"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def provider(tmp_path, api, **kwargs):
    commands = []
    clock = Clock()
    made = KubeRayProvider(
        StateDir(tmp_path / ".cluster"),
        api=api,
        run=commands.append,
        clock=clock,
        sleep=clock.sleep,
        s3_env_file=tmp_path / "s3-credentials.env",
        **kwargs,
    )
    made._connect = lambda: commands.append(["<connect>"])  # port-forwards need a real cluster
    return made, commands


def test_installs_the_pinned_operator_only_when_the_crd_is_missing(tmp_path):
    missing, _ = provider(tmp_path, FakeApi(operator=False))
    steps = missing.plan(operator_installed=False)
    assert steps[0].command[:4] == ["helm", "upgrade", "--install", "kuberay-operator"]
    assert "--version" in steps[0].command and "1.7.0" in steps[0].command
    present, _ = provider(tmp_path, FakeApi(operator=True))
    assert not any(step.command and step.command[0] == "helm" for step in present.plan(operator_installed=True))


def test_up_runs_the_steps_in_order_and_waits_until_ready(tmp_path, capsys):
    api = FakeApi(operator=False, states=("pending", "pending", "ready"))
    made, commands = provider(tmp_path, api)
    assert made.up() == 0
    assert commands[0][0] == "helm"
    assert commands[1] == ["kubectl", "apply", "-k", "k8s/overlays/dev"]
    assert commands[-1] == ["<connect>"]
    assert api.calls == ["namespace"]
    # The overlay's secretGenerator reads the keys from a private file that up writes.
    env_file = tmp_path / "s3-credentials.env"
    assert [line.split("=")[0] for line in env_file.read_text().splitlines()] == [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    assert env_file.stat().st_mode & 0o777 == 0o600
    out = capsys.readouterr().out
    assert "RayCluster pending" in out and "RayCluster ready" in out


def test_gpu_overlay_creates_no_s3_secret(tmp_path):
    api = FakeApi()
    made, commands = provider(tmp_path, api, overlay="gpu")
    made.up()
    assert api.calls == ["namespace"]
    assert ["kubectl", "apply", "-k", "k8s/overlays/gpu"] in commands
    assert not (tmp_path / "s3-credentials.env").exists()


def test_timeout_names_the_stuck_pod_and_its_events(tmp_path):
    stuck = [{"name": "ray-rl-gpu-workers-xyz", "group": "gpu-workers", "phase": "Pending", "ready": False}]
    made, _ = provider(tmp_path, FakeApi(states=("pending",), pods=stuck), timeout_s=60)
    with pytest.raises(ClusterError) as caught:
        made.wait_ready()
    message = str(caught.value)
    assert "not ready after 60s" in message
    assert "pod ray-rl-gpu-workers-xyz (Pending)" in message
    assert "Insufficient nvidia.com/gpu" in message


def test_dry_run_prints_every_command_and_manifest_and_changes_nothing(tmp_path, capsys):
    api = FakeApi(operator=False)
    made, commands = provider(tmp_path, api, dry_run=True)
    assert made.up() == 0
    out = capsys.readouterr().out
    assert commands == [] and api.calls == []
    assert out.index("helm upgrade --install") < out.index("kubectl apply -k k8s/overlays/dev")
    assert "kind: RayCluster" in out and "kind: Deployment" in out  # the manifests themselves
    assert "values not shown" in out
    assert "dry run: nothing was applied" in out


def test_unknown_overlay_is_refused(tmp_path):
    with pytest.raises(ClusterError, match=r"OVERLAY='prod' is neither one of k8s/overlays \(dev, gpu, local\)"):
        KubeRayProvider(StateDir(tmp_path), overlay="prod")
