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

from jupyter_client.connect import KernelConnectionInfo

from bench import measure
from bench.direct_zmq import DirectKernel, ZmqClient, measure_start
from bench.measure import KernelClient
from bench.protocol import BenchError, LatencyResult, ThroughputResult, check_ok
from bench.targets import Target

# Printed by the kernel so the report shows which ipykernel answered each target.
IDENTITY_CODE = (
    "import json, sys, ipykernel, IPython, jupyter_client, zmq\n"
    "print(json.dumps({'ipykernel': ipykernel.__version__, 'ipython': IPython.__version__,"
    " 'python': sys.version.split()[0], 'kernel jupyter_client': jupyter_client.__version__,"
    " 'kernel pyzmq': zmq.__version__}))\n"
)


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
    """One way to reach a kernel: a kernel of its own plus a client that stays connected.

    Latency and throughput are the shared loop (bench.measure) over `client`; a subclass only
    says how its kernel starts and stops and which client reaches it.
    """

    key: str
    client: KernelClient
    measures_start = True  # False: a second way to one server; its start is the server's

    def new_client(self) -> KernelClient:
        """A client of the same kind to the same kernel, not yet connected."""
        raise NotImplementedError

    def start_once(self) -> tuple[float, float | None]:
        """(seconds until the first execute of a new kernel answered, of which POST)."""
        raise NotImplementedError

    def release(self) -> None:
        """Stop this session's kernel."""
        raise NotImplementedError

    def connect_first(self, timeout: float = 60.0) -> None:
        """Connect `client` to the new kernel; the kernel goes if that fails."""
        try:
            self.client.connect(timeout)
        except BaseException:
            self.release()
            raise

    def identity(self) -> dict[str, Any]:
        out = self.client.execute(IDENTITY_CODE, 60, collect_text=True)
        check_ok(out)
        return dict(json.loads(out.text.strip().splitlines()[-1]))

    def latency_block(self, runs: int, warmup: int) -> list[float]:
        return measure.latency(self.client, runs, warmup).samples_ms

    def throughput_once(self) -> ThroughputResult:
        # A connection of its own, so a failed run cannot leak frames into the latency one.
        client = self.new_client()
        client.connect()
        try:
            return measure.throughput(client)
        finally:
            client.close()

    def close(self) -> None:
        self.client.close()
        self.release()


class DirectSession(Session):
    """A local ipykernel and jupyter_client on its sockets: the baseline."""

    def __init__(self) -> None:
        self.key = "direct"
        self.kernel = DirectKernel()
        self.kernel.start()
        self.client = self.kernel.client()
        self.connect_first()

    def new_client(self) -> KernelClient:
        return self.kernel.client()

    def start_once(self) -> tuple[float, float | None]:
        return measure_start(), None

    def release(self) -> None:
        self.kernel.stop()


class ServerSession(Session):
    """A kernel on a server and one websocket to it, kept open across latency blocks.

    `protocol` is the websocket subprotocol offered (None: the legacy JSON protocol).
    `measures_start` defaults to the legacy protocol's row only: a second way to the same
    server (v1, or a front in front of it) has no start of its own.
    """

    def __init__(self, target: Target, key: str | None = None,
                 protocol: str | None = None, measures_start: bool | None = None) -> None:
        self.key = key or target.key
        self.target = target
        self.protocol = protocol
        self.measures_start = protocol is None if measures_start is None else measures_start
        self.kernel_id = target.start_kernel()
        if target.process is not None:
            target.process.track()
        self.client = self.new_client()
        self.connect_first()

    def new_client(self) -> KernelClient:
        return self.target.client(self.kernel_id, self.protocol)

    def start_once(self, timeout: float = 120.0) -> tuple[float, float | None]:
        t0 = time.perf_counter()
        kid = self.target.start_kernel(timeout)
        post = time.perf_counter() - t0
        try:
            if self.target.process is not None:
                self.target.process.track()
            measure.first_answer(self.target.client(kid, self.protocol), timeout)
            return time.perf_counter() - t0, post
        finally:
            self.target.shutdown_kernel(kid)

    def release(self) -> None:
        self.target.shutdown_kernel(self.kernel_id)


class PodSession(Session):
    """A kernel started through a gateway, measured straight over ZMQ with no gateway between.

    `connection_info(kernel_id)` says where the kernel listens and its key; set against the
    gateway's own figure, the difference is the gateway's share of the round trip.
    """

    measures_start = False

    def __init__(self, target: Target, key: str,
                 connection_info: Callable[[str], KernelConnectionInfo]) -> None:
        self.key = key
        self.target = target
        self.kernel_id = target.start_kernel()
        try:
            self.info = connection_info(self.kernel_id)
        except BaseException:
            self.release()
            raise
        self.client = self.new_client()
        self.connect_first()

    def new_client(self) -> KernelClient:
        return ZmqClient(self.info)

    def release(self) -> None:
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
                samples[s.key] += s.latency_block(n, measure.WARMUP if r == 0 else 0)
            except Exception as exc:  # noqa: BLE001
                errors[s.key] = describe(exc)
    out: dict[str, dict[str, Any]] = {}
    for s in sessions:
        res = LatencyResult(samples[s.key])
        d = {**res.summary(), "p95_ms": res.percentile(95),
             "samples_ms": [round(x, 4) for x in res.samples_ms]}
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
    sessions = [s for s in sessions if s.measures_start]
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
