"""What the kernel Pod's relays cost: one kernel, reached through the launcher's relays and
straight at the kernel's own loopback ports, in one run.

    .venv/bin/python -m bench.relay [--runs 500] [--stream-mb 20]

The launcher runs on the host (as tests/unit/test_kernel_launcher.py runs it) on a loopback
address of its own; the kernel's own ports are read from its connection file. Both clients are
jupyter_client's, so the difference is the relay hop (a libzmq device per channel) and nothing
else. Rows: `kernel_info` round trip (shell), `pass` execute round trip, and a stream of
`--stream-mb` MB printed by the kernel (iopub throughput). The launcher journals in both
cases (it always subscribes to the kernel's iopub).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from jupyter_client import BlockingKernelClient

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract

ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def _client(info: dict[str, Any]) -> BlockingKernelClient:
    client = BlockingKernelClient()
    client.load_connection_info(info)
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return client


def _until_idle(client: BlockingKernelClient, msg_id: str) -> int:
    """Drain iopub until the request's idle; the bytes of stream text seen."""
    seen = 0
    while True:
        msg = client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            seen += len(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen


def measure(client: BlockingKernelClient, runs: int, stream_mb: int) -> dict[str, float]:
    info_rt, pass_rt = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.kernel_info(reply=True, timeout=30)
        info_rt.append(time.perf_counter() - t0)
    for _ in range(runs):
        t0 = time.perf_counter()
        msg_id = client.execute("pass")
        client.get_shell_msg(timeout=30)
        _until_idle(client, msg_id)
        pass_rt.append(time.perf_counter() - t0)
    size = stream_mb * 1_000_000
    code = (f"import sys\nchunk = 'x' * 9999 + '\\n'\nfor _ in range({size // 10_000}):\n"
            "    sys.stdout.write(chunk)\nsys.stdout.flush()")
    t0 = time.perf_counter()
    msg_id = client.execute(code)
    got = _until_idle(client, msg_id)
    took = time.perf_counter() - t0
    return {
        "kernel_info_p50_ms": statistics.median(info_rt) * 1000,
        "kernel_info_p95_ms": sorted(info_rt)[int(0.95 * runs) - 1] * 1000,
        "pass_p50_ms": statistics.median(pass_rt) * 1000,
        "pass_p95_ms": sorted(pass_rt)[int(0.95 * runs) - 1] * 1000,
        "stream_mb_s": got / took / 1e6,
        "stream_complete": float(got == size),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--stream-mb", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the two paths this many times; each figure is the "
                             "median over rounds")
    args = parser.parse_args()
    ip = f"127.201.{random.randint(0, 255)}.{random.randint(1, 254)}"
    key = uuid.uuid4().hex
    runtime = Path(tempfile.mkdtemp(prefix="kk-bench-relay-"))
    env = {**os.environ, contract.ENV_KERNEL_ID: str(uuid.uuid4()), contract.ENV_POD_IP: ip,
           contract.ENV_KEY: key, contract.ENV_ARGV: json.dumps(ARGV),
           "JUPYTER_RUNTIME_DIR": str(runtime)}
    log = (runtime / "launcher.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "kernelkeeper.kernel"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        files: list[Path] = []
        while not files:
            if time.monotonic() > deadline or proc.poll() is not None:
                print("the launcher did not start; see", runtime / "launcher.log")
                return 1
            files = list(runtime.glob("kernel-*.json"))
            time.sleep(0.1)
        inner = json.loads(files[0].read_text())
        relayed = {"ip": ip, "key": key, "transport": "tcp",
                   "signature_scheme": crd.SIGNATURE_SCHEME,
                   **{f"{ch}_port": port for ch, port in crd.DEFAULT_PORTS.items()}}
        samples: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for name, info in (("straight to the kernel", inner),
                               ("through the relays", relayed)):
                client = _client(info)
                try:
                    samples.setdefault(name, []).append(
                        measure(client, args.runs, args.stream_mb))
                finally:
                    client.stop_channels()
        rows = {name: {col: statistics.median(s[col] for s in runs) for col in runs[0]}
                for name, runs in samples.items()}
    finally:
        proc.terminate()
        proc.wait(30)
    table = _table(rows, args)
    print(table)
    out = Path(__file__).parent / "results" / "relay.md"
    out.write_text(table)
    print(f"written to bench/results/{out.name}")
    return 0


def _table(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    cols = ["kernel_info_p50_ms", "kernel_info_p95_ms", "pass_p50_ms", "pass_p95_ms",
            "stream_mb_s", "stream_complete"]
    lines = [f"kernel Pod relays: {args.runs} runs each, {args.stream_mb} MB stream, median of "
             f"{args.rounds} alternating rounds (`python -m bench.relay`)", "",
             "| path | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
