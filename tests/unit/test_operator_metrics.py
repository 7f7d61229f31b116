"""The operator's metrics page: what it counts, and that Prometheus' own parser reads it."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernelkeeper.operator.metrics import PREFIX, START_BUCKETS, OperatorMetrics, Registry


def _families(text: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = {"type": fam.type, "samples": {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}}
    return out


def test_every_series_is_there_from_the_start():
    fams = _families(OperatorMetrics().render())
    names = {n.removeprefix(PREFIX): f["type"] for n, f in fams.items()}
    assert names == {
        "reconciles": "counter", "reconcile_errors": "counter", "kernel_starts": "counter",
        "kernel_start_seconds": "histogram", "culls": "counter", "pods_owned": "gauge",
        "lease_holder": "gauge", "lease_transitions": "gauge", "event_loop_lag_seconds": "gauge",
    }
    reconciles = fams[f"{PREFIX}reconciles"]["samples"]
    assert {labels: v for (_, labels), v in reconciles.items()} == {
        (("result", "conflict"),): 0, (("result", "error"),): 0, (("result", "ok"),): 0}
    assert fams[f"{PREFIX}reconcile_errors"]["samples"] == {}  # no type is known yet


def test_counts_and_gauges():
    state = {"leader": True, "transitions": 3, "lag": 0.125}
    m = OperatorMetrics(lease_holder=lambda: state["leader"],
                        lease_transitions=lambda: state["transitions"],
                        loop_lag=lambda: state["lag"])
    m.reconciled("ok")
    m.reconciled("ok")
    m.reconciled("conflict")
    m.reconcile_failed(TimeoutError())
    m.kernel_started("new")
    m.kernel_started("replacement")
    m.kernel_ready(1.4)
    m.kernel_ready(400.0)
    m.culled()
    m.set_owned("a", "k1", 1)
    m.set_owned("a", "k2", 1)
    m.set_owned("b", "k3", 1)
    m.set_owned("a", "k2", 0)
    m.retain_owned([("a", "k1"), ("a", "k2")])
    fams = _families(m.render())

    samples = {n.removeprefix(PREFIX): dict(f["samples"]) for n, f in fams.items()}
    assert samples["reconciles"][(f"{PREFIX}reconciles_total", (("result", "ok"),))] == 2
    assert samples["reconciles"][(f"{PREFIX}reconciles_total", (("result", "conflict"),))] == 1
    assert samples["reconciles"][(f"{PREFIX}reconciles_total", (("result", "error"),))] == 1
    assert samples["reconcile_errors"] == {
        (f"{PREFIX}reconcile_errors_total", (("type", "TimeoutError"),)): 1}
    assert samples["kernel_starts"] == {
        (f"{PREFIX}kernel_starts_total", (("cause", "new"),)): 1,
        (f"{PREFIX}kernel_starts_total", (("cause", "replacement"),)): 1}
    assert samples["culls"] == {(f"{PREFIX}culls_total", ()): 1}
    assert samples["pods_owned"] == {(f"{PREFIX}pods_owned", ()): 1}  # only a/k1 is left
    assert samples["lease_holder"] == {(f"{PREFIX}lease_holder", ()): 1}
    assert samples["lease_transitions"] == {(f"{PREFIX}lease_transitions", ()): 3}
    assert samples["event_loop_lag_seconds"] == {(f"{PREFIX}event_loop_lag_seconds", ()): 0.125}
    hist = samples["kernel_start_seconds"]
    assert hist[(f"{PREFIX}kernel_start_seconds_count", ())] == 2
    assert hist[(f"{PREFIX}kernel_start_seconds_sum", ())] == pytest.approx(401.4)
    buckets = {dict(labels)["le"]: v for (name, labels), v in hist.items()
               if name.endswith("_bucket")}
    assert buckets["1"] == 0 and buckets["2"] == 1 and buckets["300"] == 1
    assert buckets["+Inf"] == 2 and len(buckets) == len(START_BUCKETS) + 1
    state["leader"] = False
    assert f"{PREFIX}lease_holder 0\n" in m.render()


def test_labels_are_escaped():
    r = Registry("x_")
    r.counter("c_total", "A counter.", {"k": ()})
    r.inc("c_total", k='a"b\\c\nd')
    assert 'x_c_total{k="a\\"b\\\\c\\nd"} 1' in r.render()
    fams = _families(r.render())
    assert fams["x_c"]["samples"] == {("x_c_total", (("k", 'a"b\\c\nd'),)): 1}


def test_rendering_while_another_thread_counts():
    m = OperatorMetrics()
    stop = threading.Event()

    def count() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            m.set_owned("ns", f"k{i % 500}", i % 2)
            m.reconcile_failed(type(f"E{i % 50}", (Exception,), {})())

    worker = threading.Thread(target=count)
    worker.start()
    try:
        for _ in range(200):
            _families(m.render())  # a dict changing size mid-render would raise here
    finally:
        stop.set()
        worker.join()
