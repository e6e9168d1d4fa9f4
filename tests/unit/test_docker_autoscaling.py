"""The docker cluster's autoscaling parts without a Docker Engine: Ray's autoscaler settings made from the
recorded RayCluster, the node provider Ray drives (what runs, launches, removals), and cluster-up starting
the autoscaler again when it died."""

from __future__ import annotations

import threading
import time

import pytest
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

from controlplane.clusterspec import ClusterSpec
from controlplane.containers import autoscaler, node_provider
from controlplane.containers.node_provider import DockerNodeProvider
from controlplane.containers.nodes import head_tags, worker_tags
from controlplane.containers.provider import AUTOSCALER, DockerProvider
from controlplane.lifecycle import SPEC_FILE
from controlplane.state import StateDir
from tests.unit.test_containers import FakeEngine

SPEC = ClusterSpec.from_overlay("tests/e2e/overlays/autoscale")


class FakeCluster:
    """The containers of one cluster, as ContainerCluster lists, starts and removes them."""

    def __init__(self):
        self.spec = SPEC
        self.state = {"gcs_port": 1, "network": "net"}
        self.engine = FakeEngine()
        self.listed = [
            {"name": "rl-head", "state": "running", "role": "head", "tags": head_tags()},
            {"name": "rl-s3", "state": "running", "role": "s3", "tags": {}},
        ]
        self.removed: list[str] = []
        self.logged: list[str] = []
        self.release = threading.Event()

    def containers(self, everything=False):
        return [dict(c) for c in self.listed if everything or c["state"] == "running"]

    def run_node(self, group, tags=None, show=True):
        name = f"rl-{group.name}-{len(self.listed)}"
        self.listed.append({"name": name, "state": "running", "role": group.name, "tags": dict(tags or {})})
        return name

    def remove_node(self, name, group, hook=True):
        self.release.wait(10)  # a preStop hook takes its time
        self.listed = [c for c in self.listed if c["name"] != name]
        self.removed.append(name)
        return ""

    def discard(self, name):
        self.listed = [c for c in self.listed if c["name"] != name]

    def log_scaling(self, event):
        self.logged.append(event)


@pytest.fixture
def provider(monkeypatch):
    cluster = FakeCluster()
    monkeypatch.setattr("controlplane.containers.autoscaler.load_cluster", lambda root: cluster)
    made = DockerNodeProvider({"state_dir": "/nonexistent"}, "ray-rl")
    monkeypatch.setattr(made, "_demand", lambda: "1 x {CPU: 2, cpu_group: 0.001}")
    monkeypatch.setattr(made, "_read_idle_times", lambda: None)
    return made, cluster


def test_the_autoscaler_reads_rays_translation_of_the_recorded_raycluster_with_the_docker_node_provider(tmp_path):
    SPEC.save(tmp_path / SPEC_FILE)
    config = autoscaler.autoscaling_config(tmp_path)
    assert config["provider"]["type"] == "external"
    assert config["provider"]["module"] == "controlplane.containers.node_provider.DockerNodeProvider"
    assert config["provider"]["disable_node_updaters"] is True  # KubeRay's: the nodes start Ray themselves
    cpu = config["available_node_types"]["cpu-workers"]
    assert (cpu["min_workers"], cpu["max_workers"], cpu["idle_timeout_s"]) == (0, 2, 10.0)
    assert AutoscalingConfig(config).get_max_num_worker_nodes() == 3  # what Ray's v2 autoscaler accepts
    # An edit of the recorded object is picked up at the next round, as KubeRay's reader picks up the CR's.
    reader = autoscaler.RecordedRayClusterReader(tmp_path)
    obj = dict(SPEC.raycluster)
    obj["spec"]["workerGroupSpecs"][0]["maxReplicas"] = 3
    ClusterSpec.from_object(obj, source=SPEC.source).save(tmp_path / SPEC_FILE)
    reader.refresh_cached_autoscaling_config()
    assert reader.get_cached_autoscaling_config().get_node_type_configs()["cpu-workers"].max_worker_nodes == 3


def test_ray_sees_the_head_and_the_workers_with_their_tags_and_never_the_s3_server(provider):
    made, cluster = provider
    created = made.create_node_with_resources_and_labels({}, worker_tags("cpu-workers"), 2, {}, {})
    assert len(created) == 2
    assert sorted(made.non_terminated_nodes({})) == sorted(["rl-head", *created])
    assert made.non_terminated_nodes({"ray-node-type": "worker"}) == list(created)
    assert made.node_tags("rl-head") == head_tags() and made.is_running(next(iter(created)))
    assert [line.split()[:3] for line in cluster.logged] == [["scale-up", "cpu-workers", "+1"]] * 2
    assert "1 of max 2; pending demand: 1 x {CPU: 2, cpu_group: 0.001}" in cluster.logged[0]


def test_a_removal_goes_on_in_the_background_and_the_node_is_gone_for_ray_at_once(provider):
    made, cluster = provider
    (name,) = made.create_node_with_resources_and_labels({}, worker_tags("cpu-workers"), 1, {}, {})
    made.non_terminated_nodes({})
    started = time.monotonic()
    made.terminate_nodes([name, "rl-head"])
    assert time.monotonic() - started < 1  # the autoscaler's round never waits for a preStop hook
    assert name not in made.non_terminated_nodes({}) and "rl-head" in made.non_terminated_nodes({})
    cluster.release.set()
    deadline = time.monotonic() + 10
    while cluster.removed != [name]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert any(line.startswith(f"scale-down cpu-workers -1 {name}") for line in cluster.logged), cluster.logged


def test_a_worker_container_that_died_by_itself_is_reported_at_once_and_cleared_away_later(provider, monkeypatch):
    made, cluster = provider
    (name,) = made.create_node_with_resources_and_labels({}, worker_tags("cpu-workers"), 1, {}, {})
    forgotten = []
    monkeypatch.setattr(made, "_forget_if_lost", lambda container: forgotten.append(container["name"]))
    next(c for c in cluster.listed if c["name"] == name)["state"] = "exited"
    assert name not in made.non_terminated_nodes({})
    assert forgotten == [name]  # the GCS hears of it now, not after its health checks fail
    made.non_terminated_nodes({})
    assert forgotten == [name] and name in {c["name"] for c in cluster.listed}
    monkeypatch.setattr(node_provider, "LOST_AFTER_S", 0.0)
    made.non_terminated_nodes({})
    assert name not in {c["name"] for c in cluster.listed}


def test_cluster_up_starts_a_dead_autoscaler_again_and_touches_nothing_else(tmp_path, monkeypatch):
    made = DockerProvider(StateDir(tmp_path / ".cluster"), dashboard_port=28265)
    made._engine = FakeEngine()
    state = made.new_state()
    state["pids"][AUTOSCALER] = 2**22 + 12345  # no such process
    made.state_dir.save(state)
    monkeypatch.setattr(made, "health", lambda s: {"head": True, "s3": True, AUTOSCALER: s["pids"][AUTOSCALER] == 7})
    started = []
    monkeypatch.setattr(
        "controlplane.processes.start_in_own_session", lambda cmd, env, log, cwd=None: started.append(cmd) or 7
    )
    monkeypatch.setattr(made, "wait_until_ready", lambda s, restarted=(): None)
    monkeypatch.setattr(made, "show_status", lambda s: 0)
    assert made.up() == 0
    assert [cmd[1:3] for cmd in started] == [["-m", "controlplane.containers.autoscaler"]]
    assert made.state_dir.load()["pids"][AUTOSCALER] == 7
    assert not [call for call in made.engine.calls if call[0] in ("run", "rm")]  # no container touched
