"""Helpers shared by the whole test suite, one copy each.

- waiting: `wait_until` (the first truthy value of a check), `seconds_until` (how long that
  took, for tests that measure an interruption) and `holds_for` (a check true at every poll);
- HTTP probes: `http_status`, `reachable`, `metric` (one line of a /metrics page);
- KernelSessions through the API server: create, read, wait on status, shorten the idle
  timeout, their Events and Pods, their key;
- kernels over ZMQ: `connect_kernel`, `kernel_client`, `execute`, the launcher's status;
- containers of the real node: signals from inside a Pod, containerd's view;
- the `kernelkeeper local` CLI: `kk_local`.

The gateway's own protocol clients (REST calls, the websocket client) are in
tests/gateway/client.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import yaml
from jupyter_client import BlockingKernelClient
from kubernetes import client

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract

if TYPE_CHECKING:  # the unit tests use these helpers without the cluster fixture's imports
    from tests.fixtures.cluster import Cluster

T = TypeVar("T")

# ---------------------------------------------------------------- waiting


def wait_until(check: Callable[[], T | None], timeout: float = 60, what: str = "condition", *,
               interval: float = 0.3, detail: Callable[[], str] | None = None) -> T:
    """Call `check` until it returns something truthy, and return that.

    A check may raise to end the wait early (a process that died). On timeout the test fails
    with `what` and, if given, `detail()`: the last state seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"{what} not reached in {timeout:g}s{seen}")
        time.sleep(interval)


def seconds_until(check: Callable[[], object], timeout: float, what: str, *,
                  interval: float = 0.05) -> float:
    """`wait_until` that returns the seconds the wait took (polled often, for measurements)."""
    start = time.monotonic()
    wait_until(check, timeout, what, interval=interval)
    return time.monotonic() - start


def holds_for(check: Callable[[], T | None], seconds: float, what: str, *,
              interval: float = 0.5, detail: Callable[[], str] | None = None) -> T:
    """Fail unless `check` is truthy at every poll for `seconds`; return its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        assert value, f"{what} stopped holding" + (f"; {detail()}" if detail is not None else "")
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------- HTTP probes


def http_status(url: str, timeout: float = 3, token: str = "") -> int:
    """The HTTP status `url` answers with; 0 when nothing answers."""
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except OSError:
        return 0


def reachable(url: str, timeout: float = 3) -> bool:
    """Something answers HTTP at `url` (any status): a Service has a live endpoint."""
    return http_status(f"{url}/healthz", timeout) != 0


def metric(url: str, suffix: str, token: str = "") -> float:
    """The value of the first sample in `url`/metrics whose name ends with `suffix`."""
    req = urllib.request.Request(f"{url}/metrics",
                                 headers={"Authorization": f"token {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if not line.startswith("#") and line.split(" ")[0].endswith(suffix):
                return float(line.split()[-1])
    raise AssertionError(f"no {suffix} in {url}/metrics")


# ---------------------------------------------------------------- KernelSessions


def token_kubeconfig(cluster: Cluster, path: Path, token: str, user: str = "token") -> Path:
    """A kubeconfig for the cluster that authenticates with `token` alone."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    (cl,) = admin["clusters"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cl],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cl["name"], "user": user}}],
        "current-context": user,
    }))
    return path


def custom(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client())


def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


def apply_session(cluster: Cluster, namespace: str, kernel_spec: str = "python3",
                  **kw: Any) -> str:
    """kubectl apply a KernelSession (a fresh kernel id) and return the id."""
    kid = kw.pop("kernel_id", None) or crd.new_kernel_id()
    resources = kw.pop("resources", None)
    manifest = crd.kernel_session(kid, namespace=namespace, kernel_spec=kernel_spec, **kw)
    if resources:
        manifest["spec"]["resources"] = resources
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return str(kid)


def get_session(cluster: Cluster, namespace: str, kid: str) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], custom(cluster).get_namespaced_custom_object(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, kid))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_session(cluster: Cluster, namespace: str, kid: str, check: Callable[[dict], bool],
                 timeout: float = 90, what: str = "condition") -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        ks = get_session(cluster, namespace, kid)
        last["status"] = (ks or {}).get("status")
        return ks if ks is not None and check(ks) else None

    return wait_until(reached, timeout, f"session {namespace}/{kid}: {what}",
                      detail=lambda: f"last status: {json.dumps(last.get('status'), indent=1)}")


def ready_reason(ks: dict) -> tuple[str | None, str | None]:
    cond = crd.get_condition(ks.get("status")) or {}
    return cond.get("status"), cond.get("reason")


def wait_ready(cluster: Cluster, namespace: str, kid: str, timeout: float = 90,
               extra: Callable[[dict], bool] = lambda ks: True) -> dict[str, Any]:
    return wait_session(cluster, namespace, kid,
                        lambda ks: crd.is_ready(cast(Any, ks)) and extra(ks),
                        timeout, "Ready=True")


def wait_reason(cluster: Cluster, namespace: str, kid: str, reason: str,
                timeout: float = 90) -> dict[str, Any]:
    return wait_session(cluster, namespace, kid, lambda ks: ready_reason(ks) == ("False", reason),
                        timeout, f"Ready=False reason {reason}")


def set_idle_timeout(cluster: Cluster, namespace: str, kid: str, seconds: int) -> None:
    cluster.kubectl("patch", "ks", kid, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"idleTimeoutSeconds": seconds}}))


def events(cluster: Cluster, namespace: str, kid: str,
           reason: str | None = None) -> list[dict[str, Any]]:
    """The Events about a session (or its Pod, which has the same name), optionally of a reason."""
    selector = f"involvedObject.name={kid}" + (f",reason={reason}" if reason else "")
    out = cluster.kubectl("get", "events", "-n", namespace, "-o", "json",
                          "--field-selector", selector)
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def session_key(cluster: Cluster, namespace: str, ks: dict) -> str:
    ref = ks["status"]["keySecretRef"]
    data = core(cluster).read_namespaced_secret(ref["name"], namespace).data or {}
    return base64.b64decode(data[ref["key"]]).decode()


def pods_of(cluster: Cluster, namespace: str, kid: str) -> list[client.V1Pod]:
    pods: list[client.V1Pod] = core(cluster).list_namespaced_pod(
        namespace, label_selector=f"{crd.LABEL_KERNEL_ID}={kid}").items
    return pods


# ---------------------------------------------------------------- kernels over ZMQ


def connect_kernel(connection_info: dict[str, Any]) -> BlockingKernelClient:
    """A started, ready jupyter_client for a kernel's connection info (stop_channels after)."""
    kc = BlockingKernelClient()
    kc.load_connection_info(cast(Any, connection_info))
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return kc


def kernel_client(cluster: Cluster, namespace: str, ks: dict) -> BlockingKernelClient:
    data = core(cluster).read_namespaced_secret(ks["status"]["keySecretRef"]["name"],
                                                namespace).data or {}
    return connect_kernel(crd.connection_from_secret(ks["status"], data))


def execute(kc: BlockingKernelClient, code: str, timeout: float = 60) -> dict[str, Any]:
    """Run code; returns {'status', 'result' (text/plain or None), 'ename'}."""
    results: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "execute_result":
            results.append(msg["content"]["data"].get("text/plain"))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    content = reply["content"]
    return {"status": content["status"], "result": results[-1] if results else None,
            "ename": content.get("ename")}


def launcher_status(ip: str, timeout: float = 3) -> dict[str, Any]:
    url = f"http://{ip}:{contract.HEALTH_PORT}{contract.STATUS_PATH}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        status: dict[str, Any] = json.loads(resp.read())
        return status


# ---------------------------------------------------------------- containers on the real node


def signal_in_pod(cluster: Cluster, namespace: str, pod: str, pid: int, signum: int) -> None:
    """Send a signal to a process of the kernel container, from inside it (`kubectl exec`):
    the launcher reports pids of the container's own PID namespace."""
    cluster.pod_exec(namespace, pod, f"import os; os.kill({int(pid)}, {int(signum)})")


def container_id(cluster: Cluster, namespace: str, pod: str) -> str:
    """containerd's id of the kernel container, without the `containerd://` prefix."""
    status = core(cluster).read_namespaced_pod(pod, namespace).status
    cid = next(cs.container_id for cs in (status and status.container_statuses) or []
               if cs.name == "kernel")
    return str(cid).removeprefix("containerd://")


def container_listed(cluster: Cluster, cid: str) -> bool:
    return any(line.split()[0] == cid for line in cluster.ctr("containers", "ls").splitlines()[1:]
               if line.strip())


# ---------------------------------------------------------------- the local CLI


def kk_local(*args: str, state: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`kernelkeeper local --state-dir <state> <args>`, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kernelkeeper", "local", "--state-dir",
                           str(state), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
