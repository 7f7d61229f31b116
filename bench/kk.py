"""kernelkeeper's side of the scenarios that need more than one gateway URL.

The per-target scenarios (latency, throughput, start) treat kernelkeeper's gateway like any peer
(bench/targets.py: KernelKeeperEnvironment). The ones below need its local environment's
internals: the replica URLs and pids from `kernelkeeper local status --json`. Each returns
"not measured" with the reason when they are missing, so the report never shows a number this
run did not produce.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any, cast

import psutil
from jupyter_client.connect import KernelConnectionInfo
from kubernetes import client, config

from bench.protocol import BenchError, check_ok
from bench.scenarios import failed, guarded, not_measured
from bench.targets import KernelKeeperEnvironment, Target, http
from kernelkeeper.crds import model as crd
from kernelkeeper.gateway.metrics import PREFIX as METRIC_PREFIX


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


def pod_connection_info(env: KernelKeeperEnvironment, namespace: str = "default",
                        timeout: float = 60.0) -> Callable[[str], KernelConnectionInfo]:
    """Where a kernel pod listens, and its key: its KernelSession's status and key Secret.

    What a client needs to reach kernelkeeper's kernel with no gateway between (PodSession).
    """
    kubeconfig = env.status.get("kubeconfig")
    if not kubeconfig:
        raise BenchError("`local status` has no kubeconfig")

    def lookup(kernel_id: str) -> KernelConnectionInfo:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        try:
            deadline = time.monotonic() + timeout
            while True:
                obj = cast(dict[str, Any], client.CustomObjectsApi(api)
                           .get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace,
                                                         crd.PLURAL, kernel_id))
                status = obj.get("status") or {}
                if status.get("connection") and crd.is_ready(obj):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"KernelSession {kernel_id[:8]}… not Ready with a "
                                     f"connection after {timeout:.0f}s")
                time.sleep(0.2)
            secret = client.CoreV1Api(api).read_namespaced_secret(
                crd.key_secret_name(kernel_id), namespace)
            return cast(KernelConnectionInfo,
                        crd.connection_from_secret(status, secret.data or {}))
        finally:
            api.close()
    return lookup


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
                check_ok(ws.execute("x = 41", exec_timeout))
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
                check_ok(out)
            return {**res, "status": "ok", "execute_s": time.perf_counter() - t0,
                    "state_preserved": out.text.strip() == "42"}
        finally:
            a.shutdown_kernel(kid)
    return guarded(go)


def component_process(env: KernelKeeperEnvironment, name: str) -> psutil.Process:
    """The component's own process: the child of its `local.supervise` wrapper if it has one
    (killing the wrapper would leave the component running)."""
    comp = (env.status.get("components") or {}).get(name) or {}
    if not comp.get("pid"):
        raise BenchError(f"`local status` has no pid for {name}")
    proc = psutil.Process(int(comp["pid"]))
    if "kernelkeeper.local.supervise" in " ".join(proc.cmdline()):
        children = proc.children()
        if len(children) != 1:
            raise BenchError(f"{name}: its supervisor has {len(children)} children, expected 1")
        return children[0]
    return proc


def _gateway_process(env: KernelKeeperEnvironment, comp: dict[str, Any]) -> psutil.Process:
    """Only ever signal a gateway this run started: check the command line first."""
    proc = component_process(env, comp["name"])
    port = comp["url"].rsplit(":", 1)[1]
    cmdline = " ".join(proc.cmdline())
    if "kernelkeeper gateway" not in cmdline or port not in cmdline:
        raise BenchError(f"pid {proc.pid} is not the gateway on port {port}: {cmdline[:120]}")
    return proc


def _alive_through(t: Target, kid: str) -> bool:
    with contextlib.suppress(BenchError):
        status, model = t.get_kernel(kid, 10)
        return status == 200 and isinstance(model, dict) and \
            model.get("execution_state") not in ("dead", None)
    return False


def failover(env: KernelKeeperEnvironment, target: Target, deadline_s: float = 30.0,
             attempt_timeout: float = 10.0) -> dict[str, Any]:
    """EG's situation: kernel with state through replica 1, SIGKILL of that gateway process,
    then the client turns to replica 2 (GET + execute) until one succeeds."""
    from bench.replication import STATE_CODE, failover_after_kill

    replicas = [c for c in gateway_components(env.status) if c["url"]]
    if len(replicas) < 2:
        return not_measured(f"needs 2 gateway replicas in `local status`, found {len(replicas)}")

    def go() -> dict[str, Any]:
        a, b = _replica(target, replicas[0]), _replica(target, replicas[1])
        proc = _gateway_process(env, replicas[0])
        kid = a.start_kernel()
        try:
            with a.websocket(kid, 60) as ws:
                check_ok(ws.execute(STATE_CODE, 60))
            return failover_after_kill(b, kid, proc.kill, lambda: _alive_through(b, kid),
                                       deadline_s, attempt_timeout)
        finally:
            b.shutdown_kernel(kid)
    return guarded(go)


def wait_replicas_up(env: KernelKeeperEnvironment, timeout: float = 60.0) -> None:
    """Every replica answers /healthz (one killed by an earlier scenario is restarted by its
    supervisor, as a kubelet would; this waits for that)."""
    deadline = time.monotonic() + timeout
    for comp in gateway_components(env.status):
        while True:
            with contextlib.suppress(BenchError):
                if http("GET", f"{comp['url']}/healthz", None, None, 2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"{comp['name']} did not answer /healthz within {timeout:.0f}s")
            time.sleep(0.2)


def _websockets_opened(env: KernelKeeperEnvironment, front: Target) -> dict[str, float]:
    """Each replica's `websocket_connections_total` counter, by component name."""
    out: dict[str, float] = {}
    for comp in gateway_components(env.status):
        status, text = http("GET", f"{comp['url']}/metrics", front.token, None, 10)
        if status != 200 or not isinstance(text, str):
            continue
        out[comp["name"]] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                if line.startswith(f"{METRIC_PREFIX}websocket_connections_total"))
    return out


def front_failover(env: KernelKeeperEnvironment, front: Target, deadline_s: float = 30.0,
                   attempt_timeout: float = 10.0, sig: int = signal.SIGKILL) -> dict[str, Any]:
    """What a JupyterLab user sees: one URL (nginx) in front of the replicas. Kernel with state
    through it; `sig` to the replica that serves the kernel (active-active) or holds the Lease
    (active-passive); then GET + execute through the same URL until one succeeds."""
    from bench.replication import STATE_CODE, failover_after_kill

    def go() -> dict[str, Any]:
        wait_replicas_up(env)
        kid = front.start_kernel()
        try:
            before = _websockets_opened(env, front)
            with front.websocket(kid, 60) as ws:
                check_ok(ws.execute(STATE_CODE, 60))
            after = _websockets_opened(env, front)
            # nginx hashes the kernel id to one replica: the one whose counter moved serves it.
            served = [n for n in after if after[n] > before.get(n, 0)]
            if len(served) != 1:
                raise BenchError(f"cannot tell which replica served the websocket: {served}")
            comp = next(c for c in gateway_components(env.status) if c["name"] == served[0])
            proc = _gateway_process(env, comp)
            name = signal.Signals(sig).name
            res = failover_after_kill(front, kid, lambda: proc.send_signal(sig),
                                      lambda: _alive_through(front, kid), deadline_s,
                                      attempt_timeout, what=f"{name} of {comp['name']}",
                                      via="the front URL")
            return {**res, "signalled": comp["name"]}
        finally:
            front.shutdown_kernel(kid)
    return guarded(go)
