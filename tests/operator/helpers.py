"""Helpers for operator tests: sessions through kubectl, waiting on status, real kernel clients."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from jupyter_client import BlockingKernelClient
from kubernetes import client

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract


def custom(cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client())


def core(cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


def apply_session(cluster, namespace: str, kernel_spec: str = "python3", **kw: Any) -> str:
    """kubectl apply a KernelSession (a fresh kernel id) and return the id."""
    kid = kw.pop("kernel_id", None) or crd.new_kernel_id()
    resources = kw.pop("resources", None)
    manifest = crd.kernel_session(kid, namespace=namespace, kernel_spec=kernel_spec, **kw)
    if resources:
        manifest["spec"]["resources"] = resources
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return kid


def get_session(cluster, namespace: str, kid: str) -> dict[str, Any] | None:
    try:
        return custom(cluster).get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace,
                                                            crd.PLURAL, kid)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_session(cluster, namespace: str, kid: str, check: Callable[[dict], bool],
                 timeout: float = 90, what: str = "condition") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    ks = None
    while time.monotonic() < deadline:
        ks = get_session(cluster, namespace, kid)
        if ks is not None and check(ks):
            return ks
        time.sleep(0.3)
    raise AssertionError(f"session {namespace}/{kid}: {what} not reached in {timeout}s; "
                         f"last status: {json.dumps((ks or {}).get('status'), indent=1)}")


def ready_reason(ks: dict) -> tuple[str | None, str | None]:
    cond = crd.get_condition(ks.get("status")) or {}
    return cond.get("status"), cond.get("reason")


def wait_ready(cluster, namespace: str, kid: str, timeout: float = 90,
               extra: Callable[[dict], bool] = lambda ks: True) -> dict[str, Any]:
    return wait_session(cluster, namespace, kid, lambda ks: crd.is_ready(ks) and extra(ks),
                        timeout, "Ready=True")


def wait_reason(cluster, namespace: str, kid: str, reason: str,
                timeout: float = 90) -> dict[str, Any]:
    return wait_session(cluster, namespace, kid, lambda ks: ready_reason(ks) == ("False", reason),
                        timeout, f"Ready=False reason {reason}")


def session_key(cluster, namespace: str, ks: dict) -> str:
    ref = ks["status"]["keySecretRef"]
    secret = core(cluster).read_namespaced_secret(ref["name"], namespace)
    return base64.b64decode(secret.data[ref["key"]]).decode()


def kernel_client(cluster, namespace: str, ks: dict) -> BlockingKernelClient:
    kc = BlockingKernelClient()
    kc.load_connection_info(crd.connection_info(ks["status"], session_key(cluster, namespace, ks)))
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return kc


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
        return json.loads(resp.read())


def pods_of(cluster, namespace: str, kid: str) -> list[client.V1Pod]:
    return core(cluster).list_namespaced_pod(
        namespace, label_selector=f"{crd.LABEL_KERNEL_ID}={kid}").items


def wait_until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout}s")


def signal_in_pod(cluster, namespace: str, pod: str, pid: int, signum: int) -> None:
    """Send a signal to a process of the kernel container, from inside it (`kubectl exec`):
    the launcher reports pids of the container's own PID namespace."""
    cluster.pod_exec(namespace, pod, f"import os; os.kill({int(pid)}, {int(signum)})")


def container_id(cluster, namespace: str, pod: str) -> str:
    """containerd's id of the kernel container, without the `containerd://` prefix."""
    p = core(cluster).read_namespaced_pod(pod, namespace)
    cid = next(cs.container_id for cs in p.status.container_statuses or [] if cs.name == "kernel")
    return str(cid).removeprefix("containerd://")


def container_listed(cluster, cid: str) -> bool:
    return any(line.split()[0] == cid for line in cluster.ctr("containers", "ls").splitlines()[1:]
               if line.strip())
