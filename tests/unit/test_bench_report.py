"""The benchmark report: every scenario renders, and lost data makes the run fail loudly.

The numbers here are hand-made inputs to the renderer, not measurements.
"""

from __future__ import annotations

from bench import report, run

MACHINE = {"cpu_model": "test cpu", "cores": 2, "usable_cores": 2, "memory_bytes": 2**34,
           "os": "Linux", "python": "3.11", "load_average_at_start": [0.1, 0.1, 0.1]}


def _result(**sections: dict) -> dict:
    res = {
        "meta": {"command": "python -m bench.run", "date": "today", "duration_s": 1.0,
                 "options": "defaults", "machine": MACHINE, "host_kill_misparses": False},
        "targets": {"direct": {"title": "direct ZMQ"}, "kernelkeeper": {"title": "kernelkeeper"},
                    "eg": {"title": "Enterprise Gateway"}},
    }
    res.update(sections)
    return res


def test_scale_memory_and_present_sections_render_their_figures():
    res = _result(
        scale={"kernelkeeper": {
            "status": "ok", "count": 200, "ready": 200, "failed": 0, "not_ready": 0,
            "create_burst_s": 1.5, "wall_s": 150.0, "p50_s": 80.0, "p95_s": 140.0,
            "p99_s": 148.0, "operator_cpu_s": 30.0, "operator_cpu_per_kernel_ms": 150.0,
            "other_cpu_s": {"kube-apiserver": 40.0, "node": 12.0},
            "kernel_pod_memory": {"pods": 200, "median_private_bytes": 57 * 2**20}}},
        memory={"kernelkeeper": {"status": "ok", "points": [
            {"kernels": 0, "rss_bytes": 100 * 2**20}, {"kernels": 200, "rss_bytes": 160 * 2**20}]}},
        present={"kernelkeeper": {
            "status": "ok", "sessions_present": 1000, "running_kernels": 200,
            "start_until_ready_s": 3.2, "start_until_ready_before_s": 2.5, "sessions_before": 200,
            "listed": 1000, "list_s": 0.09, "get_p50_s": 0.003, "get_p99_s": 0.01,
            "hydrate_p50_s": 0.05, "hydrate_p99_s": 0.2, "why_not_all_running": "no room"}},
    )
    md = report.render(res, {})
    assert "## 7. Scale: 200 KernelSessions created at once" in md
    assert "| 200 | yes: 200 Ready, 0 failed, 0 pending |" in md
    assert "140 s" in md and "150 ms" in md  # p95 and operator CPU per kernel
    assert "grows by 307 KiB per hydrated idle kernel" in md  # (160 - 100) MiB / 200
    assert "## 8. With 1000 KernelSessions present" in md
    assert "| 1000 | 200 | 3.20 s | 2.50 s (200 sessions) |" in md
    assert "no room" in md


def test_a_failed_scenario_is_shown_with_its_error():
    res = _result(present={"kernelkeeper": {"status": "FAILED", "error": "gateway exited with 3",
                                            "sessions_present": 1000}})
    md = report.render(res, {})
    assert "gateway exited with 3" in md


def test_lost_output_fails_the_run_and_other_failures_do_not():
    dropped = {"throughput": {"eg": {"status": "FAILED",
                                     "error": "received 19,000,000 of 20,000,000 bytes"}}}
    assert run.report_failures(_result(**dropped)) == 3
    expected = {"hydration": {"eg_as_shipped": {"status": "FAILED", "title": "EG as shipped",
                                                "error": "websocket hangs"}}}
    assert run.report_failures(_result(**expected)) == 0


def test_v1_and_pod_rows_render_without_ratio_columns_of_their_own_or_a_start_row():
    res = _result(
        latency={"direct": {"status": "ok", "p50_ms": 0.5, "p99_ms": 1.0, "n": 50},
                 "kernelkeeper_pod": {"status": "ok", "p50_ms": 0.6, "p99_ms": 1.2, "n": 50},
                 "kernelkeeper": {"status": "ok", "p50_ms": 1.5, "p99_ms": 3.0, "n": 50},
                 "kernelkeeper_v1": {"status": "ok", "p50_ms": 1.2, "p99_ms": 2.4, "n": 50},
                 "eg_v1": {"status": "not measured", "reason": "the server does not speak it"}},
        start={"direct": {"status": "ok", "median_s": 1.0, "samples_s": [1.0], "post_s": []},
               "kernelkeeper": {"status": "ok", "median_s": 2.0, "samples_s": [2.0],
                                "post_s": [0.5]}},
    )
    res["targets"].update({"kernelkeeper_pod": {"title": "kk pod"},
                           "kernelkeeper_v1": {"title": "kk v1"}, "eg_v1": {"title": "EG v1"}})
    md = report.render(res, {})
    p50 = md.split("### p50")[1].split("### p99")[0]
    assert "| target | p50 | status | ÷ direct ZMQ | ÷ kk pod | ÷ kernelkeeper |" in p50
    assert "| kk v1 | 1.20 ms | ok | 2.40× | 2.00× | 0.80× |" in p50
    assert "| kernelkeeper | 1.50 ms | ok | 3.00× | 2.50× | — |" in p50
    assert "| EG v1 | — | not measured: the server does not speak it |" in p50
    starts = md.split("## 3.")[1]
    assert "kk v1" not in starts and "kk pod" not in starts


def test_the_curve_section_states_the_ratio_against_its_target():
    titles = {"kernelkeeper": "kernelkeeper", "kernelkeeper_nocurve": "kernelkeeper, Curve off"}

    def lat(on: float, off: float) -> dict:
        return {"kernelkeeper": {"status": "ok", "p50_ms": on, "p95_ms": on, "p99_ms": on},
                "kernelkeeper_nocurve": {"status": "ok", "p50_ms": off, "p95_ms": off,
                                         "p99_ms": off}}

    met = "\n".join(report.curve_section(lat(11.0, 10.0), titles))
    assert "1.10× Curve off (target ≤ 1.2×): met" in met
    missed = "\n".join(report.curve_section(lat(13.0, 10.0), titles))
    assert "1.30× Curve off (target ≤ 1.2×): **missed**" in missed
    gone = report.curve_section({"kernelkeeper_nocurve": {"status": "failed"}}, titles)
    assert "not measured" in "\n".join(gone)
