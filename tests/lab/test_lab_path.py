"""bench/lab_path.py over the HA fleet: `pass` round trips through jupyter_server with and
without kernelkeeper.lab, and straight to the gateway, in one run (the table shows with -s).

`make test` runs the short form (KK_LAB_RUNS, default 50); `python -m bench.lab_path` runs 300
and writes bench/results/lab_path.md (KK_LAB_RESULTS)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.lab_path import PathUnderTest, run_paths, table, write
from tests.gateway.client import V1, start_kernel
from tests.lab.test_failover import STOCK, WITH_LAB, start_session

RUNS = int(os.environ.get("KK_LAB_RUNS", "50"))
RESULTS = os.environ.get("KK_LAB_RESULTS")


def test_lab_path_round_trips(fleet, jupyter_servers):
    f = fleet(2)
    stock = jupyter_servers(f.url, extra=STOCK)
    lab = jupyter_servers(f.url, extra=WITH_LAB)
    lab_kernel = start_session(lab)
    paths = [
        PathUnderTest("gateway", f.url, "", start_kernel(f.url)),
        PathUnderTest("gateway (v1)", f.url, "", start_kernel(f.url), V1),
        PathUnderTest("jupyter_server", stock.url, stock.token, start_session(stock)),
        PathUnderTest("jupyter_server + kernelkeeper.lab", lab.url, lab.token, lab_kernel),
        PathUnderTest("jupyter_server + kernelkeeper.lab (v1 browser)", lab.url, lab.token,
                      start_session(lab), V1),
    ]
    results = run_paths(paths, RUNS)
    print(f"\n{table(results)}")
    if RESULTS:
        print(f"[lab_path] wrote {write(results, Path(RESULTS))}")
    p50 = {name: res.percentile(50) for name, res in results.items()}
    assert all(res.n == RUNS and not res.errors for res in results.values())
    assert p50["jupyter_server + kernelkeeper.lab"] < 20
    assert p50["jupyter_server + kernelkeeper.lab (v1 browser)"] < 20
    assert p50["jupyter_server + kernelkeeper.lab"] < p50["jupyter_server"]
