"""The operator's Prometheus metrics, in the text exposition format (no client library).

The main event loop updates them; the health server's thread renders them. Both take one
lock, held for a few dict operations and never around I/O or logging, so a main thread
blocked anywhere else cannot keep /metrics from answering. (The gateway keeps a similar
hand-rolled module; the two are peers and neither imports the other.)
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Mapping

PREFIX = "kernelkeeper_operator_"
# From a session's creation to a Ready kernel: about 1 s on a warm node, tens of seconds
# when the image is pulled or the node is busy, minutes when something is wrong.
START_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
RECONCILE_RESULTS = ("ok", "conflict", "error")
START_CAUSES = ("new", "replacement")

Labels = tuple[tuple[str, str], ...]


class _Histogram:
    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * len(self.bounds)  # non-cumulative; summed when rendered
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        idx = bisect.bisect_left(self.bounds, value)
        if idx < len(self.bounds):
            self.counts[idx] += 1
        self.count += 1
        self.total += value


class Registry:
    """Counters (with labels), callback gauges and histograms, thread-safe.

    Every series is declared before use, so a scrape shows it (at zero) from the start:
    a rate over a counter that appears only after its first increment misses that increment.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._help: dict[str, str] = {}
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._histograms: dict[str, _Histogram] = {}

    def counter(self, name: str, help_text: str,
                labels: Mapping[str, Iterable[str]] | None = None) -> None:
        """Declare a counter; `labels` lists the values of each label to show from zero.

        A label with no values listed shows no series until its first increment.
        """
        series: dict[Labels, float] = {}
        combos: list[Labels] = [()]
        for key, values in sorted((labels or {}).items()):
            combos = [(*c, (key, v)) for c in combos for v in values]
        for combo in combos:
            series[tuple(sorted(combo))] = 0.0
        with self._lock:
            self._help[name] = help_text
            self._counters[name] = series

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Declare a gauge read when scraped: `read` runs on the health thread."""
        with self._lock:
            self._help[name] = help_text
            self._gauges[name] = read

    def histogram(self, name: str, help_text: str, buckets: Iterable[float]) -> None:
        with self._lock:
            self._help[name] = help_text
            self._histograms[name] = _Histogram(buckets)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]  # an undeclared name is a bug: KeyError
            series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            self._histograms[name].observe(value)

    def render(self) -> str:
        with self._lock:
            counters = {n: dict(s) for n, s in self._counters.items()}
            histograms = {n: (h.bounds, list(h.counts), h.count, h.total)
                          for n, h in self._histograms.items()}
            gauges = dict(self._gauges)
            helps = dict(self._help)
        out: list[str] = []
        # Gauges are read outside the lock: a reader may take locks of its own.
        for name, read in sorted(gauges.items()):
            full = self.prefix + name
            out += [f"# HELP {full} {helps[name]}", f"# TYPE {full} gauge",
                    f"{full} {_num(read())}"]
        for name, series in sorted(counters.items()):
            full = self.prefix + name
            out += [f"# HELP {full} {helps[name]}", f"# TYPE {full} counter"]
            out += [f"{full}{_labels(labels)} {_num(value)}"
                    for labels, value in sorted(series.items())]
        for name, (bounds, counts, count, total) in sorted(histograms.items()):
            full = self.prefix + name
            out += [f"# HELP {full} {helps[name]}", f"# TYPE {full} histogram"]
            running = 0
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                out.append(f'{full}_bucket{{le="{_num(bound)}"}} {running}')
            out += [f'{full}_bucket{{le="+Inf"}} {count}', f"{full}_sum {_num(total)}",
                    f"{full}_count {count}"]
        return "\n".join(out) + "\n"


class OperatorMetrics:
    """The operator's metrics, by what happened rather than by series name.

    `lease_holder`, `lease_transitions` and `loop_lag` are read from the Lease thread and
    the health state when scraped; everything else is counted as it happens.
    """

    def __init__(self, *, lease_holder: Callable[[], bool] = lambda: False,
                 lease_transitions: Callable[[], int] = lambda: 0,
                 loop_lag: Callable[[], float] = lambda: 0.0) -> None:
        self.registry = r = Registry(PREFIX)
        self._lock = threading.Lock()
        self._owned: dict[tuple[str, str], int] = {}
        r.counter("reconciles_total", "Reconciles of one KernelSession, by result (conflict: "
                  "still conflicting after retries; error: an exception ended it).",
                  {"result": RECONCILE_RESULTS})
        r.counter("reconcile_errors_total", "Reconciles ended by an exception, by its type.",
                  {"type": ()})  # no series until the first error: types are not known ahead
        r.counter("kernel_starts_total", "Kernel Pods created, by cause (new: a session's first "
                  "Pod; replacement: after a Pod was lost).", {"cause": START_CAUSES})
        r.histogram("kernel_start_seconds", "From the session's creation (first Pod) or the "
                    "Pod's creation (replacement) to the kernel's Ready condition.",
                    START_BUCKETS)
        r.counter("culls_total", "Idle sessions culled.")
        r.gauge("pods_owned", "Live kernel Pods of the sessions this operator reconciles "
                "(the leader's view; 0 on a standby).", self.pods_owned)
        r.gauge("lease_holder", "1 while this process holds the operator Lease.",
                lambda: 1.0 if lease_holder() else 0.0)
        r.gauge("lease_transitions", "The Lease's leaseTransitions, as this process last read "
                "the Lease (leader or standby).",
                lambda: float(lease_transitions()))
        r.gauge("event_loop_lag_seconds", "How late the main event loop ran its 1 s heartbeat "
                "(grows while the loop is blocked).", loop_lag)

    def reconciled(self, result: str) -> None:
        self.registry.inc("reconciles_total", result=result)

    def reconcile_failed(self, exc: BaseException) -> None:
        self.registry.inc("reconciles_total", result="error")
        self.registry.inc("reconcile_errors_total", type=type(exc).__name__)

    def kernel_started(self, cause: str) -> None:
        self.registry.inc("kernel_starts_total", cause=cause)

    def kernel_ready(self, seconds: float) -> None:
        self.registry.observe("kernel_start_seconds", seconds)

    def culled(self) -> None:
        self.registry.inc("culls_total")

    def set_owned(self, namespace: str, name: str, pods: int) -> None:
        with self._lock:
            if pods:
                self._owned[(namespace, name)] = pods
            else:
                self._owned.pop((namespace, name), None)

    def retain_owned(self, sessions: Iterable[tuple[str, str]]) -> None:
        """Forget sessions not in `sessions` (a full listing), in case a deletion was missed."""
        keep = set(sessions)
        with self._lock:
            for key in [k for k in self._owned if k not in keep]:
                del self._owned[key]

    def pods_owned(self) -> float:
        with self._lock:
            return float(sum(self._owned.values()))

    def render(self) -> str:
        return self.registry.render()


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
