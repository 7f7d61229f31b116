"""What the benchmark asks a kernel to do, and the numbers every client reports the same way."""

from __future__ import annotations

import statistics
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

PROTOCOL_VERSION = "5.3"

# 200,000 lines of 100 bytes (99 characters + newline): 20,000,000 bytes of stdout.
STREAM_LINES = 200_000
STREAM_LINE_BYTES = 100
STREAM_BYTES = STREAM_LINES * STREAM_LINE_BYTES
STREAM_CODE = (
    "import sys\n"
    f"_line = 'x' * {STREAM_LINE_BYTES - 1} + '\\n'\n"
    "_w = sys.stdout.write\n"
    f"for _ in range({STREAM_LINES}):\n"
    "    _w(_line)\n"
    "sys.stdout.flush()\n"
)


def new_msg(msg_type: str, content: dict[str, Any], session: str,
            channel: str = "shell") -> dict[str, Any]:
    """A Jupyter message as the websocket JSON protocol carries it."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "bench",
            "session": session,
            "date": datetime.now(UTC).isoformat(),
            "version": PROTOCOL_VERSION,
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


def execute_content(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }


def nearest_rank(data: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted data; no interpolation."""
    ordered = sorted(data)
    if not ordered:
        return None
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil(q/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


class BenchError(RuntimeError):
    """A measurement that did not complete (timeout, closed socket, error reply).

    `stream_bytes` / `messages` keep what had arrived before it failed.
    """

    def __init__(self, message: str, *, stream_bytes: int = 0, messages: int = 0) -> None:
        super().__init__(message)
        self.stream_bytes = stream_bytes
        self.messages = messages


@dataclass
class ExecOutcome:
    """One execute_request until its execute_reply and status idle, as any client saw it."""

    seconds: float
    reply: dict[str, Any]
    stream_bytes: int
    messages: int
    wire_bytes: int = 0  # websocket payload bytes (JSON envelopes included); 0 for ZMQ
    msg_types: list[str] = field(default_factory=list)
    text: str = ""  # stream output, only when asked for (collect_text)


def check_ok(outcome: ExecOutcome) -> None:
    content = outcome.reply.get("content", {})
    if content.get("status") != "ok":
        raise BenchError(f"execute_reply status {content.get('status')}: "
                         f"{content.get('ename')} {content.get('evalue')}")


@dataclass
class LatencyResult:
    samples_ms: list[float]
    errors: int = 0

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    def percentile(self, q: float) -> float:
        value = nearest_rank(self.samples_ms, q)
        return float("nan") if value is None else value

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "errors": self.errors,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "mean_ms": statistics.fmean(self.samples_ms) if self.samples_ms else float("nan"),
            "min_ms": min(self.samples_ms) if self.samples_ms else float("nan"),
            "max_ms": max(self.samples_ms) if self.samples_ms else float("nan"),
        }


@dataclass
class ThroughputResult:
    expected_bytes: int
    received_bytes: int
    seconds: float
    messages: int
    wire_bytes: int = 0  # websocket payload bytes (JSON envelopes included); 0 for ZMQ
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.error is None and self.received_bytes == self.expected_bytes

    @property
    def mb_per_s(self) -> float:
        return self.received_bytes / 1e6 / self.seconds if self.seconds > 0 else float("nan")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["complete"] = self.complete
        out["mb_per_s"] = self.mb_per_s
        return out
