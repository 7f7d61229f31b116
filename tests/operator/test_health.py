"""The operator's own /healthz, /readyz and /metrics, judged on real operators.

The hang is a real one: the operator's stderr is a pipe this test stops reading, so once the
pipe is full the operator's main thread blocks in write() inside its logging, the way an
operator whose log collector stalls does. The Lease thread, silent while it renews, keeps
the Lease; only the health endpoint can tell that nothing else moves.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from prometheus_client.parser import text_string_to_metric_families

from kernelkeeper.crds import model as crd
from kernelkeeper.operator.settings import LEASE_NAME
from tests.fixtures.operator import OperatorHarness, OperatorProcess
from tests.helpers import (
    apply_session,
    get_session,
    holds_for,
    ready_reason,
    wait_ready,
    wait_session,
    wait_until,
)

# Linux's smallest pipe (one page): a few log lines fill it.
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 4096


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(port: int, path: str) -> tuple[int, dict]:
    """Status and JSON body of a probe; (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _health_args(port: int, *more: str) -> tuple[str, ...]:
    return ("--health-port", str(port), "--health-ip", "127.0.0.1", *more)


def _renew_time(cluster) -> tuple[str, str]:
    lease = json.loads(cluster.kubectl("get", "lease", LEASE_NAME, "-n", "default",
                                       "-o", "json").stdout)["spec"]
    return lease.get("holderIdentity") or "", lease.get("renewTime") or ""


class PipedOperator:
    """An operator whose stderr is a small pipe, read only while `reading` is set."""

    def __init__(self, harness: OperatorHarness, identity: str, *args: str) -> None:
        self.identity = identity
        self.proc = subprocess.Popen(harness.command(identity, *args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     start_new_session=True)
        assert self.proc.stderr is not None
        self._fd = self.proc.stderr.fileno()
        fcntl.fcntl(self._fd, F_SETPIPE_SZ, PIPE_SIZE)  # before the operator has written
        self.reading = threading.Event()
        self.reading.set()
        self._lock = threading.Lock()
        self._out = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            self.reading.wait()
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return
            with self._lock:
                self._out += chunk

    def output(self) -> str:
        with self._lock:
            return self._out.decode(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        def logged() -> bool:
            assert self.proc.poll() is None, f"operator exited:\n{self.output()[-4000:]}"
            return text in self.output()

        wait_until(logged, timeout, f"operator {self.identity} logging {text!r}",
                   detail=lambda: self.output()[-4000:])

    def stop(self) -> int:
        self.reading.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            self._reader.join(10)
            assert self.proc.stderr is not None
            self.proc.stderr.close()


@contextlib.contextmanager
def _piped(harness: OperatorHarness, identity: str, *args: str) -> Iterator[PipedOperator]:
    op = PipedOperator(harness, identity, *args)
    try:
        yield op
    finally:
        op.stop()


def test_a_blocked_event_loop_fails_liveness_while_the_lease_keeps_renewing(
        cluster, ns, operator):
    port = _free_port()
    with operator.paused(), _piped(operator, "hang",
                                   *_health_args(port, "--loop-stall-timeout", "5")) as op:
        op.wait_for_log("is the leader")
        wait_until(lambda: _probe(port, "/healthz")[0] == 200, 30, "/healthz answering 200")
        holds_for(lambda: _probe(port, "/healthz")[0] == 200, 6, "a healthy operator's /healthz")

        op.reading.clear()
        # Each session names a kernel spec nobody has: the operator logs one Event line for
        # it (and starts no Pod). A few batches fill the pipe; the next log write blocks.
        created: list[str] = []

        def stalled() -> dict | None:
            status, body = _probe(port, "/healthz")
            if status == 503:
                return body
            assert status == 200, f"/healthz answered {status}: {body}"
            if len(created) < 200:
                created.extend(apply_session(cluster, ns, "no-such-spec") for _ in range(5))
            return None

        body = wait_until(stalled, 180, "/healthz failing while stderr is not read", interval=2)
        assert body["reason"] == "event-loop-stalled", body
        assert body["phase"] == "leading" and body["leader"] is True
        assert op.proc.poll() is None
        held_by, renewed = _renew_time(cluster)
        assert held_by == "hang"

        # Longer than the Lease's 15 s: a holder that stopped renewing would have lost it.
        seen = {renewed}

        def still_stalled() -> bool:
            seen.add(_renew_time(cluster)[1])
            status, now = _probe(port, "/healthz")
            return status == 503 and now["reason"] == "event-loop-stalled" \
                and now["heartbeatAgeSeconds"] > 5
        holds_for(still_stalled, 20, "the stall")
        assert len(seen) >= 5, f"the Lease's renewTime hardly moved during the stall: {seen}"
        assert _renew_time(cluster)[0] == "hang"
        last = get_session(cluster, ns, created[-1])
        assert last is not None and not last.get("status"), \
            f"the last session was reconciled, so the loop was not blocked: {last}"

        op.reading.set()
        wait_until(lambda: _probe(port, "/healthz")[0] == 200, 30, "/healthz recovering")
        # The loop catches up on what queued while it was blocked.
        for kid in (created[0], created[-1]):
            wait_session(cluster, ns, kid,
                         lambda ks: ready_reason(ks) == ("False", crd.REASON_UNKNOWN_SPEC),
                         60, "UnknownKernelSpec after the stall")
        status, body = _probe(port, "/readyz")
        assert (status, body["reason"]) == (200, "leading")


def _pair(operator: OperatorHarness, replicas: list, name: str
          ) -> tuple[OperatorProcess, int, OperatorProcess, int]:
    """<name>-a leading and <name>-b standing by, each with a health port of its own."""
    pa, pb = _free_port(), _free_port()
    a = operator.spawn(f"{name}-a", *_health_args(pa))
    replicas.append(a)
    a.wait_leading()
    b = operator.spawn(f"{name}-b", *_health_args(pb))
    replicas.append(b)
    b.wait_for_log("waiting for lease")
    return a, pa, b, pb


def test_readyz_on_a_leader_and_a_standby(cluster, operator, operator_replicas):
    with operator.paused():
        a, pa, b, pb = _pair(operator, operator_replicas, "ready")
        try:
            wait_until(lambda: _probe(pa, "/readyz")[0] == 200, 30, "the leader ready")
            status, body = _probe(pa, "/readyz")
            assert (status, body["reason"], body["leader"]) == (200, "leading", True)
            status, body = _probe(pb, "/readyz")
            assert (status, body["reason"], body["leader"]) == (200, "standby", False)
            for port in (pa, pb):
                status, body = _probe(port, "/healthz")
                assert (status, body["reason"]) == (200, "ok")
            assert _probe(pb, "/healthz")[1]["rounds"] == {}  # a standby runs no rounds
            assert set(_probe(pa, "/healthz")[1]["rounds"]) == {"resync", "culling"}

            assert a.terminate() == 0
            assert _probe(pa, "/readyz")[0] == 0  # gone with its process
            b.wait_leading(timeout=30)
            wait_until(lambda: _probe(pb, "/readyz")[1].get("reason") == "leading", 30,
                       "the standby ready as the leader",
                       detail=lambda: str(_probe(pb, "/readyz")))
        finally:
            for rep in (a, b):
                rep.terminate()


def test_metrics_after_a_kernel_started(cluster, ns, operator, operator_replicas):
    with operator.paused():
        a, pa, b, pb = _pair(operator, operator_replicas, "metrics")
        try:
            began = time.monotonic()
            kid = apply_session(cluster, ns)
            wait_ready(cluster, ns, kid)
            waited = time.monotonic() - began
            p = "kernelkeeper_operator_"

            def started() -> dict | None:
                m = _metrics(pa)
                return m if m[(f"{p}kernel_start_seconds_count", ())] >= 1 else None

            m = wait_until(started, 30, "the leader's start histogram counting the kernel")
            assert m[(f"{p}kernel_starts_total", (("cause", "new"),))] >= 1
            assert m[(f"{p}reconciles_total", (("result", "ok"),))] >= 1
            assert m[(f"{p}pods_owned", ())] >= 1
            assert m[(f"{p}lease_holder", ())] == 1
            assert m[(f"{p}lease_transitions", ())] >= 1  # it took the Lease over from main
            assert 0 <= m[(f"{p}event_loop_lag_seconds", ())] < 1
            # Whole-second creation stamps: the observed start may exceed the wait by 1 s.
            mean = m[(f"{p}kernel_start_seconds_sum", ())] / \
                m[(f"{p}kernel_start_seconds_count", ())]
            assert 0 < mean < max(waited, 1) + 60
            assert m[(f"{p}kernel_start_seconds_bucket", (("le", "+Inf"),))] == \
                m[(f"{p}kernel_start_seconds_count", ())]

            standby = _metrics(pb)
            assert standby[(f"{p}lease_holder", ())] == 0
            assert standby[(f"{p}kernel_starts_total", (("cause", "new"),))] == 0
            assert standby[(f"{p}reconciles_total", (("result", "ok"),))] == 0
            assert standby[(f"{p}pods_owned", ())] == 0
            assert kid not in b.output()
        finally:
            for rep in (a, b):
                rep.terminate()
