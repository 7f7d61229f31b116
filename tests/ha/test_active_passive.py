"""active-passive: one Lease holder serves, a hot standby takes over, never two at once."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.gateway.client import KernelWS, http
from tests.ha.conftest import http_status, wait_until

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
    status, model = http("POST", f"{f.url}/api/kernels", {"name": "python3"})
    assert status == 201, model
    kid = model["id"]

    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(10)
    t0 = time.monotonic()
    took = wait_until(lambda: len(f.active()) == 1, DURATION + 10, "standby takes over")
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
    t0 = time.monotonic()
    took = wait_until(lambda: any(g is not new for g in f.active()), 10, "graceful hand-over")
    print(f"[ha] active-passive SIGTERM: standby serving after {took:.2f}s")
    assert took <= 2.0
    assert new.proc.wait(30) == 0
    status, model = http("GET", f"{f.url}/api/kernels/{kid}")
    assert status == 200 and model["id"] == kid, "the kernel survived both hand-overs"
    del t0


@pytest.mark.timeout(300)
def test_paused_holder_never_serves_again(fleet):
    """SIGSTOP past the renew deadline: a standby takes over; SIGCONT: the old holder fences."""
    f = fleet(2, "active-passive", KERNELKEEPER_GATEWAY_LEASE_DURATION="6",
              KERNELKEEPER_GATEWAY_RENEW_DEADLINE="4", KERNELKEEPER_GATEWAY_RETRY_PERIOD="1")
    old = _only_active(f)
    standby = next(g for g in f.replicas if g is not old)
    old.proc.send_signal(signal.SIGSTOP)
    took = wait_until(lambda: http_status(f"{standby.url}/readyz") == 200, 30, "takeover")
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
