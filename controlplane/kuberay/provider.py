"""`up`, `down` and `status` on the current kube context (PROVIDER=kuberay).

    up:   install the pinned KubeRay operator with Helm if the RayCluster CRD
          is missing; create the S3 Secret (dev overlay: keys generated here,
          the same as the local provider's); `kubectl apply -k` the overlay;
          wait until the RayCluster is ready, showing progress; port-forward
          the dashboard (and the dev S3 server) to 127.0.0.1; fetch the Ray
          token KubeRay generated; write the same client env file as the local
          provider.
    down: stop the port-forwards, `kubectl delete -k` the overlay.

With dry_run every step is printed, in order, with the manifests it would
apply, and nothing is changed. Kubernetes is reached through `KubeApi`, a thin
wrapper over the kubernetes client, so that the decisions here are tested
without a cluster.
"""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane import processes
from controlplane.clusterspec import ClusterSpec, resolve_overlay
from controlplane.errors import ClusterError
from controlplane.kuberay import manifests
from controlplane.kuberay.crds import OPERATOR
from controlplane.ports import free_port, wait_for_port
from controlplane.provider import ClientSettings
from controlplane.state import REPO_ROOT, StateDir, write_private
from jobs.common.cluster.ports import DASHBOARD_PORT

NAMESPACE = "ray-rl"
CLUSTER = "ray-rl"
S3_SECRET = "ray-rl-s3-credentials"


@dataclass
class Step:
    what: str
    command: list[str] | None = None
    manifest: str | None = None
    # Done through the kubernetes client rather than a command.
    action: Callable[[], None] | None = None

    def show(self) -> str:
        text = f"# {self.what}"
        if self.command:
            text += "\n" + shlex.join(self.command)
        if self.manifest:
            text += "\n" + self.manifest.rstrip()
        return text


class KubeApi:
    """The few reads and writes the provider needs, through the kubernetes client."""

    def __init__(self) -> None:
        from kubernetes import client, config

        try:
            config.load_kube_config()
        except Exception as err:  # noqa: BLE001 - no kubeconfig, bad context, ...
            raise ClusterError(f"no usable kube context ({err}); check `kubectl config current-context`") from None
        self._client = client
        self.core = client.CoreV1Api()
        self.custom = client.CustomObjectsApi()
        self.extensions = client.ApiextensionsV1Api()

    def _missing(self, err: Exception) -> bool:
        return getattr(err, "status", None) == 404

    def operator_installed(self) -> bool:
        try:
            self.extensions.read_custom_resource_definition("rayclusters.ray.io")
            return True
        except self._client.ApiException as err:
            if self._missing(err):
                return False
            raise ClusterError(f"the Kubernetes API refused to read the RayCluster CRD: {err.reason}") from None
        except Exception as err:  # noqa: BLE001 - connection refused, DNS, TLS ...
            host = self._client.Configuration.get_default_copy().host
            raise ClusterError(f"cannot reach the Kubernetes API at {host}: {err.__class__.__name__}") from None

    def raycluster(self) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object("ray.io", "v1", NAMESPACE, "rayclusters", CLUSTER)
        except self._client.ApiException as err:
            if self._missing(err):
                return None
            raise

    def pods(self) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(NAMESPACE, label_selector=f"ray.io/cluster={CLUSTER}").items
        return [
            {
                "name": pod.metadata.name,
                "group": (pod.metadata.labels or {}).get("ray.io/group", "?"),
                "phase": pod.status.phase,
                "ready": any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])),
            }
            for pod in pods
        ]

    def events(self, pod: str) -> list[str]:
        events = self.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={pod}").items
        return [f"{e.reason}: {e.message}" for e in events[-5:]]

    def secret_value(self, name: str, key: str) -> str | None:
        try:
            secret = self.core.read_namespaced_secret(name, NAMESPACE)
        except self._client.ApiException as err:
            if self._missing(err):
                return None
            raise
        value = (secret.data or {}).get(key)
        return base64.b64decode(value).decode() if value else None

    def ensure_namespace(self) -> None:
        body = self._client.V1Namespace(metadata=self._client.V1ObjectMeta(name=NAMESPACE))
        try:
            self.core.create_namespace(body)
        except self._client.ApiException as err:
            if err.status != 409:
                raise


def run_command(command: list[str]) -> None:
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"`{shlex.join(command)}` failed: {(result.stderr or result.stdout).strip()[-800:]}")


class KubeRayProvider:
    name = "kuberay"

    def __init__(
        self,
        state_dir: StateDir,
        overlay: str = "dev",
        dashboard_port: int = DASHBOARD_PORT,
        dry_run: bool = False,
        api: KubeApi | None = None,
        run: Callable[[list[str]], None] = run_command,
        timeout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        s3_env_file: Path = manifests.DEV_S3_ENV_FILE,
    ):
        self.state_dir = state_dir
        self.overlay = overlay
        self.overlay_path = resolve_overlay(overlay)
        # The dev overlay, and overlays built on it (local), run an S3 server in the cluster with keys made here.
        self.in_cluster_s3 = self._has_in_cluster_s3()
        self.dashboard_port = dashboard_port
        self.dry_run = dry_run
        self._api = api
        self.run = run
        self.timeout_s = timeout_s
        self.clock = clock
        self.sleep = sleep
        self.s3_env_file = s3_env_file

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi()
        return self._api

    # ------------------------------------------------------------------ plan

    def rendered(self) -> str:
        return manifests.render(self.overlay_path)

    def _has_in_cluster_s3(self) -> bool:
        docs = manifests.objects(self.rendered())
        return any(doc["kind"] == "Secret" and doc["metadata"]["name"] == S3_SECRET for doc in docs) and any(
            doc["kind"] == "Deployment" and doc["metadata"]["name"] == "seaweedfs" for doc in docs
        )

    def plan(self, operator_installed: bool | None) -> list[Step]:
        steps = []
        if not operator_installed:
            when = " (the RayCluster CRD is missing)" if operator_installed is False else " (if the CRD is missing)"
            helm = ["helm", "upgrade", "--install", OPERATOR["release"], OPERATOR["chart"], "--repo", OPERATOR["repo"]]
            helm += ["--version", OPERATOR["version"], "--namespace", OPERATOR["namespace"], "--create-namespace"]
            steps.append(Step(f"install the KubeRay operator {OPERATOR['version']}{when}", helm + ["--wait"]))
        steps.append(Step(f"namespace {NAMESPACE}", action=lambda: self.api.ensure_namespace()))
        if self.in_cluster_s3:
            steps.append(Step(f"Secret {S3_SECRET}: the dev S3 server's keys, generated into "
                              f"{self.state_dir.root}/s3-credentials.json and written to {self.s3_env_file} "
                              "(mode 0600, git-ignored), which the overlay's secretGenerator reads (values not shown)",
                              action=self._write_s3_env_file))  # fmt: skip
        steps.append(Step(f"apply {self.overlay_path}", ["kubectl", "apply", "-k", self.overlay_path],
                          manifest=self.rendered()))  # fmt: skip
        steps.append(Step(f"wait for RayCluster {NAMESPACE}/{CLUSTER} to be ready (timeout {self.timeout_s:.0f}s)",
                          action=self.wait_ready))  # fmt: skip
        forwards = f"127.0.0.1:{self.dashboard_port} -> svc/{CLUSTER}-head-svc:{DASHBOARD_PORT}"
        if self.in_cluster_s3:
            forwards += ", 127.0.0.1:<free port> -> svc/seaweedfs:8333"
        steps.append(Step(f"kubectl port-forward {forwards}; fetch the Ray token from Secret {NAMESPACE}/{CLUSTER}; "
                          f"write {self.state_dir.env_file}", action=self._connect))  # fmt: skip
        return steps

    def _write_s3_env_file(self) -> None:
        """The dev overlay renders its Secret from this file: `kubectl apply -k` creates it."""
        credentials = self.state_dir.s3_credentials()
        write_private(
            self.s3_env_file,
            f"AWS_ACCESS_KEY_ID={credentials['access_key_id']}\n"
            f"AWS_SECRET_ACCESS_KEY={credentials['secret_access_key']}\n",
        )

    # ------------------------------------------------------------------ up

    def up(self) -> int:
        if self.dry_run:
            try:
                installed: bool | None = self.api.operator_installed()
            except ClusterError:
                installed = None
            for step in self.plan(installed):
                print(step.show() + "\n", flush=True)
            print("dry run: nothing was applied")
            return 0
        for step in self.plan(self.api.operator_installed()):
            print(f"- {step.what}" + (f"\n  + {shlex.join(step.command)}" if step.command else ""), flush=True)
            if step.action:
                step.action()
            elif step.command:
                self.run(step.command)
        return 0

    def wait_ready(self) -> None:
        """Until the RayCluster reports ready; on timeout, name the stuck pods and their events."""
        started = self.clock()
        last = None
        while self.clock() - started < self.timeout_s:
            cluster = self.api.raycluster() or {}
            state = (cluster.get("status") or {}).get("state", "pending")
            pods = self.api.pods()
            summary = f"RayCluster {state}; pods ready " + ", ".join(
                f"{p['group']}:{p['name'].rsplit('-', 1)[-1]}={'yes' if p['ready'] else p['phase']}" for p in pods
            )
            if summary != last:
                print(f"  {self.clock() - started:5.0f}s  {summary}", flush=True)
                last = summary
            if state == "ready":
                return
            self.sleep(5.0)
        stuck = [p for p in self.api.pods() if not p["ready"]]
        details = "; ".join(f"pod {p['name']} ({p['phase']}): {' | '.join(self.api.events(p['name'])) or 'no events'}"
                            for p in stuck) or "no pods were created (is the KubeRay operator running?)"  # fmt: skip
        raise ClusterError(f"RayCluster {NAMESPACE}/{CLUSTER} not ready after {self.timeout_s:.0f}s: {details}")

    def _connect(self) -> None:
        """Port-forwards in their own sessions (stopped by PID on down), token, env file."""
        state: dict[str, Any] = {"provider": self.name, "overlay": self.overlay, "pids": {},
                                 "cluster_id": f"kuberay-{NAMESPACE}-{CLUSTER}"}  # fmt: skip
        env = dict(os.environ)
        forwards = {"dashboard": (f"svc/{CLUSTER}-head-svc", self.dashboard_port, DASHBOARD_PORT)}
        s3_port = free_port()
        if self.in_cluster_s3:
            forwards["s3"] = ("svc/seaweedfs", s3_port, 8333)
        for name, (service, local, remote) in forwards.items():
            cmd = ["kubectl", "port-forward", "-n", NAMESPACE, service, f"{local}:{remote}", "--address", "127.0.0.1"]
            state["pids"][name] = processes.start_in_own_session(cmd, env, self.state_dir.logs / f"forward-{name}.log")
            self.state_dir.save(state)
            if not wait_for_port(local, 30):
                raise ClusterError(f"port-forward of {service} to 127.0.0.1:{local} did not open")
        token = self.api.secret_value(CLUSTER, "auth_token")
        if not token:
            raise ClusterError(f"no Ray token in Secret {NAMESPACE}/{CLUSTER} (key auth_token); is authOptions on?")
        write_private(self.state_dir.auth_token, token)
        # The applied spec: what its groups can ever offer, its S3 settings.
        docs = manifests.objects(self.rendered())
        config = manifests.find(docs, "ConfigMap", "ray-rl-s3")["data"]
        dev = self.in_cluster_s3
        settings = ClientSettings(
            ray_address=f"http://127.0.0.1:{self.dashboard_port}",
            auth_token_path=self.state_dir.auth_token,
            storage_uri=config["RL_STORAGE_URI"],
            aws_region=config["AWS_REGION"],
            worker_groups=self.worker_groups(docs),
            bucket=config["RL_BUCKET"],
            # The dev overlay's in-cluster S3 server, through its port-forward, with the keys made here.
            s3_endpoint=f"http://127.0.0.1:{s3_port}" if dev else None,
            s3_keys=self.state_dir.s3_credentials() if dev else None,
        )
        header = f"Client settings for RayCluster {NAMESPACE}/{CLUSTER} (overlay {self.overlay}), through port-forward."
        self.state_dir.write_client_settings(settings, header)
        print(f"client settings: {self.state_dir.env_file}  (use: source {self.state_dir.env_file})")

    def worker_groups(self, docs: list[dict[str, Any]] | None = None) -> dict[str, dict[str, float]]:
        """What each group of the applied RayCluster can ever offer: max replicas x per-pod shape."""
        docs = docs if docs is not None else manifests.objects(self.rendered())
        return ClusterSpec.from_object(manifests.find(docs, "RayCluster"), source=self.overlay_path).capacity()

    # ------------------------------------------------------------------ down, status

    def down(self) -> int:
        state = self.state_dir.load() or {}
        processes.stop_groups(state.get("pids", {}).values())
        command = ["kubectl", "delete", "-k", self.overlay_path, "--ignore-not-found"]
        print("+ " + shlex.join(command), flush=True)
        if not self.dry_run:
            if self.in_cluster_s3:
                self._write_s3_env_file()  # the overlay does not render without it
            self.run(command)
            self.state_dir.clear()
        return 0

    def status(self) -> int:
        cluster = self.api.raycluster()
        if cluster is None:
            raise ClusterError(
                f"no RayCluster {NAMESPACE}/{CLUSTER} on this kube context; `make cluster-up PROVIDER=kuberay`"
            )
        print(f"provider: kuberay ({self.overlay})  RayCluster {NAMESPACE}/{CLUSTER}: "
              f"{(cluster.get('status') or {}).get('state', 'pending')}")  # fmt: skip
        for pod in self.api.pods():
            print(f"  {pod['group']:<12} {pod['name']:<40} {'ready' if pod['ready'] else pod['phase']}")
        return 0
