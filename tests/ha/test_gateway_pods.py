"""HA with the gateways as Pods of the chart's Deployment on the real node, behind its Service.

A crash is a SIGKILL of the gateway's own process (found through containerd, from the host);
the kubelet restarts the container as it would anywhere. Clients use the Service's ClusterIP,
as an in-cluster JupyterHub or an ingress would; kube-proxy picks a replica per connection.
Kernels are run by the session's operator (the chart's own operator is scaled to zero).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from kernelkeeper.crds import model as m
from kernelkeeper.local import build
from kernelkeeper.local.chart import CHART, chart_values, helm_env
from tests.fixtures.cluster import Cluster
from tests.gateway.client import KernelWS, http, reachable
from tests.ha.conftest import wait_until
from tests.ha.test_active_active import Ticker
from tests.operator.helpers import wait_until as wait_for_value

pytestmark = pytest.mark.timeout(900)
DEPLOYMENT = "kernelkeeper-gateway"
# Short Lease timings keep the takeover tests quick; the renew deadline stays below the duration.
LEASE_ENV = [("KERNELKEEPER_GATEWAY_LEASE_DURATION", "6"),
             ("KERNELKEEPER_GATEWAY_RENEW_DEADLINE", "4"),
             ("KERNELKEEPER_GATEWAY_RETRY_PERIOD", "1")]


@dataclass
class GatewayPods:
    cluster: Cluster
    namespace: str
    mode: str
    token: str
    service_ip: str

    @property
    def url(self) -> str:
        return f"http://{self.service_ip}:8888"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.service_ip}:8888"

    def pods(self) -> list[dict]:
        out = self.cluster.kubectl("get", "pods", "-n", self.namespace, "-l",
                                   "app.kubernetes.io/component=gateway", "-o", "json").stdout
        return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]

    def pod(self, name: str) -> dict:
        return json.loads(self.cluster.kubectl("get", "pod", "-n", self.namespace, name, "-o",
                                               "json").stdout)

    def holder(self) -> str | None:
        names = [p["metadata"]["name"] for p in self.pods()
                 if (p["metadata"].get("labels") or {}).get("kernelkeeper.io/role") == "active"]
        return names[0] if len(names) == 1 else None

    def host_pid(self, pod_name: str) -> int:
        """The gateway process's pid on this host: containerd's task for the container."""
        status = self.pod(pod_name)["status"]["containerStatuses"][0]
        cid = status["containerID"].removeprefix("containerd://")
        for line in self.cluster.ctr("tasks", "ls").splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == cid:
                return int(fields[1])
        raise AssertionError(f"containerd has no task for {pod_name}'s container {cid}")

    def restarts(self, pod_name: str) -> int:
        return int(self.pod(pod_name)["status"]["containerStatuses"][0].get("restartCount", 0))

    def pod_url(self, pod_name: str) -> str:
        return f"http://{self.pod(pod_name)['status']['podIP']}:8888"

    def readyz(self, pod_name: str) -> int:
        try:
            with urllib.request.urlopen(f"{self.pod_url(pod_name)}/readyz", timeout=3) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def metric(self, pod_name: str, suffix: str) -> float:
        req = urllib.request.Request(f"{self.pod_url(pod_name)}/metrics",
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if not line.startswith("#") and line.split(" ")[0].endswith(suffix):
                    return float(line.split()[-1])
        raise AssertionError(f"no {suffix} in {pod_name}'s /metrics")


@pytest.fixture
def gateway_pods(cluster: Cluster, operator, tmp_path: Path
                 ) -> Iterator[Callable[[str], GatewayPods]]:
    helm = build.binary("helm")
    installed: list[tuple[str, Path]] = []

    def deploy(mode: str) -> GatewayPods:
        ns = cluster.new_namespace("gwpods")
        env = [a for i, (k, v) in enumerate(LEASE_ENV)
               for a in ("--set", f"gateway.extraEnv[{i}].name={k}",
                         "--set-string", f"gateway.extraEnv[{i}].value={v}")]
        out = subprocess_run([str(helm), "install", "kernelkeeper", str(CHART), "--namespace", ns,
                              "--kubeconfig", str(cluster.kubeconfig), "--skip-crds", "--wait",
                              "--timeout", "240s",
                              *chart_values(cluster.image, replicas=2, availability_mode=mode),
                              "--set", "gateway.service.type=ClusterIP",
                              "--set", "operator.replicas=0", *env],
                             env=helm_env(tmp_path))
        assert out.returncode == 0, out.stderr
        installed.append((ns, tmp_path))
        secret = json.loads(cluster.kubectl("get", "secret", "-n", ns,
                                            "kernelkeeper-gateway-token", "-o", "json").stdout)
        ip = cluster.kubectl("get", "svc", "-n", ns, DEPLOYMENT, "-o",
                             "jsonpath={.spec.clusterIP}").stdout
        fleet = GatewayPods(cluster, ns, mode, base64.b64decode(secret["data"]["token"]).decode(),
                            ip)
        wait_until(lambda: http("GET", f"{fleet.url}/api/kernelspecs", token=fleet.token,
                                timeout=5)[0] == 200 if reachable(fleet.url) else False, 120,
                   "the gateway Service answers", interval=0.5)
        return fleet

    try:
        yield deploy
    finally:
        for ns, home in installed:
            subprocess_run([str(helm), "uninstall", "kernelkeeper", "--namespace", ns,
                            "--kubeconfig", str(cluster.kubeconfig), "--wait=false"],
                           env=helm_env(home))
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def subprocess_run(args: list[str], env: dict[str, str]):
    import subprocess

    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300,
                          check=False)


class _ServiceFleet:
    """What the Ticker needs of a fleet: the one URL clients use."""

    def __init__(self, pods: GatewayPods) -> None:
        self.ws_url = pods.ws_url
        self.token = pods.token


class TokenTicker(Ticker):
    def _connect(self, session_id: str | None) -> KernelWS:
        while True:
            try:
                return KernelWS(self.fleet.ws_url, self.kid, session_id=session_id, timeout=10,
                                token=self.fleet.token)
            except Exception as exc:  # noqa: BLE001 - any failure: retry like a client
                self.errors.append(f"connect: {exc!r}")
                time.sleep(0.2)


def _start_kernel(fleet: GatewayPods) -> str:
    status, model = http("POST", f"{fleet.url}/api/kernels", {"name": "python3"},
                         token=fleet.token, timeout=180)
    assert status == 201, model
    return str(model["id"])


def _execute(fleet: GatewayPods, kid: str, code: str) -> str:
    deadline = time.monotonic() + 90
    while True:
        try:
            ws = KernelWS(fleet.ws_url, kid, token=fleet.token, timeout=15)
            try:
                reply, out, _ = ws.execute(code, timeout=30)
            finally:
                ws.close()
            assert reply["content"]["status"] == "ok", reply["content"]
            return out
        except Exception:  # noqa: BLE001 - a replica going away: retry like a client
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _kernel_pod(fleet: GatewayPods, kid: str) -> tuple[str, int]:
    ks = json.loads(fleet.cluster.kubectl("get", "ks", "-n", fleet.namespace, kid, "-o",
                                          "json").stdout)
    return ks["status"]["podName"], int(ks["status"].get("restarts") or 0)


def test_sigkill_and_rolling_restart_of_gateway_pods(gateway_pods) -> None:
    fleet = gateway_pods("active-active")
    kid = _start_kernel(fleet)
    assert _execute(fleet, kid, "seen = set()\nprint('ok')").strip() == "ok"
    kernel_before = _kernel_pod(fleet, kid)

    ticker = TokenTicker(_ServiceFleet(fleet), kid)
    ticker.start()
    try:
        wait_until(lambda: len(ticker.answered) >= 10, 60, "ticker running")
        # 1. A crash: SIGKILL of one gateway's own process; the kubelet restarts the container.
        victim = fleet.pods()[0]["metadata"]["name"]
        os.kill(fleet.host_pid(victim), signal.SIGKILL)
        wait_until(lambda: fleet.restarts(victim) >= 1, 60, "the kubelet restarted the gateway")
        count = len(ticker.answered)
        wait_until(lambda: len(ticker.answered) >= count + 10, 120, "executes after the crash")
        # 2. A rollout: every gateway Pod replaced, one at a time.
        old = {p["metadata"]["name"] for p in fleet.pods()}
        fleet.cluster.kubectl("rollout", "restart", f"deployment/{DEPLOYMENT}", "-n",
                              fleet.namespace)
        fleet.cluster.kubectl("rollout", "status", f"deployment/{DEPLOYMENT}", "-n",
                              fleet.namespace, "--timeout=240s", timeout=300)
        wait_until(lambda: not ({p["metadata"]["name"] for p in fleet.pods()} & old), 120,
                   "the old gateway Pods gone")
        count = len(ticker.answered)
        wait_until(lambda: len(ticker.answered) >= count + 10, 120, "executes after the rollout")
    finally:
        ticker.stop.set()
        ticker.join(60)
    n = len(ticker.answered)
    assert n > 30
    # Each execute adds its own number: the kernel's set shows that none was lost or doubled
    # and that the kernel (and its state) lived through both.
    out = _execute(fleet, kid, "print(len(seen), min(seen), max(seen))")
    assert out.split() == [str(n), "0", str(n - 1)], (out, n)
    assert _kernel_pod(fleet, kid) == kernel_before, "the kernel Pod must not change"
    print(f"\n[ha pods] SIGKILL of a gateway Pod and a rollout: {n} executes answered, "
          f"longest gap {max(ticker.gaps):.2f}s, {ticker.reconnects} client reconnects")


def test_active_passive_takeover_and_fencing_of_gateway_pods(gateway_pods) -> None:
    fleet = gateway_pods("active-passive")
    first = wait_for_value(fleet.holder, 60, "a Lease holder labelled role=active")
    kid = _start_kernel(fleet)
    assert _execute(fleet, kid, "y = 7\nprint(y)").strip() == "7"
    kernel_before = _kernel_pod(fleet, kid)

    # Takeover: SIGKILL of the holder; the standby takes the Lease and the Service's selector.
    t0 = time.monotonic()
    os.kill(fleet.host_pid(first), signal.SIGKILL)
    def new_holder() -> str | None:
        holder = fleet.holder()
        return holder if holder and holder != first else None

    second = wait_for_value(new_holder, 60, "the standby holds the Lease")
    assert _execute(fleet, kid, "print(y * 6)").strip() == "42"
    print(f"\n[ha pods] active-passive: {second} serving {time.monotonic() - t0:.2f}s after "
          f"SIGKILL of {first} (Lease 6/4/1 s)")
    wait_until(lambda: fleet.readyz(first) == 503, 90, "the restarted first Pod is a standby")

    # Fencing: freeze the holder past its Lease; the other takes over; the frozen one, when it
    # wakes up, must never serve again: it sees its renew deadline passed and exits.
    restarts = fleet.restarts(second)
    pid = fleet.host_pid(second)
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for_value(lambda: first if fleet.readyz(first) == 200 else None, 60,
                         "the other replica takes over from the frozen holder")
    finally:
        os.kill(pid, signal.SIGCONT)
    served_after_wake = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and fleet.restarts(second) == restarts:
        if fleet.readyz(second) == 200:
            served_after_wake.append(time.monotonic())
        time.sleep(0.1)
    assert not served_after_wake, "the fenced replica answered /readyz 200 after waking"
    wait_until(lambda: fleet.restarts(second) > restarts, 60,
               "the fenced replica exited (and the kubelet restarted it)")
    wait_until(lambda: fleet.holder() == first, 60, "the label follows the Lease")
    assert _execute(fleet, kid, "print(y + 35)").strip() == "42"
    assert _kernel_pod(fleet, kid) == kernel_before


def test_culling_counts_activity_of_every_gateway_pod(cluster: Cluster, gateway_pods) -> None:
    fleet = gateway_pods("active-active")
    a, b = sorted(p["metadata"]["name"] for p in fleet.pods())
    kid = _start_kernel(fleet)
    api = client.CustomObjectsApi(cluster.api_client())
    api.patch_namespaced_custom_object(m.GROUP, m.VERSION, fleet.namespace, m.PLURAL, kid,
                                       {"spec": {"idleTimeoutSeconds": 6}})
    # Straight to Pod B (its Pod IP), bypassing the Service: A never sees the kernel in use.
    ws = KernelWS(fleet.pod_url(b).replace("http://", "ws://"), kid, token=fleet.token)
    try:
        deadline = time.monotonic() + 30  # five idle timeouts
        while time.monotonic() < deadline:
            assert ws.execute("1")[0]["content"]["status"] == "ok"
            time.sleep(1)
        obj = api.get_namespaced_custom_object(m.GROUP, m.VERSION, fleet.namespace, m.PLURAL,
                                               kid)
        assert obj, "culled while in use through gateway Pod B"
        assert fleet.metric(a, "_websocket_connections") == 0
        assert fleet.metric(b, "_websocket_connections") == 1
        replicas = obj["status"]["activity"]["replicas"]
        assert replicas[b]["connections"] >= 1
        assert (replicas.get(a) or {}).get("connections", 0) == 0
    finally:
        ws.close()
    t0 = time.monotonic()
    while True:
        with contextlib.suppress(client.ApiException):
            api.get_namespaced_custom_object(m.GROUP, m.VERSION, fleet.namespace, m.PLURAL, kid)
            assert time.monotonic() - t0 < 120, "an idle kernel must be culled once it is left"
            time.sleep(0.5)
            continue
        break
    print(f"\n[ha pods] culled {time.monotonic() - t0:.1f}s after the client left Pod B")
