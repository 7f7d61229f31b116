"""The operator's /healthz, /readyz and /metrics, served from a thread of its own.

The main event loop runs kopf, the reconciles and the periodic rounds. When it is stuck (a
blocking call, a write to a full log pipe, a reconcile that never ends), nothing on it can
answer a probe, and the Lease, renewed on a thread of its own (`kube/lease.py`), keeps
saying all is well. So the loop reports progress here (a heartbeat every second, each
completed round) and an HTTP server on another thread judges it:

- liveness fails when the heartbeat is older than the stall timeout, or, while leading,
  when a round has not completed within its deadline;
- readiness holds for a leader running kopf, and for a standby whose Lease thread has
  finished a first attempt (it can take over).

Nothing on the server's thread logs: a main thread blocked writing to stderr holds the
logging lock, and a probe that waited for it would hang with the operator it judges.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"


class Phase(enum.StrEnum):
    STARTING = "starting"  # connecting to the API server; the Lease thread not started yet
    STANDBY = "standby"  # the Lease thread runs; not leading (or taking over right now)
    LEADING = "leading"  # holding the Lease with kopf and the rounds running
    STOPPING = "stopping"  # shutting down


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # a stable word for alerts and tests
    message: str  # for a person


class OperatorHealth:
    """Progress reported by the main loop, judged on any thread.

    `is_leader` and `lease_observed` are read on the health thread: they must be
    thread-safe (LeaseThread's are). `lease_observed` is true once the Lease thread has
    read or written the Lease at least once.
    """

    def __init__(self, *, stall_timeout: float, is_leader: Callable[[], bool] = lambda: False,
                 lease_observed: Callable[[], bool] = lambda: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_timeout = stall_timeout
        self._is_leader = is_leader
        self._lease_observed = lease_observed
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._phase = Phase.STARTING
        self._last_beat = now  # a loop that never beats is judged from the start
        self._lag = 0.0
        self._rounds: dict[str, tuple[float, float]] = {}  # name -> (last completion, deadline)

    # ------------------------------------------------------------------ the main loop reports

    def set_phase(self, phase: Phase) -> None:
        with self._lock:
            self._phase = phase
            if phase is not Phase.LEADING:
                self._rounds.clear()

    def start_rounds(self, deadlines: Mapping[str, float]) -> None:
        """Leading begins: each round must now complete within its deadline."""
        now = self._clock()
        with self._lock:
            self._rounds = {name: (now, deadline) for name, deadline in deadlines.items()}

    def round_done(self, name: str) -> None:
        now = self._clock()
        with self._lock:
            if name in self._rounds:
                self._rounds[name] = (now, self._rounds[name][1])

    def beat(self, lag: float) -> None:
        now = self._clock()
        with self._lock:
            self._last_beat, self._lag = now, max(0.0, lag)

    async def heartbeat(self, interval: float = HEARTBEAT_INTERVAL) -> None:
        """Beat every `interval` seconds on the running loop, with how late the wakeup was."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + interval
            await asyncio.sleep(interval)
            self.beat(loop.time() - expected)

    # ------------------------------------------------------------------ judging, any thread

    def loop_lag(self) -> float:
        """The last wakeup's lateness, or, while no beat comes, how overdue the next one is."""
        now = self._clock()
        with self._lock:
            overdue = now - self._last_beat - HEARTBEAT_INTERVAL
            return max(self._lag, overdue, 0.0)

    def liveness(self) -> Verdict:
        now = self._clock()
        with self._lock:
            beat_age = now - self._last_beat
            phase, rounds = self._phase, dict(self._rounds)
        if beat_age > self.stall_timeout:
            return Verdict(False, "event-loop-stalled", (
                f"the main event loop has not run its heartbeat for {beat_age:.1f}s (limit "
                f"{self.stall_timeout:g}s): something blocks it (a synchronous call, a write "
                "to a full log pipe)"))
        if phase is Phase.LEADING:
            for name, (done, deadline) in sorted(rounds.items()):
                if now - done > deadline:
                    return Verdict(False, "round-stalled", (
                        f"no {name} round has completed for {now - done:.0f}s (deadline "
                        f"{deadline:g}s): a reconcile or API call is hung"))
        return Verdict(True, "ok", f"making progress ({phase})")

    def readiness(self) -> Verdict:
        with self._lock:
            phase = self._phase
        if phase is Phase.STOPPING:
            return Verdict(False, "stopping", "the operator is shutting down")
        live = self.liveness()
        if not live.ok:
            return live
        if phase is Phase.STARTING:
            return Verdict(False, "starting", "connecting to the API server")
        leader = self._is_leader()
        if phase is Phase.LEADING:
            if leader:
                return Verdict(True, "leading", "holding the Lease; kopf is running")
            return Verdict(False, "lease-lost", "leadership was lost; the operator is exiting")
        if leader:
            return Verdict(False, "taking-over", "the Lease was acquired; kopf is starting")
        if not self._lease_observed():
            return Verdict(False, "lease-pending",
                           "the first Lease attempt has not finished (is the API server "
                           "reachable?)")
        return Verdict(True, "standby", "standing by, ready to take the Lease over")

    def report(self, verdict: Verdict) -> dict[str, Any]:
        """A probe's JSON body: the verdict and what it was judged from."""
        now = self._clock()
        with self._lock:
            beat_age = now - self._last_beat
            phase, rounds = self._phase, dict(self._rounds)
        return {
            "status": "ok" if verdict.ok else "fail",
            "reason": verdict.reason,
            "message": verdict.message,
            "phase": str(phase),
            "leader": self._is_leader(),
            "heartbeatAgeSeconds": round(beat_age, 3),
            "stallTimeoutSeconds": self.stall_timeout,
            "rounds": {name: {"sinceCompletedSeconds": round(now - done, 3),
                              "deadlineSeconds": deadline}
                       for name, (done, deadline) in sorted(rounds.items())},
        }


class HealthServer:
    """A stdlib HTTP server for the probes and metrics, on a daemon thread of its own."""

    def __init__(self, health: OperatorHealth, metrics: Callable[[], str], host: str,
                 port: int) -> None:
        handler = _handler(health, metrics)
        self._server = _QuietServer((host, port), handler)  # OSError if the port is taken
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.5}, name="health",
                                        daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving (blocks up to the poll interval: call it off the event loop)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # A probe must not wait behind a previous server's socket in TIME_WAIT after a restart.
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr here: that write could block the thread.
        pass


def _handler(health: OperatorHealth,
             metrics: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "kernelkeeper-operator"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in (LIVENESS_PATH, READINESS_PATH):
                verdict = health.liveness() if path == LIVENESS_PATH else health.readiness()
                body = json.dumps(health.report(verdict)).encode()
                self._send(200 if verdict.ok else 503, "application/json", body)
            elif path == METRICS_PATH:
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", metrics().encode())
            else:
                self._send(404, "application/json",
                           json.dumps({"status": "fail", "reason": "not-found",
                                       "message": f"no {path}; try {LIVENESS_PATH}, "
                                                  f"{READINESS_PATH} or {METRICS_PATH}"}).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the stdlib writes every request to stderr: see the module docstring

    return Handler


def start_server(health: OperatorHealth, metrics: Callable[[], str], host: str,
                 port: int) -> HealthServer | None:
    """The running server, or None when `port` is 0 or cannot be bound (said in the log).

    A port that cannot be bound does not stop the operator: in a Pod its failing probes get
    it restarted and say why, and on a host where several replicas run side by side (the
    tests, a local HA setup) the others still reconcile.
    """
    if not port:
        return None
    try:
        server = HealthServer(health, metrics, host, port)
    except OSError as exc:
        log.error("no health endpoint: cannot listen on %s:%d (%s); pass another "
                  "--health-port, or 0 for none", host, port, exc)
        return None
    server.start()
    log.info("health endpoint on http://%s:%d (%s, %s, %s)", host, server.address[1],
             LIVENESS_PATH, READINESS_PATH, METRICS_PATH)
    return server
