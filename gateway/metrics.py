"""Prometheus metrics in the text exposition format, kept by hand (no client library needed)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

PREFIX = "kernelkeeper_gateway_"
_START_BUCKETS = (0.5, 1, 2, 5, 10, 20, 40, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
            lambda: defaultdict(float))
        self.gauges: dict[str, Callable[[], float]] = {}
        self.help: dict[str, str] = {}
        self.start_buckets = [0] * len(_START_BUCKETS)
        self.start_count = 0
        self.start_sum = 0.0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def gauge(self, name: str, fn: Callable[[], float], help_text: str) -> None:
        self.gauges[name] = fn
        self.help[name] = help_text

    def observe_start(self, seconds: float) -> None:
        self.start_count += 1
        self.start_sum += seconds
        idx = bisect.bisect_left(_START_BUCKETS, seconds)
        for i in range(idx, len(_START_BUCKETS)):
            self.start_buckets[i] += 1

    def render(self) -> str:
        out: list[str] = []
        for name, fn in sorted(self.gauges.items()):
            out += [f"# HELP {PREFIX}{name} {self.help[name]}", f"# TYPE {PREFIX}{name} gauge",
                    f"{PREFIX}{name} {_num(fn())}"]
        for name, series in sorted(self.counters.items()):
            out += [f"# HELP {PREFIX}{name} {_COUNTER_HELP.get(name, name)}",
                    f"# TYPE {PREFIX}{name} counter"]
            for labels, value in sorted(series.items()):
                out.append(f"{PREFIX}{name}{_labels(labels)} {_num(value)}")
        hist = f"{PREFIX}kernel_start_seconds"
        out += [f"# HELP {hist} Time from POST /api/kernels to a ready kernel.",
                f"# TYPE {hist} histogram"]
        for bound, count in zip(_START_BUCKETS, self.start_buckets, strict=True):
            out.append(f'{hist}_bucket{{le="{bound}"}} {count}')
        out += [f'{hist}_bucket{{le="+Inf"}} {self.start_count}', f"{hist}_sum {self.start_sum}",
                f"{hist}_count {self.start_count}"]
        return "\n".join(out) + "\n"


_COUNTER_HELP = {
    "kernel_starts_total": "Kernel starts by result.",
    "hydrations_total": "Kernel connections built from a KernelSession, by result.",
    "websocket_connections_total": "Websocket connections opened, by wire protocol (v1 or legacy).",
    "errors_total": "Error responses by HTTP status.",
    "buffer_dropped_total": "Messages dropped from full reconnect buffers.",
    "replayed_messages_total": "Messages replayed to a client that came back (journal or buffer).",
    "journal_lost_messages_total": "Messages clients missed because the kernel's journal had "
                                   "evicted them.",
    "activity_writes_total": "Activity status writes by result.",
    "websocket_rate_limited_total": "Websockets closed (1008) for sending over their rate.",
    "ownership_refusals_total": "Requests for a kernel of another user (answered 404).",
}


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
