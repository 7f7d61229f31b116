"""active-passive: one Lease holder serves, a hot standby takes over, never two at once."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.gateway.client import KernelWS, http, start_kernel
from tests.helpers import http_status, seconds_until, wait_until

DURATION, RENEW, RETRY = 15.0, 10.0, 2.0


def _only_active(f):
    active = wait_until(lambda: len(f.active()) == 1, 60, "one active replica") and f.active()
    assert len(active) == 1
    return active[0]


def _standbys_refuse(f, active) -> None:
    for g in f.replicas:
        if g is active:
            continue
        assert http_status(f"{g.url}/readyz") == 503
        status, body = http("GET", f"{g.url}/api/kernels")
        assert status == 503, body
        assert "standby" in body["message"].lower()


def test_sigkill_then_sigterm_of_the_holder(fleet):
    f = fleet(2, "active-passive")
    holder = _only_active(f)
    _standbys_refuse(f, holder)
    kid = start_kernel(f.url)

    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(10)
    took = seconds_until(lambda: len(f.active()) == 1, DURATION + 10, "standby takes over")
    print(f"\n[ha] active-passive SIGKILL: standby serving after {took:.2f}s "
          f"(lease duration {DURATION:.0f}s)")
    assert took <= DURATION + 2
    new = f.active()[0]
    assert new is not holder
    ws = KernelWS(f.ws_url, kid)
    try:
        assert ws.execute("1+1")[0]["content"]["status"] == "ok"
    finally:
        ws.close()

    # Bring the killed slot back as a standby, then hand over gracefully.
    f.restart(holder)
    assert _only_active(f) is new
    new.proc.send_signal(signal.SIGTERM)
    took = seconds_until(lambda: any(g is not new for g in f.active()), 10, "graceful hand-over")
    print(f"[ha] active-passive SIGTERM: standby serving after {took:.2f}s")
    assert took <= 2.0
    assert new.proc.wait(30) == 0
    status, model = http("GET", f"{f.url}/api/kernels/{kid}")
    assert status == 200 and model["id"] == kid, "the kernel survived both hand-overs"


@pytest.mark.timeout(300)
def test_paused_holder_never_serves_again(fleet):
    """SIGSTOP past the renew deadline: a standby takes over; SIGCONT: the old holder fences."""
    f = fleet(2, "active-passive", KERNELKEEPER_GATEWAY_LEASE_DURATION="6",
              KERNELKEEPER_GATEWAY_RENEW_DEADLINE="4", KERNELKEEPER_GATEWAY_RETRY_PERIOD="1")
    old = _only_active(f)
    standby = next(g for g in f.replicas if g is not old)
    old.proc.send_signal(signal.SIGSTOP)
    took = seconds_until(lambda: http_status(f"{standby.url}/readyz") == 200, 30, "takeover")
    print(f"\n[ha] SIGSTOP of the holder: standby serving after {took:.2f}s")

    answers: list[int] = []
    done = threading.Event()

    def probe() -> None:
        # Requests to the old holder, queued while it is stopped and after it resumes.
        while not done.is_set():
            answers.append(http_status(f"{old.url}/api/kernels", timeout=5))
            time.sleep(0.02)

    probes = [threading.Thread(target=probe, daemon=True) for _ in range(3)]
    for t in probes:
        t.start()
    time.sleep(0.5)
    old.proc.send_signal(signal.SIGCONT)
    code = old.proc.wait(30)
    done.set()
    for t in probes:
        t.join(10)
    print(f"[ha] old holder exited with {code}; its answers after SIGCONT: "
          f"{sorted(set(answers))}")
    assert code != 0, "a holder that lost its Lease exits non-zero"
    assert 200 not in answers, "the old holder must never serve again"
    assert set(answers) <= {0, 503}
    assert http_status(f"{standby.url}/readyz") == 200
    assert http("GET", f"{f.url}/api/kernels")[0] == 200


def _gated_pod(core, namespace: str, name: str) -> None:
    """A real Pod object that is never scheduled (a scheduling gate holds it): it stands for a
    replica's own Pod, which POD_NAME/POD_NAMESPACE name through the downward API."""
    from kubernetes import client

    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "kernelkeeper-gateway"}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="gateway", image="kernelkeeper:test")],
            scheduling_gates=[client.V1PodSchedulingGate(name="kernelkeeper.io/test")])))


def test_the_holder_labels_its_own_pod_and_hands_the_label_over(gateways, kk_namespace,
                                                                  cluster):
    """The chart's Service selects role=active: only the Lease holder's Pod may carry it."""
    from kubernetes import client

    from kernelkeeper.crds.model import LABEL_ROLE

    core = client.CoreV1Api(cluster.api_client())
    lease = f"gw-{kk_namespace[-6:]}"
    procs = {}
    for name in ("gw-pod-a", "gw-pod-b"):
        _gated_pod(core, kk_namespace, name)
        procs[name] = gateways.start(kk_namespace, replica_id=name, wait=False, env={
            "KERNELKEEPER_GATEWAY_AVAILABILITY_MODE": "active-passive",
            "KERNELKEEPER_GATEWAY_LEASE_NAME": lease,
            "KERNELKEEPER_GATEWAY_LEASE_NAMESPACE": kk_namespace,
            "KERNELKEEPER_GATEWAY_LEASE_DURATION": "6",
            "KERNELKEEPER_GATEWAY_RENEW_DEADLINE": "4",
            "KERNELKEEPER_GATEWAY_RETRY_PERIOD": "1",
            "POD_NAME": name, "POD_NAMESPACE": kk_namespace})

    def roles() -> dict[str, str | None]:
        return {n: (core.read_namespaced_pod(n, kk_namespace).metadata.labels or {}).get(LABEL_ROLE)
                for n in procs}

    def serving() -> list[str]:
        return [n for n, g in procs.items()
                if g.alive() and http_status(f"{g.url}/readyz") == 200]

    wait_until(lambda: len(serving()) == 1 and list(roles().values()).count("active") == 1,
               60, "one holder with its Pod labelled")
    holder = serving()[0]
    other = next(n for n in procs if n != holder)
    assert roles() == {holder: "active", other: None}

    procs[holder].proc.send_signal(signal.SIGTERM)  # a rollout: hand over the Lease
    took = seconds_until(lambda: roles() == {holder: None, other: "active"}, 30,
                      "label moved to the new holder")
    print(f"\n[ha] role label handed from {holder} to {other} in {took:.2f}s")
    assert serving() == [other]
