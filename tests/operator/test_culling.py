"""Culling from the activity gateways report in status.activity (written here as a gateway would).

The session operator culls every 2 s and treats heartbeats older than 30 s as stale.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from kernelkeeper.crds import model as crd
from tests.operator.helpers import apply_session, get_session, wait_ready, wait_until

IDLE = 4  # seconds; sessions start with a long timeout and get this one once Ready


def _iso(seconds_ago: float = 0) -> str:
    t = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _report(cluster, ns: str, kid: str, replicas: dict) -> None:
    activity = {"lastActivity": _iso(120), "executionState": "idle", "replicas": replicas}
    cluster.kubectl("patch", "ks", kid, "-n", ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"activity": activity}}))


def _culled_events(cluster, ns: str, kid: str) -> list[dict]:
    out = cluster.kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector",
                          f"involvedObject.name={kid},reason={crd.REASON_CULLED}")
    return json.loads(out.stdout)["items"]


def _shorten_timeout(cluster, ns: str, kid: str) -> None:
    """Start long, report, then shorten: no race between Ready and the first report."""
    cluster.kubectl("patch", "ks", kid, "-n", ns, "--type=merge",
                    "-p", json.dumps({"spec": {"idleTimeoutSeconds": IDLE}}))


def _survives(cluster, ns: str, kid: str, seconds: float = 12) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert get_session(cluster, ns, kid) is not None, "session was culled"
        time.sleep(0.5)
    assert not _culled_events(cluster, ns, kid)


def test_idle_session_is_culled(cluster, ns):
    kid = apply_session(cluster, ns, idle_timeout_seconds=3600)
    wait_ready(cluster, ns, kid)
    _shorten_timeout(cluster, ns, kid)
    wait_until(lambda: get_session(cluster, ns, kid) is None, 60, "idle session culled")
    (event,) = wait_until(lambda: _culled_events(cluster, ns, kid), 30, "Culled event")
    assert "without activity" in event["message"] and f"idle timeout {IDLE}s" in event["message"]


def test_busy_session_is_not_culled(cluster, ns):
    kid = apply_session(cluster, ns, idle_timeout_seconds=3600)
    wait_ready(cluster, ns, kid)
    _report(cluster, ns, kid, {"gw-a": {"connections": 0, "executionState": "busy",
                                        "lastActivity": _iso(120), "heartbeat": _iso()}})
    _shorten_timeout(cluster, ns, kid)
    _survives(cluster, ns, kid)


def test_session_connected_through_live_replica_is_not_culled(cluster, ns):
    kid = apply_session(cluster, ns, idle_timeout_seconds=3600)
    wait_ready(cluster, ns, kid)
    _report(cluster, ns, kid, {
        "gw-dead": {"connections": 0, "executionState": "idle", "lastActivity": _iso(300),
                    "heartbeat": _iso(300)},
        "gw-b": {"connections": 1, "executionState": "idle", "lastActivity": _iso(120),
                 "heartbeat": _iso()},
    })
    _shorten_timeout(cluster, ns, kid)
    _survives(cluster, ns, kid)


def test_session_connected_only_through_stale_replica_is_culled(cluster, ns):
    kid = apply_session(cluster, ns, idle_timeout_seconds=3600)
    wait_ready(cluster, ns, kid)
    _report(cluster, ns, kid, {"gw-gone": {"connections": 2, "executionState": "busy",
                                           "lastActivity": _iso(90), "heartbeat": _iso(90)}})
    _shorten_timeout(cluster, ns, kid)
    wait_until(lambda: get_session(cluster, ns, kid) is None, 60, "stale-only session culled")
    assert wait_until(lambda: _culled_events(cluster, ns, kid), 30, "Culled event")
