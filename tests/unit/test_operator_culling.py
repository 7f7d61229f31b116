"""The cull decision: staleness, busy, connections, the launcher's view, and where idle time
counts from.

Every "not culled" case sits beside a control that differs only in what protects it and is
culled, so that a decision which never culls fails these tests.
"""

from __future__ import annotations

import datetime as dt

from kernelkeeper.operator.culling import cull_decision

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def _ago(seconds: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ks(activity=None, idle=None, started=600, created=700) -> dict:
    ks = {"metadata": {"creationTimestamp": _ago(created)}, "spec": {}, "status": {}}
    if idle is not None:
        ks["spec"]["idleTimeoutSeconds"] = idle
    if started is not None:
        ks["status"]["startedAt"] = _ago(started)
    if activity is not None:
        ks["status"]["activity"] = activity
    return ks


def _decide(ks, **kw):
    opts = {"default_timeout": 300, "staleness": 60} | kw
    return cull_decision(ks, NOW, **opts)


def _rep(connections=0, state="idle", last=500, beat=5):
    return {"connections": connections, "executionState": state, "lastActivity": _ago(last),
            "heartbeat": _ago(beat)}


def test_idle_without_reports_counts_from_started_at():
    d = _decide(_ks())
    assert d.cull and round(d.idle_seconds) == 600 and d.timeout == 300


def test_not_idle_long_enough():
    assert not _decide(_ks(started=100, created=120)).cull
    assert _decide(_ks(started=400, created=420)).cull


def test_session_timeout_overrides_default_and_zero_disables():
    assert not _decide(_ks(idle=1000)).cull
    assert _decide(_ks(idle=10)).cull
    assert not _decide(_ks(idle=0)).cull
    assert not _decide(_ks(), default_timeout=0).cull
    assert _decide(_ks(), default_timeout=300).cull


def test_live_replica_activity_resets_idle():
    d = _decide(_ks({"replicas": {"a": _rep(last=30)}}))
    assert not d.cull and round(d.idle_seconds) == 30
    d = _decide(_ks({"replicas": {"a": _rep(last=330)}}))
    assert d.cull and round(d.idle_seconds) == 330


def test_busy_and_connected_protect_unless_configured():
    busy = _ks({"replicas": {"a": _rep(state="busy")}})
    assert not _decide(busy).cull and _decide(busy, cull_busy=True).cull
    conn = _ks({"replicas": {"a": _rep(connections=2)}})
    assert not _decide(conn).cull and _decide(conn, cull_connected=True).cull


def test_stale_replica_claims_are_ignored_but_its_past_activity_counts():
    stale = {"replicas": {"dead": _rep(connections=3, state="busy", last=400, beat=120)}}
    d = _decide(_ks(stale))
    assert d.cull and round(d.idle_seconds) == 400
    recent = {"replicas": {"quiet": _rep(connections=0, last=90, beat=90)}}
    d = _decide(_ks(recent))
    assert not d.cull and round(d.idle_seconds) == 90
    quiet_long = {"replicas": {"quiet": _rep(connections=0, last=400, beat=400)}}
    assert _decide(_ks(quiet_long)).cull


def test_future_activity_is_clamped():
    d = _decide(_ks({"replicas": {"skewed": _rep(last=-3600, beat=1)}}))
    assert not d.cull and d.idle_seconds == 0
    assert _decide(_ks({"replicas": {"skewed": _rep(last=3600, beat=1)}})).cull


def test_connection_through_live_replica_wins_over_stale_one():
    act = {"replicas": {"dead": _rep(beat=300), "alive": _rep(connections=1, beat=1)}}
    assert not _decide(_ks(act)).cull
    act = {"replicas": {"dead": _rep(beat=300), "alive": _rep(connections=0, beat=1)}}
    assert _decide(_ks(act)).cull


def test_summary_state_used_only_without_replicas():
    assert not _decide(_ks({"lastActivity": _ago(10), "executionState": "idle"})).cull
    assert _decide(_ks({"lastActivity": _ago(400), "executionState": "idle"})).cull
    assert not _decide(_ks({"executionState": "busy"})).cull
    assert _decide(_ks({"executionState": "idle"})).cull
    with_reps = {"lastActivity": _ago(400), "executionState": "busy",
                 "replicas": {"dead": _rep(last=500, beat=300)}}
    assert _decide(_ks(with_reps)).cull


def test_creation_time_when_never_started():
    d = _decide(_ks(started=None, created=400))
    assert d.cull and round(d.idle_seconds) == 400


def test_garbage_times_do_not_crash():
    act = {"replicas": {"a": {"heartbeat": "yesterday", "lastActivity": 5, "connections": 1}}}
    assert _decide(_ks(act)).cull


def _launcher(state="idle", last=None, busy_since=None) -> dict:
    """A launcher /status as kernel/health.py serves it (only the fields culling reads vary)."""
    return {"ready": True, "state": "ready", "restarts": 0, "executionState": state,
            "lastActivity": None if last is None else _ago(last),
            "busySince": None if busy_since is None else _ago(busy_since)}


def test_launcher_busy_protects_what_the_gateways_would_cull():
    # No gateway has reported for a long time (no client connected), the kernel computes.
    reports = {"replicas": {"a": _rep(last=500, beat=500)}}
    assert _decide(_ks(reports)).cull
    busy = _decide(_ks(reports), launcher=_launcher("busy", last=450, busy_since=450))
    assert not busy.cull and busy.why == "kernel is busy (launcher)"
    idle = _decide(_ks(reports), launcher=_launcher("idle", last=450))
    assert idle.cull and round(idle.idle_seconds) == 450
    assert _decide(_ks(reports), launcher=_launcher("busy", last=450, busy_since=450),
                   cull_busy=True).cull


def test_launcher_last_activity_counts_as_one_more_stamp():
    # Busy until 30 s ago: idle for 30 s, not since the last websocket (500 s ago).
    reports = {"replicas": {"a": _rep(last=500, beat=500)}}
    d = _decide(_ks(reports), launcher=_launcher("idle", last=30))
    assert not d.cull and round(d.idle_seconds) == 30 and "(launcher)" in d.why
    d = _decide(_ks(reports), launcher=_launcher("idle", last=330))
    assert d.cull and round(d.idle_seconds) == 330
    assert d.why == "idle since the last activity (launcher)"
    # An older launcher stamp does not hide newer gateway activity.
    d = _decide(_ks({"replicas": {"a": _rep(last=30, beat=30)}}), launcher=_launcher(last=400))
    assert not d.cull and round(d.idle_seconds) == 30 and "(gateway a)" in d.why


def test_launcher_busy_with_cull_busy_still_counts_its_last_activity():
    launcher = _launcher("busy", last=30, busy_since=30)
    assert not _decide(_ks(), launcher=launcher, cull_busy=True).cull
    assert _decide(_ks(), launcher=_launcher("busy", last=400, busy_since=400), cull_busy=True).cull


def test_launcher_without_activity_or_unread_changes_nothing():
    for launcher in (None, _launcher("starting"), _launcher("idle"), {}, {"lastActivity": "soon"}):
        d = _decide(_ks(), launcher=launcher)
        assert d.cull and round(d.idle_seconds) == 600, launcher
        assert d.why == "idle since the kernel started"
    assert not _decide(_ks(started=100, created=120), launcher=_launcher("starting")).cull


def test_launcher_future_activity_is_clamped():
    d = _decide(_ks(), launcher=_launcher(last=-3600))
    assert not d.cull and d.idle_seconds == 0


def test_connections_and_disabled_timeout_win_over_launcher_idle():
    conn = _ks({"replicas": {"a": _rep(connections=1, last=500)}})
    assert not _decide(conn, launcher=_launcher("idle", last=500)).cull
    assert _decide(conn, launcher=_launcher("idle", last=500), cull_connected=True).cull
    assert not _decide(_ks(idle=0), launcher=_launcher("idle", last=500)).cull


def test_gateway_busy_names_the_replica_that_saw_it():
    d = _decide(_ks({"replicas": {"gw-a": _rep(state="busy")}}))
    assert not d.cull and d.why == "kernel is busy (gateway gw-a)"
    d = _decide(_ks({"replicas": {"gw-a": _rep(state="busy")}}),
                launcher=_launcher("busy", busy_since=10))
    assert d.why == "kernel is busy (gateway gw-a, launcher)"
