"""kernelkeeper's side of the scenarios that need more than one gateway URL.

The per-target scenarios (latency, throughput, start) treat kernelkeeper's gateway like any peer
(bench/targets.py: KernelKeeperEnvironment). The ones below need its local environment's
internals: the replica URLs and pids from `kernelkeeper local status --json`. Each returns
"not measured" with the reason when they are missing, so the report never shows a number this
run did not produce.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from bench import wsclient
from bench.protocol import BenchError
from bench.scenarios import failed, guarded, not_measured
from bench.targets import KernelKeeperEnvironment, Target


def gateway_components(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The gateway replicas in `kernelkeeper local status --json`, each with url and pid."""
    out = []
    for name, comp in sorted((status.get("components") or {}).items()):
        if not name.startswith("gateway"):
            continue
        url = comp.get("url")
        if not url:
            ports = comp.get("ports") or {}
            port = ports.get("http") or ports.get("https") or next(iter(ports.values()), None)
            url = f"http://127.0.0.1:{port}" if port else None
        out.append({"name": name, "url": url, "pid": comp.get("pid")})
    return out


def _replica(base: Target, comp: dict[str, Any]) -> Target:
    return Target("kernelkeeper", f"kernelkeeper ({comp['name']})", comp["url"], base.token,
                  base.kernel_name)


def hydration(env: KernelKeeperEnvironment, target: Target,
              exec_timeout: float = 60.0) -> dict[str, Any]:
    """Kernel started through replica 1; first GET and execute through replica 2."""
    replicas = [c for c in gateway_components(env.status) if c["url"]]
    if len(replicas) < 2:
        return not_measured(f"needs 2 gateway replicas in `local status`, found {len(replicas)}")

    def go() -> dict[str, Any]:
        a, b = _replica(target, replicas[0]), _replica(target, replicas[1])
        kid = a.start_kernel()
        try:
            with a.websocket(kid, exec_timeout) as ws:
                wsclient.check_ok(ws.execute("x = 41", exec_timeout))
            t0 = time.perf_counter()
            status, model = b.get_kernel(kid, exec_timeout)
            get_s = time.perf_counter() - t0
            res: dict[str, Any] = {"get_status": status, "get_s": get_s, "a_alive": True,
                                   "get_state": model.get("execution_state")
                                   if isinstance(model, dict) else None}
            if status != 200:
                return {**res, **failed(f"GET on replica 2 -> {status}: {str(model)[:200]}")}
            t0 = time.perf_counter()
            with b.websocket(kid, exec_timeout) as ws:
                out = ws.execute("x += 1; print(x)", exec_timeout, collect_text=True)
                wsclient.check_ok(out)
            return {**res, "status": "ok", "execute_s": time.perf_counter() - t0,
                    "state_preserved": out.text.strip() == "42"}
        finally:
            a.shutdown_kernel(kid)
    return guarded(go)


def failover(env: KernelKeeperEnvironment, target: Target, deadline_s: float = 30.0,
             attempt_timeout: float = 10.0) -> dict[str, Any]:
    """The same situation as EG's failover: kernel with state through replica 1, SIGKILL that
    gateway process, then GET + execute through replica 2 until one succeeds."""
    from bench.replication import STATE_CODE, failover_after_kill

    replicas = [c for c in gateway_components(env.status) if c["url"]]
    if len(replicas) < 2 or not replicas[0].get("pid"):
        return not_measured(f"needs 2 gateway replicas with pids in `local status`, "
                            f"found {len(replicas)}")
    pid = int(replicas[0]["pid"])

    def go() -> dict[str, Any]:
        a, b = _replica(target, replicas[0]), _replica(target, replicas[1])
        proc = psutil.Process(pid)
        # Only ever kill the gateway this run started: check its command line first.
        port = a.base_url.rsplit(":", 1)[1]
        cmdline = " ".join(proc.cmdline())
        if "gateway" not in cmdline or port not in cmdline:
            raise BenchError(f"pid {pid} is not the gateway on port {port}: {cmdline[:120]}")
        kid = a.start_kernel()
        try:
            with a.websocket(kid, 60) as ws:
                wsclient.check_ok(ws.execute(STATE_CODE, 60))

            def alive() -> bool:
                with contextlib.suppress(BenchError):
                    status, model = b.get_kernel(kid, 10)
                    return status == 200 and isinstance(model, dict) and \
                        model.get("execution_state") not in ("dead", None)
                return False
            return failover_after_kill(b, kid, proc.kill, alive, deadline_s, attempt_timeout)
        finally:
            b.shutdown_kernel(kid)
    return guarded(go)


def scale_and_memory(env: KernelKeeperEnvironment, target: Target, count: int,
                     memory_counts: list[int], workers: int = 200,
                     timeout: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start `count` kernels at once through replica 1, each until its first execute answers;
    then hydrate 1, 50, ... of them on replica 2 (which never saw them) and sample its RSS."""
    replicas = [c for c in gateway_components(env.status) if c["url"]]
    kids: list[str] = []
    timeout = timeout or max(120.0, 3.0 * count)

    def one() -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            # The client allows the whole run for each launch: the question is how long 200
            # take, not whether each fits the default 40 s.
            kid = target.start_kernel(timeout, env={"KERNEL_LAUNCH_TIMEOUT": str(int(timeout))})
        except BenchError as exc:
            return {"ok": False, "error": str(exc), "seconds": time.perf_counter() - t0}
        kids.append(kid)
        post = time.perf_counter() - t0
        try:
            with target.websocket(kid, timeout) as ws:
                wsclient.check_ok(ws.execute("pass", timeout))
        except BenchError as exc:
            return {"ok": False, "error": str(exc), "seconds": time.perf_counter() - t0}
        return {"ok": True, "seconds": time.perf_counter() - t0, "post_s": post}

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(workers, count)) as pool:
            runs = list(pool.map(lambda _: one(), range(count)))
        wall = time.perf_counter() - t0
        ok = sorted(r["seconds"] for r in runs if r["ok"])
        errors = [r["error"] for r in runs if not r["ok"]]
        scale: dict[str, Any] = {
            "count": count, "succeeded": len(ok), "failed": len(errors), "wall_s": wall,
            "p50_s": _pct(ok, 50), "p99_s": _pct(ok, 99), "max_s": ok[-1] if ok else None,
            "errors": sorted(set(errors))[:5],
            "summary": (f"{len(ok)}/{count} answered their first execute; all done in "
                        f"{wall:.1f} s; per kernel p50 {_pct(ok, 50) or 0:.1f} s, "
                        f"p99 {_pct(ok, 99) or 0:.1f} s"),
        }
        scale["status"] = "ok" if not errors else "FAILED"
        if errors:
            scale["error"] = f"{len(errors)} of {count} failed: {errors[0]}"
        memory = _hydrated_rss(replicas, target, kids, memory_counts)
        return scale, memory
    finally:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(target.shutdown_kernel, list(kids)))


def _pct(data: list[float], q: float) -> float | None:
    if not data:
        return None
    rank = max(1, -(-int(q * len(data)) // 100))
    return data[min(rank, len(data)) - 1]


def _hydrated_rss(replicas: list[dict[str, Any]], target: Target, kids: list[str],
                  counts: list[int]) -> dict[str, Any]:
    if len(replicas) < 2 or not replicas[1].get("pid"):
        return not_measured("needs a second gateway replica (with its pid) that has not seen "
                            "the kernels")
    fresh = _replica(target, replicas[1])
    pid = int(replicas[1]["pid"])

    def rss() -> int:
        samples = []
        for _ in range(5):
            time.sleep(0.2)
            samples.append(psutil.Process(pid).memory_info().rss)
        return int(statistics.median(samples))

    def go() -> dict[str, Any]:
        points = [{"kernels": 0, "rss_bytes": rss()}]
        done = 0
        for count in sorted({c for c in counts if c <= len(kids)}):
            for kid in kids[done:count]:
                status, _ = fresh.get_kernel(kid)
                if status != 200:
                    raise BenchError(f"GET /api/kernels/{{id}} on the fresh replica -> {status}")
            done = count
            time.sleep(2.0)  # let idle status and activity reports settle before sampling
            points.append({"kernels": count, "rss_bytes": rss()})
        return {"status": "ok", "points": points}
    return guarded(go)
