"""Rolling updates of the chart on the real node never stall and never stop a kernel.

For each availability mode the chart is installed as users install it: its own operator (the
session's operator, which watches every namespace, is paused meanwhile) and two gateway
replicas behind the gateway Service. A kernel is started through the Service and given state
(`x = 0`); then a client executes `x += 1; print(x)` through the Service every 100 ms while
(a) `helm upgrade` with changed values rolls both Deployments and (b) `kubectl rollout restart`
rolls the gateways. A rollout that stalls fails its `kubectl rollout status` timeout.

The client is one websocket with one session id. When the gateway closes it (a replica going
away), the client connects again through the Service with the same session id, as the README's
"What a client gets back after a failover" describes: the execute it was waiting for is
answered on the new websocket if the kernel got it (the journal replays the answer), and a
`kernel_info_request` on shell is the barrier that tells otherwise: if its reply comes first,
the execute never reached the kernel and is sent again, after the kernel's x confirms it did
not run. At the end x must equal the number of executes answered (nothing lost, nothing run
twice) and the kernel Pod must be the one it was. The longest gap between two answers, per
rollout, is printed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket
import yaml

from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.local import build
from kernelkeeper.local.chart import CHART, chart_values, helm_env
from tests.fixtures.chart import DEPLOYMENT, GatewayPods, service, wait_service_answers
from tests.fixtures.cluster import Cluster
from tests.gateway.client import KernelWS, start_kernel
from tests.helpers import get_session, http_status, wait_until

pytestmark = pytest.mark.timeout(900)

OPERATOR_DEPLOYMENT = "kernelkeeper-operator"
INCREMENT = "x += 1\nprint(x)"
PERIOD = 0.1
# Bounds of the client's loop: about 15 minutes of executes, and never longer than the test.
MAX_EXECUTES = 9000
MAX_SECONDS = 840.0
# How long the client keeps trying to reach a serving replica after its websocket closed.
RECONNECT_DEADLINE = 60.0
ROLLOUT_TIMEOUT = "240s"
# What ends a websocket from the client's side: a close frame, a reset, a timeout.
CLOSED = (OSError, TimeoutError, websocket.WebSocketException)


def _send_execute(ws: KernelWS, code: str) -> str:
    return ws.send("shell", "execute_request",
                   {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})


def _answer(ws: KernelWS, msg_id: str, timeout: float = 10,
            barrier: str = "") -> tuple[str, str] | None:
    """(reply status, the line printed) of execute `msg_id` as soon as both are in; None when
    the reply to the `barrier` kernel_info_request comes first (the execute never arrived).
    The idle status that follows is not waited for: a websocket closed after the answer
    arrived must not make an answered execute look unanswered."""
    status, out = "", ""
    deadline = time.monotonic() + timeout
    while not status or (status == "ok" and not out.endswith("\n")):
        channel, msg, _ = ws.recv(max(0.1, deadline - time.monotonic()))
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer to execute {msg_id} in {timeout:g}s")
        parent = msg["parent_header"].get("msg_id")
        if barrier and parent == barrier and channel == "shell" and not status:
            return None
        if parent != msg_id:
            continue
        if channel == "shell" and msg["msg_type"] == "execute_reply":
            status = msg["content"]["status"]
        elif channel == "iopub" and msg["msg_type"] == "stream":
            out += msg["content"]["text"]
    return status, out


def _execute(ws: KernelWS, code: str, timeout: float = 10) -> tuple[str, str]:
    answer = _answer(ws, _send_execute(ws, code), timeout)
    assert answer is not None
    return answer


@dataclass
class Answer:
    value: int
    at: float
    phase: str


class Incrementer(threading.Thread):
    """Executes INCREMENT every PERIOD through the Service until stopped, reconnecting like a
    client; every execute must be answered with the next value of x."""

    def __init__(self, ws_url: str, kid: str, token: str) -> None:
        super().__init__(daemon=True, name="incrementer")
        self.ws_url, self.kid, self.token = ws_url, kid, token
        self.stop = threading.Event()
        self.phase = "steady"  # set by the test; each answer and reconnect is tagged with it
        self.answers: list[Answer] = []
        # Per execute that needed any: reconnects it needed (keyed by the value it must print).
        self.reconnects: dict[int, int] = {}
        self.reconnect_phases: list[str] = []
        self.resent: list[int] = []  # proven not to have run, so sent again
        self.lost: list[int] = []  # ran in the kernel, but its reply never came
        self.failures: list[str] = []
        self.events: list[str] = []  # what each reconnect saw
        self.session_id = ""
        self.ws: KernelWS | None = None

    def run(self) -> None:
        try:
            self.ws = self._connect()
            self.session_id = self.ws.session_id
            started = time.monotonic()
            while (not self.stop.is_set() and len(self.answers) < MAX_EXECUTES
                   and time.monotonic() - started < MAX_SECONDS):
                self._one(len(self.answers) + 1)
                time.sleep(PERIOD)
        except Exception as exc:  # noqa: BLE001 - the test reads failures
            self.failures.append(f"client stopped: {exc!r}")
        finally:
            if self.ws is not None:
                self.ws.close()

    def _one(self, expected: int) -> None:
        """One execute, which must print `expected`, answered on whichever websocket."""
        assert self.ws is not None
        reconnects = 0
        msg_id = _send_execute(self.ws, INCREMENT)
        barrier = ""
        while True:
            try:
                answer = _answer(self.ws, msg_id, barrier=barrier)
                if answer is None:
                    # The barrier's reply came first: the execute never reached the kernel.
                    seen = self._x(self.ws)
                    if seen == expected:  # it ran, and its answer is gone: a lost reply
                        self.lost.append(expected)
                        self.answers.append(Answer(expected, time.monotonic(), self.phase))
                        return
                    if seen != expected - 1:
                        raise AssertionError(f"x is {seen} while execute {expected} was pending")
                    self.resent.append(expected)
                    msg_id, barrier = _send_execute(self.ws, INCREMENT), ""
                    continue
                status, out = answer
            except CLOSED as exc:
                reconnects += 1
                self.reconnects[expected] = reconnects
                self.reconnect_phases.append(self.phase)
                self.events.append(f"execute {expected} [{self.phase}]: {exc!r}")
                self.ws.close()
                self.ws = self._connect(self.session_id)
                barrier = self.ws.send("shell", "kernel_info_request", {})
                continue
            if status != "ok" or not out.strip().isdigit():
                self.failures.append(f"execute {expected}: {status} {out!r}")
                return
            self.answers.append(Answer(int(out), time.monotonic(), self.phase))
            return

    def _connect(self, session_id: str | None = None) -> KernelWS:
        deadline = time.monotonic() + RECONNECT_DEADLINE
        while True:
            try:
                return KernelWS(self.ws_url, self.kid, session_id=session_id, token=self.token,
                                timeout=10)
            except Exception as exc:  # noqa: BLE001 - no endpoint, a draining replica: retry
                if time.monotonic() > deadline:
                    raise AssertionError(f"no gateway reachable through the Service for "
                                         f"{RECONNECT_DEADLINE:g}s: {exc!r}") from exc
                time.sleep(0.1)

    @staticmethod
    def _x(ws: KernelWS) -> int:
        status, out = _execute(ws, "print(x)")
        assert status == "ok", (status, out)
        return int(out)

    def gaps(self, phase: str) -> float:
        """The longest time between two answers, the later one answered during `phase`."""
        return max((b.at - a.at for a, b in zip(self.answers, self.answers[1:], strict=False)
                    if b.phase == phase), default=0.0)


@dataclass
class Release:
    pods: GatewayPods
    helm: Callable[..., subprocess.CompletedProcess[str]]
    values: list[str]


@pytest.fixture
def release(cluster: Cluster, operator, tmp_path: Path) -> Iterator[Callable[[str], Release]]:
    """`release(mode)`: the chart with its own operator in a fresh namespace; uninstalled after
    (before the session's operator, which watches every namespace, resumes)."""
    helm_bin = str(build.binary("helm"))
    env = helm_env(tmp_path)
    installed: list[str] = []

    def helm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([helm_bin, *args, "--kubeconfig", str(cluster.kubeconfig)],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)

    def install(mode: str) -> Release:
        ns = cluster.new_namespace("rollout")
        installed.append(ns)
        values = [*chart_values(cluster.image, replicas=2, availability_mode=mode),
                  "--set", "gateway.service.type=ClusterIP"]
        out = helm("install", "kernelkeeper", str(CHART), "--namespace", ns, "--skip-crds",
                   "--wait", "--timeout", "240s", *values)
        assert out.returncode == 0, f"{out.stderr}\n{_diagnosis(cluster, ns)}"
        url, token = service(cluster, ns)
        wait_service_answers(url, token)
        return Release(GatewayPods(cluster, ns, mode, token, url), helm, values)

    with operator.paused():
        try:
            yield install
        finally:
            for ns in installed:
                helm("uninstall", "kernelkeeper", "--namespace", ns, "--wait", "--timeout",
                     "120s")
                cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _kernel_pod(cluster: Cluster, ns: str, kid: str) -> tuple[str, str, int, int]:
    """The kernel Pod's name and uid, its container's restarts and the session's restarts."""
    ks = get_session(cluster, ns, kid)
    assert ks is not None, f"session {kid} is gone"
    pod = json.loads(cluster.kubectl("get", "pod", "-n", ns, ks["status"]["podName"], "-o",
                                     "json").stdout)
    restarts = sum(int(c.get("restartCount", 0)) for c in pod["status"]["containerStatuses"])
    return (pod["metadata"]["name"], pod["metadata"]["uid"], restarts,
            int(ks["status"].get("restarts") or 0))


def _diagnosis(cluster: Cluster, ns: str) -> str:
    """What a failed install or rollout left: Pods, their containers' states, recent Events."""
    pods = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
    items = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json",
                                       check=False).stdout or '{"items": []}')["items"]
    states = [f"{p['metadata']['name']}: {json.dumps(p['status'].get('conditions'))} "
              f"{json.dumps(p['status'].get('containerStatuses'))}"[:1500] for p in items]
    events = cluster.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp",
                             check=False).stdout
    return "\n".join([pods, *states, events[-4000:]])


def _gateway_pods_all(cluster: Cluster, ns: str) -> list[dict]:
    """Every gateway Pod, terminating ones included."""
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=gateway",
                          "-o", "json").stdout
    items: list[dict] = json.loads(out)["items"]
    return items


def _roll(rel: Release, client: Incrementer, phase: str, start: Callable[[], None],
          deployments: tuple[str, ...]) -> float:
    """Start a rollout, wait for it to finish and for the replaced gateway Pods to be gone;
    returns how long that took. The client's answers meanwhile belong to `phase`."""
    cluster, ns = rel.pods.cluster, rel.pods.namespace
    old = {p["metadata"]["name"] for p in _gateway_pods_all(cluster, ns)}
    client.phase = phase
    t0 = time.monotonic()
    start()
    for name in deployments:
        out = cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", ns,
                              f"--timeout={ROLLOUT_TIMEOUT}", check=False, timeout=300)
        assert out.returncode == 0, f"{phase}: rollout of {name} did not finish " \
                                    f"(stalled?): {out.stdout}{out.stderr}\n" \
                                    f"{_diagnosis(cluster, ns)}"
    # The last old Pod may hand over (active-passive) after the rollout counts as finished:
    # the phase lasts until it is gone and the client has been answered a few times since.
    wait_until(lambda: not ({p["metadata"]["name"] for p in _gateway_pods_all(cluster, ns)}
                            & old), 120, f"{phase}: the old gateway Pods gone")
    took = time.monotonic() - t0
    count = len(client.answers)
    wait_until(lambda: len(client.answers) >= count + 10 or not client.is_alive(), 60,
               f"{phase}: executes after the rollout")
    client.phase = f"after {phase}"
    return took


def _check_readiness_probe_forms(pods: GatewayPods) -> None:
    """Plain /readyz means serving now; ?standby=1 also counts a healthy standby."""
    holder = pods.holder() if pods.mode == "active-passive" else None
    for pod in pods.pods():
        name = pod["metadata"]["name"]
        base = pods.pod_url(name)
        serving = pods.mode == "active-active" or name == holder
        assert http_status(f"{base}/readyz") == (200 if serving else 503), name
        assert http_status(f"{base}/readyz?standby=1") == 200, name


@pytest.mark.parametrize("mode", ["active-active", "active-passive"])
def test_gateway_rollout_settings_render(tmp_path: Path, mode: str) -> None:
    """What the real-node test below relies on, readable without a cluster: a new replica
    first, an old one removed only after it is Ready as "able to serve or take over", and a
    grace period that covers the preStop pause and the gateway's own shutdown."""
    out = subprocess.run([str(build.binary("helm")), "template", "kernelkeeper", str(CHART),
                          "--set", f"gateway.availabilityMode={mode}"], capture_output=True,
                         text=True, env=helm_env(tmp_path), timeout=60, check=True).stdout
    gateway = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"
                   and d["metadata"]["name"] == DEPLOYMENT)["spec"]
    assert gateway["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = gateway["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "gateway")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?standby=1"
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    shutdown = GatewayConfig().shutdown_timeout
    assert pod["terminationGracePeriodSeconds"] >= pause + shutdown + 5


def _first_mismatch(values: list[int]) -> list[tuple[int, int]]:
    return [(i + 1, v) for i, v in enumerate(values) if v != i + 1][:5]


@pytest.mark.parametrize("mode", ["active-active", "active-passive"])
def test_rollouts_finish_and_every_execute_is_answered(release, mode: str) -> None:
    rel = release(mode)
    pods, cluster, ns = rel.pods, rel.pods.cluster, rel.pods.namespace
    if mode == "active-passive":
        wait_until(pods.holder, 60, "a Lease holder labelled role=active")
    _check_readiness_probe_forms(pods)

    kid = start_kernel(pods.url, pods.token, timeout=180)
    ws = KernelWS(pods.ws_url, kid, token=pods.token, timeout=30)
    try:
        reply, out, _ = ws.execute("x = 0\nprint(x)", timeout=60)
    finally:
        ws.close()
    assert reply["content"]["status"] == "ok" and out == "0\n", (reply["content"], out)
    kernel_before = _kernel_pod(cluster, ns, kid)

    client = Incrementer(pods.ws_url, kid, pods.token)
    client.start()
    took: dict[str, float] = {}
    try:
        wait_until(lambda: len(client.answers) >= 20 or not client.is_alive(), 60,
                   "the client answered")
        assert client.is_alive(), client.failures

        # (a) A changed value for each Deployment's Pod template: both roll.
        changed = [*rel.values, "--set", "operator.idleTimeout=7200",
                   "--set", "gateway.extraEnv[0].name=KERNELKEEPER_ROLLOUT_MARK",
                   "--set-string", "gateway.extraEnv[0].value=1"]

        def upgrade() -> None:
            out = rel.helm("upgrade", "kernelkeeper", str(CHART), "--namespace", ns,
                           "--skip-crds", *changed)
            assert out.returncode == 0, out.stderr

        took["helm upgrade"] = _roll(rel, client, "helm upgrade", upgrade,
                                     (DEPLOYMENT, OPERATOR_DEPLOYMENT))

        # (b) kubectl rollout restart of the gateways.
        def restart() -> None:
            cluster.kubectl("rollout", "restart", f"deployment/{DEPLOYMENT}", "-n", ns)

        took["rollout restart"] = _roll(rel, client, "rollout restart", restart, (DEPLOYMENT,))
    finally:
        client.stop.set()
        client.join(60)
    assert not client.is_alive(), "the client did not stop"

    n = len(client.answers)
    summary = (f"{n} executes answered, {len(client.reconnects)} needed a reconnect, "
               f"{len(client.resent)} re-sent (proven not run), {len(client.lost)} lost replies")
    gaps = {phase: client.gaps(phase) for phase in took}
    for phase, gap in gaps.items():
        print(f"\n[rollouts] {mode}, {phase}: finished in {took[phase]:.1f}s, longest gap "
              f"between answers {gap:.2f}s")
    print(f"[rollouts] {mode}: {summary}; steady-state longest gap {client.gaps('steady'):.2f}s")
    print(f"[rollouts] {mode}: reconnects: {client.events}")

    assert not client.failures, (client.failures, client.events)
    values = [a.value for a in client.answers]
    assert values == list(range(1, n + 1)), \
        f"x did not go 1, 2, 3, ... (first differences at {_first_mismatch(values)})"
    assert not client.lost, f"executes that ran but whose reply never came: {client.lost}; " \
                            f"{client.events}"
    assert max(client.reconnects.values(), default=0) <= 1, \
        f"executes that needed more than one reconnect: {client.reconnects}; {client.events}"
    for phase in took:
        assert phase in client.reconnect_phases, \
            f"{phase}: the client's websocket was never closed, so the rollout did not replace " \
            f"the replica serving it and this test proved nothing"

    # The kernel's own count: every answered execute ran exactly once, no other ran.
    ws = KernelWS(pods.ws_url, kid, token=pods.token, timeout=30)
    try:
        reply, out, _ = ws.execute("print(x)", timeout=30)
    finally:
        ws.close()
    assert reply["content"]["status"] == "ok" and int(out) == n, (out, n)
    assert _kernel_pod(cluster, ns, kid) == kernel_before, "the kernel Pod must not change"
