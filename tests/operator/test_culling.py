"""Culling from the activity gateways report in status.activity (written here as a gateway would)
and from what the kernel's launcher sees (a real kernel computing with no client connected).

The session operator culls every 2 s and treats heartbeats older than 30 s as stale. A test that
a session is *not* culled runs a positive control beside it: a session with the same timeout
and the same report minus the one thing that protects, which must be culled within the same
wait, so that the test fails when culling does not run at all.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable

from kernelkeeper.crds import model as crd
from kernelkeeper.operator.culling import REASON_CULL_POSTPONED
from tests.helpers import (
    apply_session,
    events,
    get_session,
    holds_for,
    kernel_client,
    launcher_status,
    set_idle_timeout,
    wait_ready,
    wait_until,
)

IDLE = 4  # seconds; sessions start with a long timeout and get this one once Ready
SURVIVE = 12  # seconds a protected session must outlive its idle timeout (several cull rounds)
CULL_ROUND = 2  # the operator fixture's --cull-interval
SLEEP = SURVIVE + 4  # the silent computation: longer than SURVIVE after the timeout is set


def _iso(seconds_ago: float = 0) -> str:
    t = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _report(cluster, ns: str, kid: str, replicas: dict) -> None:
    activity = {"lastActivity": _iso(120), "executionState": "idle", "replicas": replicas}
    cluster.kubectl("patch", "ks", kid, "-n", ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"activity": activity}}))


def _ready_session(cluster, ns: str) -> str:
    """Ready with a long timeout: reports go in before `set_idle_timeout(IDLE)`, no race."""
    kid = apply_session(cluster, ns, idle_timeout_seconds=3600)
    wait_ready(cluster, ns, kid)
    return kid


def _kept_while_control_culled(cluster, ns: str, protected: Callable[[], dict],
                               unprotected: Callable[[], dict]) -> None:
    """A session reporting `protected()` survives SURVIVE seconds of culling rounds while one
    reporting `unprotected()` (the control) is culled meanwhile. The reports are made once both
    sessions are Ready, so that their heartbeats are fresh."""
    kid, control = _ready_session(cluster, ns), _ready_session(cluster, ns)
    _report(cluster, ns, kid, protected())
    _report(cluster, ns, control, unprotected())
    for k in (kid, control):
        set_idle_timeout(cluster, ns, k, IDLE)
    culled: list[bool] = []

    def kept() -> bool:
        if not culled and get_session(cluster, ns, control) is None:
            culled.append(True)
        return get_session(cluster, ns, kid) is not None

    holds_for(kept, SURVIVE, "the protected session (it was culled)")
    assert culled, f"the control session was not culled within {SURVIVE}s: culling is not working"
    assert not events(cluster, ns, kid, reason=crd.REASON_CULLED)
    assert wait_until(lambda: events(cluster, ns, control, reason=crd.REASON_CULLED), 30,
                      "the control's Culled event")


def _replica(connections: int, state: str, heartbeat_ago: float,
             last_activity_ago: float = 120) -> dict:
    return {"connections": connections, "executionState": state,
            "lastActivity": _iso(last_activity_ago), "heartbeat": _iso(heartbeat_ago)}


def test_idle_session_is_culled(cluster, ns):
    kid = _ready_session(cluster, ns)
    set_idle_timeout(cluster, ns, kid, IDLE)
    wait_until(lambda: get_session(cluster, ns, kid) is None, 60, "idle session culled")
    (event,) = wait_until(lambda: events(cluster, ns, kid, reason=crd.REASON_CULLED), 30,
                          "Culled event")
    assert "without activity" in event["message"] and f"idle timeout {IDLE}s" in event["message"]


def test_busy_session_is_not_culled(cluster, ns):
    """A real kernel sleeps with no client connected and no gateway reporting: only its
    launcher knows it is busy. It outlives twice its idle timeout, then is culled one idle
    timeout after the computation ends (not at once: the launcher's lastActivity counts)."""
    kid, control = _ready_session(cluster, ns), _ready_session(cluster, ns)
    ks = get_session(cluster, ns, kid)
    assert ks is not None
    ip = ks["status"]["podIP"]
    kc = kernel_client(cluster, ns, ks)
    try:
        kc.execute(f"import time; time.sleep({SLEEP})")
        wait_until(lambda: launcher_status(ip)["executionState"] == "busy", 10,
                   "the launcher seeing the kernel busy")
    finally:
        kc.stop_channels()  # gone without waiting for the reply
    for k in (kid, control):
        set_idle_timeout(cluster, ns, k, IDLE)
    timed = time.monotonic()
    culled: list[float] = []

    def still_busy() -> bool:
        if not culled and get_session(cluster, ns, control) is None:
            culled.append(time.monotonic() - timed)
        assert get_session(cluster, ns, kid) is not None, \
            f"the busy session was culled {time.monotonic() - timed:.1f}s after its timeout was set"
        return launcher_status(ip)["executionState"] == "busy"

    # Polled often so that the end of the computation is seen within a fraction of a second.
    while still_busy():
        assert time.monotonic() - timed < SLEEP + 10, "the sleep never ended"
        time.sleep(0.2)
    idle_at = time.monotonic()
    busy_for = idle_at - timed
    assert busy_for >= 2 * IDLE, f"the kernel was busy only {busy_for:.1f}s: too short to prove"
    assert culled, f"the control was not culled within {busy_for:.1f}s: culling is not working"

    wait_until(lambda: get_session(cluster, ns, kid) is None, IDLE + 30, "the session culled")
    after = time.monotonic() - idle_at
    assert IDLE - 1 <= after <= IDLE + 3 * CULL_ROUND + 2, \
        f"culled {after:.1f}s after the computation ended (idle timeout {IDLE}s)"
    (kept,) = events(cluster, ns, kid, reason=REASON_CULL_POSTPONED)  # one per busy stretch
    assert "kernel is busy (launcher)" in kept["message"], kept["message"]
    (event,) = wait_until(lambda: events(cluster, ns, kid, reason=crd.REASON_CULLED), 30,
                          "Culled event")
    assert "idle since the last activity (launcher)" in event["message"], event["message"]
    assert not events(cluster, ns, control, reason=REASON_CULL_POSTPONED)


def test_session_connected_through_live_replica_is_not_culled(cluster, ns):
    def dead() -> dict:
        return _replica(0, "idle", heartbeat_ago=300, last_activity_ago=300)

    _kept_while_control_culled(
        cluster, ns,
        protected=lambda: {"gw-dead": dead(), "gw-b": _replica(1, "idle", heartbeat_ago=0)},
        unprotected=lambda: {"gw-dead": dead(), "gw-b": _replica(0, "idle", heartbeat_ago=0)})


def test_session_connected_only_through_stale_replica_is_culled(cluster, ns):
    kid = _ready_session(cluster, ns)
    _report(cluster, ns, kid, {"gw-gone": _replica(2, "busy", heartbeat_ago=90,
                                                   last_activity_ago=90)})
    set_idle_timeout(cluster, ns, kid, IDLE)
    wait_until(lambda: get_session(cluster, ns, kid) is None, 60, "stale-only session culled")
    assert wait_until(lambda: events(cluster, ns, kid, reason=crd.REASON_CULLED), 30,
                      "Culled event")
