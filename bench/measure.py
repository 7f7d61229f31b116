"""The one measuring loop, and the small protocol every client it drives implements.

A client is anything that can connect to one kernel, execute code until `execute_reply` and
`status: idle` have both arrived, and close: jupyter_client over ZMQ (`direct_zmq.ZmqClient`) or
a Jupyter websocket in either wire protocol (`wsclient.KernelWebSocket`). Timing, warm-up and
percentiles live here only, so every target is measured by the same code.
"""

from __future__ import annotations

import time
from typing import Protocol

from bench.protocol import (
    STREAM_BYTES,
    STREAM_CODE,
    BenchError,
    ExecOutcome,
    LatencyResult,
    ThroughputResult,
    check_ok,
)

WARMUP = 10
EXECUTE_TIMEOUT = 30.0
STREAM_TIMEOUT = 300.0


class KernelClient(Protocol):
    def connect(self, timeout: float = EXECUTE_TIMEOUT) -> None:
        """Open the connection; raise BenchError if the kernel cannot be reached."""

    def execute(self, code: str, timeout: float = EXECUTE_TIMEOUT, *,
                collect_text: bool = False) -> ExecOutcome:
        """Send one execute_request; return once its execute_reply and status idle arrived."""

    def close(self) -> None:
        """Release the connection (never the kernel)."""


def latency(client: KernelClient, runs: int, warmup: int = WARMUP,
            timeout: float = EXECUTE_TIMEOUT) -> LatencyResult:
    """Round trips of `pass` in ms, after `warmup` unrecorded ones."""
    for _ in range(warmup):
        check_ok(client.execute("pass", timeout))
    samples: list[float] = []
    for _ in range(runs):
        out = client.execute("pass", timeout)
        check_ok(out)
        samples.append(out.seconds * 1000)
    return LatencyResult(samples)


def throughput(client: KernelClient, timeout: float = STREAM_TIMEOUT) -> ThroughputResult:
    """The 20 MB stream, every byte counted; a failed run keeps what had arrived."""
    t0 = time.perf_counter()
    try:
        out = client.execute(STREAM_CODE, timeout)
        check_ok(out)
    except BenchError as exc:
        # "How much arrived before it failed" is the result.
        return ThroughputResult(STREAM_BYTES, exc.stream_bytes, time.perf_counter() - t0,
                                exc.messages, error=str(exc))
    return ThroughputResult(STREAM_BYTES, out.stream_bytes, out.seconds, out.messages,
                            wire_bytes=out.wire_bytes)


def first_answer(client: KernelClient, timeout: float) -> None:
    """Connect and execute `pass` until reply and idle: the end of a kernel start."""
    client.connect(timeout)
    try:
        check_ok(client.execute("pass", timeout))
    finally:
        client.close()
