"""HA with the gateways as Pods of the chart's Deployment on the real node, behind its Service.

A crash is a SIGKILL of the gateway's own process (found through containerd, from the host);
the kubelet restarts the container as it would anywhere. Clients use the Service's ClusterIP,
as an in-cluster JupyterHub or an ingress would; kube-proxy picks a replica per connection.
Kernels are run by the session's operator (the chart's own operator is scaled to zero).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.fixtures.chart import DEPLOYMENT, GatewayPods
from tests.fixtures.cluster import Cluster
from tests.gateway.client import KernelWS, Ticker, start_kernel
from tests.helpers import get_session, seconds_until, set_idle_timeout, wait_until

pytestmark = pytest.mark.timeout(900)


def _start_kernel(fleet: GatewayPods) -> str:
    return start_kernel(fleet.url, fleet.token, timeout=180)


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
    ks = get_session(fleet.cluster, fleet.namespace, kid)
    assert ks is not None, f"session {kid} is gone"
    return ks["status"]["podName"], int(ks["status"].get("restarts") or 0)


def test_sigkill_and_rolling_restart_of_gateway_pods(gateway_pods) -> None:
    fleet = gateway_pods("active-active")
    kid = _start_kernel(fleet)
    assert _execute(fleet, kid, f"{Ticker.SETUP}\nprint('ok')").strip() == "ok"
    kernel_before = _kernel_pod(fleet, kid)

    ticker = Ticker(fleet, kid)
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
    # Each execute i printed i (checked as it was answered) and appended i to the kernel's own
    # list: that list shows none was lost or run twice, and that the kernel (and its state)
    # lived through both.
    ticker.check_kernel_record(_execute(fleet, kid, Ticker.REPORT))
    assert _kernel_pod(fleet, kid) == kernel_before, "the kernel Pod must not change"
    print(f"\n[ha pods] SIGKILL of a gateway Pod and a rollout: {n} executes answered, "
          f"longest gap {max(ticker.gaps):.2f}s, {ticker.reconnects} client reconnects")


def test_active_passive_takeover_and_fencing_of_gateway_pods(gateway_pods) -> None:
    fleet = gateway_pods("active-passive")
    first = wait_until(fleet.holder, 60, "a Lease holder labelled role=active")
    kid = _start_kernel(fleet)
    assert _execute(fleet, kid, "y = 7\nprint(y)").strip() == "7"
    kernel_before = _kernel_pod(fleet, kid)

    # Takeover: SIGKILL of the holder; the standby takes the Lease and the Service's selector.
    t0 = time.monotonic()
    os.kill(fleet.host_pid(first), signal.SIGKILL)
    def new_holder() -> str | None:
        holder = fleet.holder()
        return holder if holder and holder != first else None

    second = wait_until(new_holder, 60, "the standby holds the Lease")
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
        wait_until(lambda: first if fleet.readyz(first) == 200 else None, 60,
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
    ns = fleet.namespace
    a, b = sorted(p["metadata"]["name"] for p in fleet.pods())
    kid = _start_kernel(fleet)
    # The positive control: a kernel nobody uses, with the same idle timeout, must be culled
    # while the one in use is kept, or this test would pass with culling switched off.
    unused = _start_kernel(fleet)
    # Straight to Pod B (its Pod IP), bypassing the Service: A never sees the kernel in use.
    ws = KernelWS(fleet.pod_url(b).replace("http://", "ws://"), kid, token=fleet.token)
    try:
        assert ws.execute("1")[0]["content"]["status"] == "ok"
        for k in (kid, unused):
            set_idle_timeout(cluster, ns, k, 6)
        deadline = time.monotonic() + 30  # five idle timeouts
        while time.monotonic() < deadline:
            assert ws.execute("1")[0]["content"]["status"] == "ok"
            time.sleep(1)
        assert get_session(cluster, ns, unused) is None, \
            "the unused kernel was not culled: culling does not work at all"
        obj = get_session(cluster, ns, kid)
        assert obj is not None, "culled while in use through gateway Pod B"
        assert fleet.metric(a, "_websocket_connections") == 0
        assert fleet.metric(b, "_websocket_connections") == 1
        replicas = obj["status"]["activity"]["replicas"]
        assert replicas[b]["connections"] >= 1
        assert (replicas.get(a) or {}).get("connections", 0) == 0
    finally:
        ws.close()
    took = seconds_until(lambda: get_session(cluster, ns, kid) is None, 120,
                         "an idle kernel culled once it is left", interval=0.5)
    print(f"\n[ha pods] culled {took:.1f}s after the client left Pod B")
