"""Gateway latency and throughput benchmark (not a test): one kernel, measured three ways.

- execute round trip of `pass` (execute_request -> execute_reply + status idle), N >= 300 runs,
  directly over ZMQ (jupyter_client BlockingKernelClient) and through the gateway websocket
  (legacy JSON protocol and v1.kernel.websocket.jupyter.org);
- output throughput: a 20 MB stream (200,000 lines of 100 bytes), every byte counted, direct
  and through the gateway.

Real parts only: by default it brings up a local environment (control plane, real node,
operator and one gateway as host processes) in a temporary directory and takes it down afterwards; with
--gateway-url and --kubeconfig it uses a running one. Usage:

    .venv/bin/python bench/gateway_latency.py [--runs 300] [--gateway-url URL --kubeconfig F]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupyter_client import BlockingKernelClient  # noqa: E402
from kubernetes import client, config  # noqa: E402

from kernelkeeper.crds import model as crd  # noqa: E402
from tests.gateway.client import V1, KernelWS, http  # noqa: E402

LINES, LINE = 200_000, "x" * 99  # print adds the newline: 100 bytes a line
STREAM_CODE = f"import sys\nline = {LINE!r}\nfor _ in range({LINES}):\n    print(line)\n"
EXPECTED = LINES * (len(LINE) + 1)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def direct_client(kubeconfig: str, namespace: str, kid: str) -> BlockingKernelClient:
    api = config.new_client_from_config(config_file=kubeconfig)
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, kid)
    secret = client.CoreV1Api(api).read_namespaced_secret(crd.key_secret_name(kid), namespace)
    key = base64.b64decode(secret.data[crd.KEY_SECRET_FIELD])
    kc = BlockingKernelClient()
    kc.load_connection_info(crd.connection_info(obj["status"], key))
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return kc


def rt_direct(kc: BlockingKernelClient) -> float:
    t0 = time.perf_counter()
    msg_id = kc.execute("pass", store_history=False)
    reply = idle = False
    while not (reply and idle):
        if not reply:
            msg = kc.get_shell_msg(timeout=30)
            reply = msg["parent_header"].get("msg_id") == msg_id
        if not idle:
            msg = kc.get_iopub_msg(timeout=30)
            idle = (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle")
    return time.perf_counter() - t0


def rt_ws(ws: KernelWS) -> float:
    t0 = time.perf_counter()
    ws.execute("pass")
    return time.perf_counter() - t0


def throughput_direct(kc: BlockingKernelClient) -> tuple[int, float]:
    t0 = time.perf_counter()
    msg_id = kc.execute(STREAM_CODE, store_history=False)
    received = 0
    while True:
        msg = kc.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            received += len(msg["content"]["text"].encode())
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    kc.get_shell_msg(timeout=60)
    return received, time.perf_counter() - t0


def throughput_ws(ws: KernelWS) -> tuple[int, float]:
    t0 = time.perf_counter()
    _, out, _ = ws.execute(STREAM_CODE, timeout=300)
    return len(out.encode()), time.perf_counter() - t0


def run(gateway_url: str, kubeconfig: str, namespace: str, runs: int) -> None:
    status, model = http("POST", f"{gateway_url}/api/kernels", {"name": "python3"})
    if status != 201:
        raise SystemExit(f"kernel start failed: {status} {model}")
    kid = model["id"]
    ws_base = gateway_url.replace("http", "ws", 1)
    try:
        kc = direct_client(kubeconfig, namespace, kid)
        legacy, v1 = KernelWS(ws_base, kid), KernelWS(ws_base, kid, protocol=V1)
        paths = {"direct ZMQ": lambda: rt_direct(kc), "gateway ws (legacy)": lambda: rt_ws(legacy),
                 "gateway ws (v1)": lambda: rt_ws(v1)}
        results: dict[str, list[float]] = {name: [] for name in paths}
        for fn in paths.values():
            for _ in range(20):
                fn()  # warm-up
        # Interleave the paths in blocks so drift on a shared machine hits all of them alike.
        for _ in range(0, runs, 50):
            for name, fn in paths.items():
                results[name] += [fn() for _ in range(50)]
        legacy.close()
        v1.close()
        base_p50 = statistics.median(results["direct ZMQ"])
        print(f"\nexecute round trip of `pass`, {len(results['direct ZMQ'])} runs per path "
              f"(kernel {kid})\n")
        print(f"{'path':<22}{'p50 ms':>9}{'p99 ms':>9}{'p50/direct':>12}")
        for name, values in results.items():
            p50 = statistics.median(values)
            print(f"{name:<22}{1000 * p50:>9.2f}{1000 * pct(values, 99):>9.2f}"
                  f"{p50 / base_p50:>11.2f}x")
        # Throughput: one client at a time (iopub fans out to every open websocket).
        thr = {"direct ZMQ": throughput_direct(kc)}
        for name, proto in (("gateway ws (legacy)", None), ("gateway ws (v1)", V1)):
            ws = KernelWS(ws_base, kid, protocol=proto)
            thr[name] = throughput_ws(ws)
            ws.close()
        print(f"\noutput throughput: {EXPECTED / 1e6:.1f} MB stream ({LINES} lines of 100 bytes)\n")
        print(f"{'path':<22}{'seconds':>9}{'MB/s':>9}{'bytes received':>22}")
        for name, (got, secs) in thr.items():
            print(f"{name:<22}{secs:>9.2f}{got / secs / 1e6:>9.1f}{f'{got}/{EXPECTED}':>22}")
        kc.stop_channels()
    finally:
        http("DELETE", f"{gateway_url}/api/kernels/{kid}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--gateway-url")
    ap.add_argument("--kubeconfig")
    ap.add_argument("--namespace", default="default")
    args = ap.parse_args()
    if args.gateway_url:
        run(args.gateway_url, args.kubeconfig, args.namespace, max(300, args.runs))
        return 0
    from kernelkeeper.local.environment import LocalEnvironment
    from kernelkeeper.local.stages import stages_for

    env = LocalEnvironment(Path(tempfile.mkdtemp(prefix="kk-bench-")), real_node=True)
    env.up(stages=stages_for(argparse.Namespace(control_plane_only=False, replicas=1,
                                                deploy="processes")))
    try:
        run(env.info["gateway_url"], str(env.kubeconfig), "default", max(300, args.runs))
    finally:
        env.down(quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
