"""The operator's liveness and readiness verdicts, and the health server on a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request

import pytest

from kernelkeeper.operator.health import HealthServer, OperatorHealth, Phase, start_server
from kernelkeeper.operator.settings import OperatorConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health(clock: Clock, *, leader: bool = False, observed: bool = False,
            stall: float = 30) -> tuple[OperatorHealth, dict[str, bool]]:
    lease = {"leader": leader, "observed": observed}
    health = OperatorHealth(stall_timeout=stall, is_leader=lambda: lease["leader"],
                            lease_observed=lambda: lease["observed"], clock=clock)
    return health, lease


def test_a_stalled_event_loop_fails_liveness_and_readiness_and_recovers():
    clock = Clock()
    health, _ = _health(clock, observed=True)
    health.set_phase(Phase.STANDBY)
    clock.now += 29
    assert health.liveness().ok and health.readiness().ok
    clock.now += 2
    live = health.liveness()
    assert (live.ok, live.reason) == (False, "event-loop-stalled")
    assert "31.0s" in live.message and "limit 30s" in live.message
    assert health.readiness().reason == "event-loop-stalled"
    assert health.loop_lag() == pytest.approx(30.0)
    health.beat(0.25)
    assert health.liveness().ok and health.loop_lag() == 0.25


def test_a_loop_that_never_beats_is_judged_from_its_start():
    clock = Clock()
    health, _ = _health(clock)
    clock.now += 31
    assert health.liveness().reason == "event-loop-stalled"


def test_a_leader_whose_round_stops_completing_fails_liveness():
    clock = Clock()
    health, _ = _health(clock, leader=True, observed=True)
    health.start_rounds({"resync": 150, "culling": 180})
    health.set_phase(Phase.LEADING)
    for _ in range(14):  # the loop beats (the Lease renews too) but resync never completes
        clock.now += 10
        health.beat(0.0)
        health.round_done("culling")
    assert health.liveness().ok
    clock.now += 11
    health.beat(0.0)
    live = health.liveness()
    assert (live.ok, live.reason) == (False, "round-stalled")
    assert "no resync round has completed for 151s (deadline 150s)" in live.message
    health.round_done("resync")
    assert health.liveness().ok
    report = health.report(health.liveness())
    assert report["status"] == "ok" and report["phase"] == "leading" and report["leader"]
    assert set(report["rounds"]) == {"resync", "culling"}


def test_rounds_do_not_matter_on_a_standby():
    clock = Clock()
    health, _ = _health(clock, observed=True)
    health.start_rounds({"resync": 5})
    health.set_phase(Phase.STANDBY)  # leading ended: its deadlines with it
    clock.now += 20
    health.beat(0.0)
    assert health.liveness().ok and health.report(health.liveness())["rounds"] == {}


@pytest.mark.parametrize(("phase", "leader", "observed", "ok", "reason"), [
    (Phase.STARTING, False, False, False, "starting"),
    (Phase.STANDBY, False, False, False, "lease-pending"),
    (Phase.STANDBY, False, True, True, "standby"),
    (Phase.STANDBY, True, True, False, "taking-over"),
    (Phase.LEADING, True, True, True, "leading"),
    (Phase.LEADING, False, True, False, "lease-lost"),
    (Phase.STOPPING, True, True, False, "stopping"),
])
def test_readiness(phase, leader, observed, ok, reason):
    health, _ = _health(Clock(), leader=leader, observed=observed)
    health.set_phase(phase)
    verdict = health.readiness()
    assert (verdict.ok, verdict.reason) == (ok, reason)
    assert health.liveness().ok  # none of these is a reason to restart the process


def test_heartbeat_beats_on_the_running_loop():
    health = OperatorHealth(stall_timeout=5)

    async def run() -> None:
        task = asyncio.create_task(health.heartbeat(interval=0.05))
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(run())
    report = health.report(health.liveness())
    assert report["heartbeatAgeSeconds"] < 0.2 and health.loop_lag() < 0.2


def test_round_deadline_is_derived_from_interval_and_request_timeout():
    assert OperatorConfig(identity="t").round_deadline(30) == 330
    assert OperatorConfig(identity="t", request_timeout=5).round_deadline(60) == 180
    assert OperatorConfig(identity="t", round_deadline_override=12).round_deadline(30) == 12
    for bad in ({"health_port": 70000}, {"loop_stall_timeout": 1},
                {"round_deadline_override": 0}):
        with pytest.raises(ValueError):
            OperatorConfig(identity="t", **bad)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_server_answers_probes_and_metrics_and_writes_nothing_to_stderr(capfd):
    clock = Clock()
    health, lease = _health(clock, observed=True)
    health.set_phase(Phase.STANDBY)
    server = HealthServer(health, lambda: "kernelkeeper_operator_up 1\n", "127.0.0.1", 0)
    server.start()
    base = f"http://127.0.0.1:{server.address[1]}"
    try:
        status, ctype, body = _get(f"{base}/healthz")
        assert status == 200 and ctype == "application/json"
        assert json.loads(body)["reason"] == "ok"
        assert _get(f"{base}/readyz")[0] == 200
        status, ctype, body = _get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert body == "kernelkeeper_operator_up 1\n"
        assert _get(f"{base}/nope")[0] == 404
        clock.now += 60
        status, _, body = _get(f"{base}/healthz?verbose=1")
        assert status == 503 and json.loads(body)["reason"] == "event-loop-stalled"
        lease["observed"] = False
        assert json.loads(_get(f"{base}/readyz")[2])["reason"] == "event-loop-stalled"
    finally:
        server.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the stdlib logs every request to stderr unless told not to


def test_server_answers_while_the_main_thread_is_stuck_in_a_log_write():
    health, _ = _health(Clock(), observed=True)
    health.set_phase(Phase.STANDBY)
    server = HealthServer(health, lambda: "", "127.0.0.1", 0)
    server.start()
    handler = logging.StreamHandler()  # any record logged from the server would wait for it
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    blocked, release = threading.Event(), threading.Event()

    def hold() -> None:  # what a thread writing to a full stderr pipe does: hold the lock
        with handler.lock:  # type: ignore[union-attr]
            blocked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert blocked.wait(5)
        for path in ("/healthz", "/readyz", "/metrics", "/nope"):
            assert _get(f"http://127.0.0.1:{server.address[1]}{path}")[0] in (200, 404)
    finally:
        release.set()
        holder.join()
        root.removeHandler(handler)
        root.setLevel(level)
        server.close()


def test_port_zero_disables_and_a_taken_port_is_reported_not_fatal(caplog):
    health = OperatorHealth(stall_timeout=5)
    assert start_server(health, lambda: "", "127.0.0.1", 0) is None
    first = HealthServer(health, lambda: "", "127.0.0.1", 0)
    try:
        port = first.address[1]
        with caplog.at_level("ERROR"):
            assert start_server(health, lambda: "", "127.0.0.1", port) is None
        assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    finally:
        first.close()
