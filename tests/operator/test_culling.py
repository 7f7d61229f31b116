"""Culling from the activity gateways report in status.activity (written here as a gateway would).

The session operator culls every 2 s and treats heartbeats older than 30 s as stale. A test that
a session is *not* culled runs a positive control beside it: a session with the same timeout
and the same report minus the one thing that protects, which must be culled within the same
wait, so that the test fails when culling does not run at all.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from kernelkeeper.crds import model as crd
from tests.helpers import (
    apply_session,
    events,
    get_session,
    holds_for,
    set_idle_timeout,
    wait_ready,
    wait_until,
)

IDLE = 4  # seconds; sessions start with a long timeout and get this one once Ready
SURVIVE = 12  # seconds a protected session must outlive its idle timeout (several cull rounds)


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
    _kept_while_control_culled(
        cluster, ns,
        protected=lambda: {"gw-a": _replica(0, "busy", heartbeat_ago=0)},
        unprotected=lambda: {"gw-a": _replica(0, "idle", heartbeat_ago=0)})


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
