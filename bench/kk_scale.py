"""kernelkeeper at scale, on one local environment: three measurements in this order.

1. **scale**: N KernelSessions created at once through the Kubernetes API (what `kubectl apply`
   or the gateway does). Per session: from its create call until a watch sees Ready=True.
   Also the operator's CPU time (user + system of its process) over the whole burst.
2. **memory**: gateway replica 2, which served none of them, hydrates 1, 50, ..., N of them (one
   websocket execute each, then the websocket closes; the replica keeps its ZMQ connection as it
   would for a JupyterLab tab that went away). Its RSS after each step.
3. **present**: the operator is stopped (running kernels need nothing from it), KernelSessions
   are added until `present` exist, a fresh gateway replica starts (timed until /readyz answers,
   which includes listing every session) and hydrates each running kernel once: p50/p99.
   The added sessions have no kernel: a kernel pod (launcher + ipykernel) uses about 57 MiB
   of private memory here (measured in the run), so 1,000 running kernels would need about
   56 GiB, and this machine has 24.

The bench is a client, so blocking calls in threads are fine here (the gateway is async).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from bench.kk import component_process
from bench.protocol import BenchError, check_ok, nearest_rank
from bench.scenarios import describe, failed, guarded, not_measured
from bench.targets import KernelKeeperEnvironment, Target, free_port, http
from kernelkeeper.crds import model as crd
from kernelkeeper.gateway.model import phase

NAMESPACE = "default"
BENCH_LABEL = "kernelkeeper.io/bench"


def _log(msg: str) -> None:
    print(f"[bench kk-scale] {msg}", file=sys.stderr, flush=True)


class Cluster:
    """The local environment's API server, as a plain Kubernetes client."""

    def __init__(self, kubeconfig: str, pool: int = 32) -> None:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        cfg.connection_pool_maxsize = pool
        self.api = client.ApiClient(cfg)
        self.custom = client.CustomObjectsApi(self.api)

    def create_session(self, labels: dict[str, str]) -> tuple[str, float]:
        """Create one KernelSession; return its name and the perf_counter time of the call."""
        kid = crd.new_kernel_id()
        body = crd.kernel_session(kid, namespace=NAMESPACE, kernel_spec="python3",
                                  username="bench")
        body["metadata"]["labels"].update(labels)
        sent = time.perf_counter()
        self.custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE,
                                                    crd.PLURAL, body)
        return kid, sent

    def delete_labelled(self, selector: str) -> None:
        self.custom.delete_collection_namespaced_custom_object(
            crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, label_selector=selector)

    def count(self, selector: str = "") -> int:
        res = self.custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE,
                                                        crd.PLURAL, label_selector=selector)
        return len(res.get("items") or [])


class ReadyWatch(threading.Thread):
    """Records when each labelled KernelSession is first seen Ready (or failed)."""

    def __init__(self, cluster: Cluster, selector: str) -> None:
        super().__init__(daemon=True, name="ready-watch")
        self.cluster = cluster
        self.selector = selector
        self.ready: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.stopping = threading.Event()
        self.synced = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        custom = self.cluster.custom
        while not self.stopping.is_set():
            try:
                listed = custom.list_namespaced_custom_object(
                    crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, label_selector=self.selector)
                for obj in listed.get("items") or []:
                    self._see(obj)
                self.synced.set()
                rv = listed["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    w = watch.Watch()
                    for ev in w.stream(custom.list_namespaced_custom_object, crd.GROUP,
                                       crd.VERSION, NAMESPACE, crd.PLURAL,
                                       label_selector=self.selector, resource_version=rv,
                                       timeout_seconds=5):
                        obj = ev["object"]
                        rv = obj["metadata"]["resourceVersion"]
                        if ev["type"] in ("ADDED", "MODIFIED"):
                            self._see(obj)
            except Exception as exc:  # noqa: BLE001 - relist, as any informer would
                if not self.stopping.is_set():
                    _log(f"watch restarted after {type(exc).__name__}: {str(exc)[:120]}")
                    time.sleep(0.5)

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name in self.ready or name in self.failed:
            return
        ph = phase(obj)
        with self.changed:
            if ph.ready:
                self.ready[name] = time.perf_counter()
            elif ph.failed:
                self.failed[name] = f"{ph.reason}: {ph.message}"
            else:
                return
            self.changed.notify_all()

    def wait_all(self, names: set[str], deadline: float) -> None:
        with self.changed:
            while time.perf_counter() < deadline:
                if names <= (set(self.ready) | set(self.failed)):
                    return
                self.changed.wait(timeout=1.0)


def _private_bytes(proc: psutil.Process) -> int:
    """Memory only this process uses (what it would free on exit), from smaps_rollup."""
    try:
        full = proc.memory_full_info()
    except (psutil.Error, OSError):
        return 0
    return int(getattr(full, "uss", 0))


def kernel_pod_memory(node: psutil.Process) -> dict[str, Any]:
    """Private memory of the kernel pods' processes (launcher + ipykernel) the node runs."""
    per_pod = []
    for child in node.children():
        with contextlib.suppress(psutil.Error):
            if "kernelkeeper.kernel" not in " ".join(child.cmdline()):
                continue
            per_pod.append(_private_bytes(child) + sum(
                _private_bytes(c) for c in child.children(recursive=True)))
    return {"pods": len(per_pod),
            "median_private_bytes": int(statistics.median(per_pod)) if per_pod else None}


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def scale(env: KernelKeeperEnvironment, cluster: Cluster, count: int,
          timeout: float) -> tuple[dict[str, Any], list[str]]:
    """Create `count` KernelSessions at once; wait until each is Ready (or failed)."""
    run_label = uuid.uuid4().hex[:8]
    selector = f"{BENCH_LABEL}=scale-{run_label}"
    created: dict[str, float] = {}
    operator = component_process(env, "operator")
    others = {n: component_process(env, n) for n in ("kube-apiserver", "node")}
    watcher = ReadyWatch(cluster, selector)
    watcher.start()
    watcher.synced.wait(30)
    cpu0 = _cpu_seconds(operator)
    other0 = {n: _cpu_seconds(p) for n, p in others.items()}
    t0 = time.perf_counter()

    def create(_: int) -> tuple[str, float] | str:
        try:
            return cluster.create_session({BENCH_LABEL: f"scale-{run_label}"})
        except ApiException as exc:
            return f"create -> {exc.status}: {exc.reason}"

    errors: list[str] = []
    # 32 creates in flight: the API server's own client-side fairness shapes the rest.
    with ThreadPoolExecutor(max_workers=32) as pool:
        for res in pool.map(create, range(count)):
            if isinstance(res, str):
                errors.append(res)
            else:
                created[res[0]] = res[1]
    created_s = time.perf_counter() - t0
    _log(f"{len(created)} KernelSessions created in {created_s:.1f}s; waiting for Ready")
    watcher.wait_all(set(created), t0 + timeout)
    wall = time.perf_counter() - t0
    if operator.is_running():
        op_cpu: float | None = _cpu_seconds(operator) - cpu0
    else:
        op_cpu = None
        errors.append("the operator process exited during the run (its supervisor restarted it)")
    other_cpu = {n: _cpu_seconds(p) - other0[n] for n, p in others.items() if p.is_running()}
    watcher.stopping.set()
    pod_memory = kernel_pod_memory(others["node"]) if others["node"].is_running() else {}
    ready = sorted(watcher.ready[k] - created[k] for k in created if k in watcher.ready)
    failures = {k: v for k, v in watcher.failed.items() if k in created}
    missing = len(created) - len(ready) - len(failures)
    errors += [f"{k[:8]}…: {v}" for k, v in list(failures.items())[:5]]
    if missing:
        errors.append(f"{missing} not Ready after {timeout:.0f}s")
    res: dict[str, Any] = {
        "count": count, "created": len(created), "ready": len(ready),
        "failed": len(failures) + (count - len(created)), "not_ready": missing,
        "create_burst_s": created_s, "wall_s": wall,
        "p50_s": nearest_rank(ready, 50), "p95_s": nearest_rank(ready, 95),
        "p99_s": nearest_rank(ready, 99), "max_s": ready[-1] if ready else None,
        "operator_cpu_s": op_cpu,
        "operator_cpu_per_kernel_ms": (op_cpu / count * 1000) if op_cpu is not None else None,
        "other_cpu_s": other_cpu, "latencies_s": ready, "label": selector,
        "kernel_pod_memory": pod_memory,
    }
    if len(ready) == count and not errors:
        res["status"] = "ok"
    else:
        res.update(failed("; ".join(errors[:4]) or "not all Ready"))
    return res, [k for k in created if k in watcher.ready]


def _hydrate(target: Target, kernel_id: str, timeout: float = 60.0) -> float:
    """First websocket execute of `pass` on a replica: the whole hydration path."""
    t0 = time.perf_counter()
    with target.websocket(kernel_id, timeout) as ws:
        check_ok(ws.execute("pass", timeout))
    return time.perf_counter() - t0


def _rss(pid: int) -> int:
    samples = []
    for _ in range(5):
        time.sleep(0.2)
        samples.append(psutil.Process(pid).memory_info().rss)
    return int(statistics.median(samples))


def memory(replica: Target, pid: int, kids: list[str], counts: list[int]) -> dict[str, Any]:
    """RSS of a replica that never served `kids`, after hydrating 1, 50, ... of them."""
    def go() -> dict[str, Any]:
        points = [{"kernels": 0, "rss_bytes": _rss(pid)}]
        done = 0
        for count in sorted({c for c in counts if c <= len(kids)}):
            for kid in kids[done:count]:
                _hydrate(replica, kid)
            done = count
            time.sleep(2.0)  # let idle status and activity reports settle before sampling
            points.append({"kernels": count, "rss_bytes": _rss(pid)})
        missing = [c for c in counts if c > len(kids)]
        res: dict[str, Any] = {"status": "ok", "points": points}
        if missing:
            res.update(failed(f"only {len(kids)} kernels were Ready, so no point for "
                              f"{', '.join(map(str, missing))}"))
        return res
    return guarded(go)


class FreshGateway:
    """A gateway replica started by the bench itself, so its start can be timed."""

    def __init__(self, env: KernelKeeperEnvironment, kubeconfig: str, logdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = env.token
        logdir.mkdir(parents=True, exist_ok=True)
        self.log = (logdir / "fresh-gateway.log").open("wb")
        cmd = [sys.executable, "-m", "kernelkeeper", "gateway", "--kubeconfig", kubeconfig,
               "--ip", "127.0.0.1", "--port", str(self.port), "--replica-id", "bench-fresh",
               "--set", "availability_mode=active-active"]
        environ = {**os.environ, "KERNELKEEPER_GATEWAY_AUTH_TOKEN": self.token}
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=environ, cwd=logdir)

    def wait_ready(self, timeout: float = 120.0) -> float:
        deadline = self.t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"fresh gateway exited with {self.proc.returncode}")
            with contextlib.suppress(BenchError):
                status, _ = http("GET", f"{self.url}/readyz", None, None, 2.0)
                if status == 200:
                    return time.perf_counter() - self.t0
            time.sleep(0.02)
        raise BenchError(f"fresh gateway not ready after {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def stop_operator(env: KernelKeeperEnvironment) -> None:
    """SIGTERM the operator's supervisor: it forwards the signal and does not restart."""
    comp = (env.status.get("components") or {}).get("operator") or {}
    sup = psutil.Process(int(comp["pid"]))
    if "kernelkeeper" not in " ".join(sup.cmdline()):
        raise BenchError(f"pid {sup.pid} is not kernelkeeper's operator")
    sup.send_signal(signal.SIGTERM)
    sup.wait(30)


def present(env: KernelKeeperEnvironment, cluster: Cluster, base: Target, running: list[str],
            total: int, logdir: Path, pod_bytes: int | None) -> dict[str, Any]:
    """With `total` KernelSessions present: a fresh replica's start until ready, and its first
    request for each running kernel (GET, then websocket execute)."""
    def go() -> dict[str, Any]:
        # The same start with only the running kernels' sessions present, for comparison.
        have = cluster.count()
        gw = FreshGateway(env, str(env.status["kubeconfig"]), logdir / "before")
        try:
            ready_before_s = gw.wait_ready()
        finally:
            gw.stop()
        stop_operator(env)
        extra = max(0, total - have)
        _log(f"operator stopped; adding {extra} KernelSessions to reach {total}")
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(lambda _: cluster.create_session({BENCH_LABEL: "present"}),
                          range(extra)))
        present_n = cluster.count()
        gw = FreshGateway(env, str(env.status["kubeconfig"]), logdir)
        try:
            ready_s = gw.wait_ready()
            fresh = Target("kernelkeeper", "kernelkeeper (fresh replica)", gw.url, gw.token,
                           base.kernel_name)
            t0 = time.perf_counter()
            status, listing = http("GET", f"{gw.url}/api/kernels", gw.token, None, 60)
            list_s = time.perf_counter() - t0
            gets, execs, errors = [], [], []
            for kid in running:
                t0 = time.perf_counter()
                code, _ = fresh.get_kernel(kid)
                gets.append(time.perf_counter() - t0)
                if code != 200:
                    errors.append(f"GET {kid[:8]}… -> {code}")
                    continue
                try:
                    execs.append(_hydrate(fresh, kid))
                except BenchError as exc:
                    errors.append(str(exc)[:160])
            gets.sort()
            execs.sort()
            res: dict[str, Any] = {
                "sessions_present": present_n, "running_kernels": len(running),
                "sessions_without_kernel": present_n - len(running),
                "start_until_ready_s": ready_s, "sessions_before": have,
                "start_until_ready_before_s": ready_before_s,
                "list_status": status, "list_s": list_s,
                "listed": len(listing) if isinstance(listing, list) else None,
                "get_p50_s": nearest_rank(gets, 50), "get_p99_s": nearest_rank(gets, 99),
                "hydrate_p50_s": nearest_rank(execs, 50), "hydrate_p99_s": nearest_rank(execs, 99),
                "hydrated": len(execs), "rss_bytes": psutil.Process(gw.proc.pid).memory_info().rss,
                "why_not_all_running": _why_not_all(pod_bytes, present_n),
            }
            if errors:
                return {**res, **failed(f"{len(errors)} of {len(running)}: {errors[0]}")}
            return {**res, "status": "ok"}
        finally:
            gw.stop()
    return guarded(go)


def _why_not_all(pod_bytes: int | None, total: int) -> str:
    ram = psutil.virtual_memory().total
    if not pod_bytes:
        return f"{total} running kernels do not fit in this machine's {ram / 2**30:.0f} GiB"
    return (f"a kernel pod (launcher + ipykernel) uses {pod_bytes / 2**20:.0f} MiB of private "
            f"memory in this run, so {total} running kernels would need "
            f"{total * pod_bytes / 2**30:.0f} GiB; this machine has {ram / 2**30:.0f} GiB")


def run_all(env: KernelKeeperEnvironment, base: Target, replica2: Target | None,
            replica2_pid: int | None, count: int, memory_counts: list[int], total: int,
            workdir: Path, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """scale, then memory on replica 2, then `total` present; cleans up what it created."""
    kubeconfig = env.status.get("kubeconfig")
    if not kubeconfig:
        reason = "`local status` has no kubeconfig"
        return {k: not_measured(reason) for k in ("scale", "memory", "present")}
    cluster = Cluster(str(kubeconfig))
    out: dict[str, dict[str, Any]] = {}
    try:
        log(f"kernelkeeper: {count} KernelSessions at once")
        running: list[str] = []
        try:
            out["scale"], running = scale(env, cluster, count, timeout=max(300.0, 3.0 * count))
        except Exception as exc:  # noqa: BLE001 - shown as FAILED; the run goes on
            out["scale"] = failed(describe(exc))
        if replica2 is None or replica2_pid is None:
            out["memory"] = not_measured("needs a second gateway replica with its pid")
        else:
            log(f"kernelkeeper: hydrating {', '.join(map(str, memory_counts))} on replica 2")
            out["memory"] = memory(replica2, replica2_pid, running, memory_counts)
        if total:
            log(f"kernelkeeper: {total} KernelSessions present, fresh replica")
            pod_bytes = (out["scale"].get("kernel_pod_memory") or {}).get(
                "median_private_bytes")
            out["present"] = present(env, cluster, base, running, total, workdir, pod_bytes)
        return out
    finally:
        with contextlib.suppress(Exception):
            cluster.delete_labelled(BENCH_LABEL)
        cluster.api.close()
