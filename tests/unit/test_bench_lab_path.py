"""The bench's JupyterLab-path rows: the front jupyter_server's command line (stock: the
extension explicitly off; lab: its connection class), every row titled and ordered in the
report, and the report's section with its ratios and the acceptance verdict.

The numbers are hand-made inputs to the renderer, not measurements; no server runs here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench import report, run
from bench.targets import LAB_CONNECTION_CLASS, Target, front_command

MACHINE = {"cpu_model": "test cpu", "cores": 2, "usable_cores": 2, "memory_bytes": 2**34,
           "os": "Linux", "python": "3.11", "load_average_at_start": [0.1, 0.1, 0.1]}
GATEWAY = Target("eg", "Enterprise Gateway", "http://127.0.0.1:8888", "secret")


def test_the_stock_front_turns_the_extension_off_and_the_lab_front_sets_its_class():
    stock = front_command(9000, "tok", GATEWAY, Path("/tmp/x"), with_lab=False)
    lab = front_command(9000, "tok", GATEWAY, Path("/tmp/x"), with_lab=True)
    for cmd in (stock, lab):
        assert cmd[:3] == [sys.executable, "-m", "jupyter_server"]
        assert "--gateway-url=http://127.0.0.1:8888" in cmd
        assert "--GatewayClient.auth_token=secret" in cmd
        assert "--ServerApp.port=9000" in cmd and "--IdentityProvider.token=tok" in cmd
    assert '--ServerApp.jpserver_extensions={"kernelkeeper.lab": False}' in stock
    assert not any("kernel_websocket_connection_class" in a for a in stock)
    assert f"--ServerApp.kernel_websocket_connection_class={LAB_CONNECTION_CLASS}" in lab
    assert not any("jpserver_extensions" in a for a in lab)


def test_every_front_row_has_a_title_and_a_place_in_the_report():
    rows = [f"{g}_{r}" for g in run.FRONTED for r in run.FRONT_ROWS]
    assert rows == ["kernelkeeper_js", "kernelkeeper_lab", "kernelkeeper_lab_v1",
                    "eg_js", "eg_lab", "eg_lab_v1"]
    for key in rows:
        assert key in run.TITLES and key in report.ORDER
    assert set(run.FRONT_ROWS) == set(report.FRONT_SUFFIXES)


def _lat(p50: float) -> dict:
    return {"status": "ok", "p50_ms": p50, "p95_ms": p50 * 1.5, "p99_ms": p50 * 2, "n": 300}


def _thr(received: int, status: str = "ok") -> dict:
    run_ = {"expected_bytes": 20_000_000, "received_bytes": received,
            "complete": received == 20_000_000, "wire_bytes": 30_000_000}
    return {"status": status, "mb_per_s": 10.0, "seconds": 2.0, "expected_bytes": 20_000_000,
            "received_bytes": [received], "runs": [run_]}


def _result(lab_p50: float, lab_received: int = 20_000_000) -> dict:
    keys = ["direct", "kernelkeeper", "kernelkeeper_js", "kernelkeeper_lab", "eg", "eg_lab"]
    lat = {"direct": _lat(4.0), "kernelkeeper": _lat(5.0), "kernelkeeper_js": _lat(48.0),
           "kernelkeeper_lab": _lat(lab_p50), "eg": _lat(50.0), "eg_lab": _lat(50.0)}
    thr = {k: _thr(20_000_000) for k in keys}
    if lab_received != 20_000_000:
        thr["kernelkeeper_lab"] = _thr(lab_received, "FAILED") | {"error": "bytes missing"}
    return {
        "meta": {"command": "python -m bench.run", "date": "today", "duration_s": 1.0,
                 "options": "defaults", "machine": MACHINE, "host_kill_misparses": False},
        "targets": {k: {"title": run.TITLES[k]} for k in keys},
        "latency": lat, "throughput": thr,
    }


def test_the_lab_path_section_shows_ratios_to_direct_and_to_the_gateway_and_the_verdict():
    md = report.render(_result(5.6), {})
    p50 = md.split("### p50")[1].split("### p99")[0]
    lab = run.TITLES["kernelkeeper_lab"]
    assert f"| {lab} | 5.60 ms | ok | 1.40× |" in p50  # ÷ direct, like every other row
    section = md.split("## 2b.")[1].split("## 3.")[0]
    assert (f"| {lab} | 5.60 ms | 8.40 ms | 11.20 ms | 1.40× | 1.12× | 10.00 MB/s | "
            "1 of 1 runs complete (20,000,000 of 20,000,000 bytes) |") in section
    assert f"| {run.TITLES['kernelkeeper_js']} | 48.00 ms |" in section
    assert f"| {run.TITLES['eg_lab']} | 50.00 ms | 75.00 ms | 100 ms | 12.50× | 1.00× |" \
        in section
    assert ("p50 5.60 ms = 1.40× direct ZMQ's 4.00 ms (target ≤ 1.5×): met; "
            "stream: every byte delivered") in section


def test_a_missed_target_and_missing_bytes_are_said_so():
    md = report.render(_result(8.0, lab_received=19_000_000), {})
    section = md.split("## 2b.")[1].split("## 3.")[0]
    assert "= 2.00× direct ZMQ's 4.00 ms (target ≤ 1.5×): **missed**" in section
    assert "stream: **bytes missing**" in section
    assert "0 of 1 runs complete (19,000,000 of 20,000,000 bytes)" in section
    assert run.report_failures(_result(8.0, lab_received=19_000_000)) == 3
