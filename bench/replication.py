"""Enterprise Gateway in `availability_mode=replication`: hydration and failover, as they are.

Two EG instances share one FileKernelSessionManager directory (what an NFS volume gives them on
Kubernetes). Everything is timed from the client's side and every failure is kept as a result:
the point is to show what a client sees, not to make EG look good or bad.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.protocol import BenchError, check_ok
from bench.scenarios import failed, guarded
from bench.targets import Target, start_enterprise_gateway

STATE_CODE = "x = 41"
CHECK_CODE = "x += 1; print(x)"  # "42" proves the client reached the same kernel state


SHARED = "kernel_sessions_root"


def _instance(workdir: Path, name: str, token: str, pod_like: bool) -> Target:
    return start_enterprise_gateway(workdir / name, persistence_root=workdir / SHARED,
                                    name=f"eg-{name}", token=token, detach_kernel=pod_like,
                                    kernel_all_interfaces=pod_like)


def _stop(*targets: Target | None) -> None:
    for t in targets:
        if t is not None and t.process is not None:
            # EG's shutdown may wait 30 s for a kernel restart that never finishes (anchors.md):
            # give it a moment, then kill. Kernels are stopped by ServerProcess either way.
            t.process.stop(timeout=5)


def _error_lines(log: Path, limit: int = 3) -> list[str]:
    """The first distinct error lines of a server log (tracebacks' last lines, ERROR records)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            text = line.strip()
            if (("Error" in text and not text.startswith("File ")) or " E " in text[:40]
                    or "[E " in text) and text[-200:] not in found:
                found.append(text[-200:])
            if len(found) >= limit:
                break
    return found


def _with_server_errors(result: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Attach the error lines each EG instance logged: they explain a hang better than we can."""
    errors = {}
    for name in ("a", "b"):
        lines = _error_lines(workdir / name / f"eg-{name}.log")
        if lines:
            errors[name.upper()] = lines
    if errors:
        result["server_errors"] = errors
    # What EG asked `kill` to do (through the bench's shim; see targets.kill_shim).
    kills, polls = [], 0
    for name in ("a", "b"):
        with contextlib.suppress(OSError):
            for line in (workdir / name / "bin" / "kill.log").read_text().splitlines():
                call = line.split(" ", 1)[1]
                if call.startswith("kill -0 "):
                    polls += 1  # liveness polls, harmless
                else:
                    kills.append(f"{name.upper()}: {call}")
    if kills:
        result["kill_calls"] = kills
    if polls:
        result["kill_polls"] = polls
    return result


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _exec_through(target: Target, kernel_id: str, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        with target.websocket(kernel_id, timeout) as ws:
            t_ws = time.perf_counter() - t0
            out = ws.execute(CHECK_CODE, timeout, collect_text=True)
            check_ok(out)
        return {"ok": True, "seconds": time.perf_counter() - t0, "ws_connect_s": t_ws,
                "output": out.text.strip()}
    except BenchError as exc:
        return {"ok": False, "seconds": time.perf_counter() - t0, "error": str(exc)}


def eg_hydration(workdir: Path, *, pod_like: bool, exec_timeout: float = 20.0) -> dict[str, Any]:
    """Kernel started on A; a fresh B (same session dir) gets its first GET and execute.

    `pod_like=False` is EG's local process proxy as shipped; `pod_like=True` makes the kernel
    reachable at the address EG persists and lets it outlive its gateway, as a kernel pod would.
    """
    def go() -> dict[str, Any]:
        token = secrets.token_hex(16)
        b = None
        a = _instance(workdir, "a", token, pod_like)
        try:
            kid = a.start_kernel()
            a.process.track()
            with a.websocket(kid) as ws:
                check_ok(ws.execute(STATE_CODE, 60))
            b = _instance(workdir, "b", token, pod_like)
            t0 = time.perf_counter()
            status, model = b.get_kernel(kid, timeout=exec_timeout)
            get_s = time.perf_counter() - t0
            b.process.track()
            result: dict[str, Any] = {
                "get_status": status, "get_s": get_s,
                "get_state": model.get("execution_state") if isinstance(model, dict) else None,
                "a_alive": True,
            }
            if status != 200:
                return {**result, **failed(f"GET /api/kernels/{{id}} on B -> {status}: "
                                           f"{str(model)[:200]}")}
            ex = _exec_through(b, kid, exec_timeout)
            result["execute"] = ex
            if not ex["ok"]:
                return {**result, **failed(f"first execute through B: {ex['error']}")}
            result["execute_s"] = ex["seconds"]
            result["state_preserved"] = ex["output"] == "42"
            return {**result, "status": "ok"}
        finally:
            _stop(b, a)
    return _with_server_errors(guarded(go), workdir)


def failover_after_kill(b: Target, kernel_id: str, kill_a: Callable[[], None],
                        kernel_alive: Callable[[], bool], deadline_s: float,
                        attempt_timeout: float,
                        on_attempt: Callable[[], None] | None = None, *,
                        what: str = "SIGKILL gateway A", via: str = "B") -> dict[str, Any]:
    """SIGKILL gateway A (`kill_a`), then GET + websocket execute through B every 0.5 s until
    an execute succeeds or `deadline_s` passes. Every attempt is a timeline event."""
    events: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    kill_a()
    events.append({"t": 0.0, "event": what})
    recovered_at = None
    output = None
    attempts = 0
    while time.perf_counter() - t0 < deadline_s:
        attempts += 1
        ts = time.perf_counter() - t0
        try:
            status, model = b.get_kernel(kernel_id, timeout=attempt_timeout)
            state = model.get("execution_state") if isinstance(model, dict) else None
            events.append({"t": ts, "dur": time.perf_counter() - t0 - ts,
                           "event": f"GET on {via} -> {status}" + (f" ({state})" if state else ""),
                           "ok": status == 200})
        except BenchError as exc:
            events.append({"t": ts, "dur": time.perf_counter() - t0 - ts,
                           "event": f"GET on {via} failed: {exc}", "ok": False})
            status = None
        if on_attempt is not None:
            on_attempt()
        if status == 200:
            ts = time.perf_counter() - t0
            left = max(1.0, min(attempt_timeout, deadline_s - ts))
            ex = _exec_through(b, kernel_id, left)
            events.append({"t": ts, "dur": ex["seconds"],
                           "event": f"execute through {via}: " + (
                               f"ok, printed {ex['output']!r}" if ex["ok"] else ex["error"]),
                           "ok": ex["ok"]})
            if ex["ok"]:
                recovered_at = time.perf_counter() - t0
                output = ex["output"]
                break
        time.sleep(0.5)
    last_attempt = events[-1]["event"]
    survived = kernel_alive()
    events.append({"t": time.perf_counter() - t0,
                   "event": "A's kernel process " + ("still alive" if survived else "is gone")})
    result = {"kernel_survived_gateway": survived, "events": events, "attempts": attempts,
              "deadline_s": deadline_s}
    if recovered_at is None:
        return {**result, **failed(f"no successful execute through {via} within {deadline_s:.0f}s "
                                   f"({attempts} attempts; last: {last_attempt})")}
    return {**result, "status": "ok", "recovery_s": recovered_at,
            "state_preserved": output == "42"}


def eg_failover(workdir: Path, *, pod_like: bool, deadline_s: float = 30.0,
                attempt_timeout: float = 10.0) -> dict[str, Any]:
    """A and B up; kernel on A with state; SIGKILL A; retry through B until success or deadline.

    `pod_like=False` is EG with its local process proxy as shipped: ipykernel exits with its
    parent, so the kernel dies with A. `pod_like=True` keeps the kernel alive and reachable the
    way a kernel pod outlives a gateway pod, so what remains is EG's own failover path.
    """
    def go() -> dict[str, Any]:
        token = secrets.token_hex(16)
        b = None
        a = _instance(workdir, "a", token, pod_like)
        try:
            b = _instance(workdir, "b", token, pod_like)
            kid = a.start_kernel()
            with a.websocket(kid) as ws:
                check_ok(ws.execute(STATE_CODE, 60))
            kernel_pids = a.process.kernel_pids()
            return failover_after_kill(
                b, kid, a.process.kill, lambda: any(_pid_alive(p) for p in kernel_pids),
                deadline_s, attempt_timeout, on_attempt=b.process.track)
        finally:
            _stop(b, a)
    return _with_server_errors(guarded(go), workdir)
