"""The cull decision: staleness, busy, connections, and where idle time counts from.

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
