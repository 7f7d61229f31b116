"""JupyterLab's path to a kernelkeeper kernel: `pass` round trips through jupyter_server
(`--gateway-url`) with and without kernelkeeper.lab, next to the gateway straight, in one run.

    python -m bench.lab_path [--runs 300]     # bench/results/lab_path.md

tests/lab/test_lab_path.py brings up the fleet (real control plane, real node, operator, two
active-active gateway replicas behind nginx, kernels in Pods) and the jupyter_servers, then
calls `run_paths`; `make test` runs it short (50 runs). Every row has a kernel of its own and
a client of its own (bench/wsclient.py, TCP_NODELAY on its socket, so any Nagle delay left is
the server side's); rows are measured in interleaved blocks of 50, after 10 warm-up runs each,
so that load on the machine hits them alike. A round trip is execute_request to execute_reply
and status idle.

Rows:
- `gateway`, `gateway (v1)`: the websocket straight to the fleet's nginx, legacy JSON and
  v1.kernel.websocket.jupyter.org;
- `jupyter_server`: stock jupyter_server 2.x as a JupyterLab user runs it with --gateway-url;
- `jupyter_server + kernelkeeper.lab`, `... (v1 browser)`: the same with the extension, the
  browser's websocket in legacy JSON or v1 (the gateway hop speaks v1 either way).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import measure
from bench.machine import machine_info
from bench.protocol import LatencyResult
from bench.wsclient import KernelWebSocket

BLOCK = 50


@dataclass
class PathUnderTest:
    """One row: a server URL (gateway or jupyter_server), its token, a kernel reached through
    it and the websocket protocol the client offers."""

    name: str
    url: str
    token: str
    kernel_id: str
    protocol: str | None = None


def run_paths(paths: list[PathUnderTest], runs: int, warmup: int = measure.WARMUP,
              progress: Callable[[str], None] = print) -> dict[str, LatencyResult]:
    clients = {p.name: KernelWebSocket(p.url, p.kernel_id, p.token, protocol=p.protocol)
               for p in paths}
    results = {name: LatencyResult([]) for name in clients}
    try:
        for client in clients.values():
            client.connect()
            measure.latency(client, 0, warmup=warmup)
        done = 0
        while done < runs:
            block = min(BLOCK, runs - done)
            for name, client in clients.items():
                results[name].samples_ms += measure.latency(client, block, warmup=0).samples_ms
            done += block
            progress(f"[lab_path] {done}/{runs} runs per row")
    finally:
        for client in clients.values():
            client.close()
    return results


def table(results: dict[str, LatencyResult], baseline: str = "gateway") -> str:
    base = results[baseline].percentile(50) if baseline in results else float("nan")
    rows = ["| path | runs | p50 ms | p95 ms | p50 vs gateway |", "|---|---|---|---|---|"]
    for name, res in results.items():
        p50 = res.percentile(50)
        rows.append(f"| {name} | {res.n} | {p50:.1f} | {res.percentile(95):.1f} | "
                    f"{p50 / base:.1f}x |")
    return "\n".join(rows)


def markdown(results: dict[str, LatencyResult]) -> str:
    m = machine_info()
    return "\n".join([
        "# JupyterLab's path: `pass` round trip through jupyter_server", "",
        "Written by `python -m bench.lab_path` (tests/lab/test_lab_path.py over the HA fleet: "
        "two active-active gateway replicas behind nginx, kernels in Pods of the real node). "
        "One kernel and one client per row, rows interleaved in blocks of 50.", "",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, {m['os']}, Python "
        f"{m['python']}, load average at start {m['load_average_at_start']}.", "",
        table(results), ""])


def write(results: dict[str, LatencyResult], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "lab_path.md"
    out.write_text(markdown(results))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab_path",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "KK_LAB_RUNS": str(args.runs), "KK_LAB_RESULTS": str(args.out.resolve())}
    cmd = [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider",
           "tests/lab/test_lab_path.py"]
    return subprocess.call(cmd, cwd=root, env=env)


if __name__ == "__main__":
    sys.exit(main())
