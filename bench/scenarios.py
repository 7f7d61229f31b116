"""The per-target scenarios: execute round trip, stream throughput, start-to-first-execute.

Every target is wrapped in a Session (a kernel plus a client that stays connected), so the
runner can interleave the targets: latency in blocks, round after round, throughput and start
one run per target per round. Load from other work on a shared machine then drifts over all
targets alike instead of landing on whichever was measured at the wrong moment.

Results are plain dicts with a `status` of "ok", "FAILED" (with `error` and whatever numbers
were gathered) or "not measured" (with `reason`). A peer failing is a result, not a crash.
"""

from __future__ import annotations

import json
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import direct_zmq, wsclient
from bench.protocol import BenchError, LatencyResult, ThroughputResult
from bench.targets import Target

# Printed by the kernel so the report shows which ipykernel answered each target.
IDENTITY_CODE = (
    "import json, sys, ipykernel, IPython, jupyter_client, zmq\n"
    "print(json.dumps({'ipykernel': ipykernel.__version__, 'ipython': IPython.__version__,"
    " 'python': sys.version.split()[0], 'kernel jupyter_client': jupyter_client.__version__,"
    " 'kernel pyzmq': zmq.__version__}))\n"
)
WARMUP = 10


def not_measured(reason: str) -> dict[str, Any]:
    return {"status": "not measured", "reason": reason}


def failed(error: str, **numbers: Any) -> dict[str, Any]:
    return {"status": "FAILED", "error": error, **numbers}


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"


def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a scenario; an unexpected exception becomes a FAILED result with its message."""
    try:
        return fn()
    except BenchError as exc:
        return failed(str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in a peer or here must not end the run
        return failed(describe(exc), traceback=traceback.format_exc(limit=4))


class Session:
    """One target with a kernel, ready to be measured."""

    key: str

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def latency_block(self, runs: int, warmup: int) -> list[float]:
        raise NotImplementedError

    def throughput_once(self) -> ThroughputResult:
        raise NotImplementedError

    def start_once(self) -> tuple[float, float | None]:
        """(seconds until the first execute of a new kernel answered, of which POST)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DirectSession(Session):
    def __init__(self) -> None:
        self.key = "direct"
        self.kernel = direct_zmq.DirectKernel()
        self.kernel.start()

    def identity(self) -> dict[str, Any]:
        out = self.kernel.execute(IDENTITY_CODE, 60, collect_text=True)
        return json.loads(out.text.strip().splitlines()[-1])

    def latency_block(self, runs: int, warmup: int) -> list[float]:
        return direct_zmq.measure_latency(self.kernel, runs, warmup).samples_ms

    def throughput_once(self) -> ThroughputResult:
        return direct_zmq.measure_throughput(self.kernel)

    def start_once(self) -> tuple[float, float | None]:
        return direct_zmq.measure_start(), None

    def close(self) -> None:
        self.kernel.stop()


class ServerSession(Session):
    """A kernel on a server and one websocket to it, kept open across latency blocks."""

    def __init__(self, target: Target) -> None:
        self.key = target.key
        self.target = target
        self.kernel_id = target.start_kernel()
        if target.process is not None:
            target.process.track()
        self.ws = target.websocket(self.kernel_id)

    def identity(self) -> dict[str, Any]:
        out = self.ws.execute(IDENTITY_CODE, 60, collect_text=True)
        wsclient.check_ok(out)
        return json.loads(out.text.strip().splitlines()[-1])

    def latency_block(self, runs: int, warmup: int) -> list[float]:
        return wsclient.measure_latency(self.ws, runs, warmup).samples_ms

    def throughput_once(self) -> ThroughputResult:
        # A websocket of its own, so a failed run cannot leak frames into the latency socket.
        with self.target.websocket(self.kernel_id) as ws:
            return wsclient.measure_throughput(ws)

    def start_once(self, timeout: float = 120.0) -> tuple[float, float | None]:
        t0 = time.perf_counter()
        kid = self.target.start_kernel(timeout)
        post = time.perf_counter() - t0
        try:
            if self.target.process is not None:
                self.target.process.track()
            with self.target.websocket(kid, timeout) as ws:
                wsclient.check_ok(ws.execute("pass", timeout))
            return time.perf_counter() - t0, post
        finally:
            self.target.shutdown_kernel(kid)

    def close(self) -> None:
        self.ws.close()
        self.target.shutdown_kernel(self.kernel_id)


# ----------------------------------------------------------------------------- interleaving


def interleaved_latency(sessions: list[Session], runs: int, block: int = 50,
                        log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[float]] = {s.key: [] for s in sessions}
    errors: dict[str, str] = {}
    rounds = max(1, -(-runs // block))
    for r in range(rounds):
        n = min(block, runs - r * block)
        log(f"latency round {r + 1}/{rounds} ({n} runs per target)")
        for s in sessions:
            if s.key in errors:
                continue
            try:
                samples[s.key] += s.latency_block(n, WARMUP if r == 0 else 0)
            except Exception as exc:  # noqa: BLE001
                errors[s.key] = describe(exc)
    out: dict[str, dict[str, Any]] = {}
    for s in sessions:
        res = LatencyResult(samples[s.key])
        d = {**res.summary(), "samples_ms": [round(x, 4) for x in res.samples_ms]}
        out[s.key] = ({**d, **failed(f"after {res.n} runs: {errors[s.key]}")}
                      if s.key in errors else {"status": "ok", **d})
    return out


def _throughput_dict(runs: list[ThroughputResult]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "runs": [r.to_json() for r in runs],
        "expected_bytes": runs[0].expected_bytes,
        "received_bytes": [r.received_bytes for r in runs],
        "mb_per_s": statistics.median(r.mb_per_s for r in runs),
        "seconds": statistics.median(r.seconds for r in runs),
    }
    bad = [r for r in runs if not r.complete]
    if bad:
        r = bad[0]
        missing = r.expected_bytes - r.received_bytes
        return {**out, **failed(f"received {r.received_bytes:,} of {r.expected_bytes:,} bytes "
                                f"({missing:,} missing)" + (f": {r.error}" if r.error else ""))}
    return {**out, "status": "ok"}


def interleaved_throughput(sessions: list[Session], reps: int,
                           log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[ThroughputResult]] = {s.key: [] for s in sessions}
    errors: dict[str, str] = {}
    for r in range(reps):
        log(f"throughput round {r + 1}/{reps}")
        for s in sessions:
            if s.key in errors or (runs[s.key] and not runs[s.key][-1].complete):
                continue  # one failed run is the result; do not pile more load on it
            try:
                runs[s.key].append(s.throughput_once())
            except Exception as exc:  # noqa: BLE001
                errors[s.key] = describe(exc)
    out = {}
    for s in sessions:
        if s.key in errors and not runs[s.key]:
            out[s.key] = failed(errors[s.key])
        else:
            out[s.key] = _throughput_dict(runs[s.key])
    return out


def interleaved_start(sessions: list[Session], reps: int,
                      log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    totals: dict[str, list[float]] = {s.key: [] for s in sessions}
    posts: dict[str, list[float]] = {s.key: [] for s in sessions}
    errors: dict[str, str] = {}
    for r in range(reps):
        log(f"start round {r + 1}/{reps}")
        for s in sessions:
            if s.key in errors:
                continue
            try:
                total, post = s.start_once()
            except Exception as exc:  # noqa: BLE001
                errors[s.key] = describe(exc)
                continue
            totals[s.key].append(total)
            if post is not None:
                posts[s.key].append(post)
    out = {}
    for s in sessions:
        d: dict[str, Any] = {"samples_s": totals[s.key], "post_s": posts[s.key]}
        if totals[s.key]:
            d["median_s"] = statistics.median(totals[s.key])
        out[s.key] = ({**d, **failed(errors[s.key])} if s.key in errors
                      else {"status": "ok", **d})
    return out
