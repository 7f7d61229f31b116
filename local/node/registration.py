"""The Node object, its Ready heartbeat and its Lease in kube-node-lease.

The node lifecycle controller in kube-controller-manager judges a node by its Lease: renewed
every quarter of its duration, with a backoff-free retry on failure. The Node status (Ready,
addresses, capacity) is written at start and re-asserted when someone else changed Ready,
for example to Unknown while this node was down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import platform
from pathlib import Path
from typing import Any

from kernelkeeper.local.node.config import NodeConfig
from kernelkeeper.local.node.events import now_rfc3339
from kernelkeeper.local.node.kube import MERGE_PATCH, Kube, KubeError

log = logging.getLogger(__name__)

VERSION = "v1.36.3-kernelkeeper"
STATUS_REFRESH = 60.0
STATUS_CHECK = 10.0


def _arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def conditions(now: str) -> list[dict[str, Any]]:
    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
             "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady",
             "kernelkeeper process node is posting ready status"),
    ]


def node_status(cfg: NodeConfig, kubelet_port: int = 0) -> dict[str, Any]:
    resources = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.max_pods),
                 "ephemeral-storage": "1Ti"}
    uname = os.uname()
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions(now_rfc3339()),
        # No Hostname address: the API server would try to resolve the node name first when
        # it proxies `kubectl logs`; the InternalIP is where this node listens.
        "addresses": [{"type": "InternalIP", "address": cfg.host_ip}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": uname.release,
            "osImage": f"{uname.sysname} (kernelkeeper process node)",
            "containerRuntimeVersion": "process://0.1.0",
            "kubeletVersion": VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _arch(),
        },
    }


def node_object(cfg: NodeConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.name,
            "labels": {
                "kubernetes.io/hostname": cfg.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _arch(),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": _arch(),
                "node.kubernetes.io/instance-type": "kernelkeeper-process",
                "kernelkeeper.io/process-node": "true",
            },
        },
        "spec": {},
    }


class Registration:
    def __init__(self, kube: Kube, cfg: NodeConfig) -> None:
        self.kube = kube
        self.cfg = cfg
        self.node_uid: str | None = None
        self.kubelet_port = 0
        self._last_status = 0.0

    async def register(self) -> None:
        obj = node_object(self.cfg)
        try:
            created = await self.kube.request("POST", "/api/v1/nodes", body=obj)
        except KubeError as exc:
            if exc.status != 409:
                raise
            created = await self.kube.request(
                "PATCH", f"/api/v1/nodes/{self.cfg.name}",
                body={"metadata": {"labels": obj["metadata"]["labels"]}},
                content_type=MERGE_PATCH)
        self.node_uid = created["metadata"]["uid"]
        await self.write_status()
        log.info("node %s registered and Ready", self.cfg.name)

    async def write_status(self) -> None:
        # A merge patch replaces lists whole: addresses of an earlier registration must go.
        await self.kube.request("PATCH", f"/api/v1/nodes/{self.cfg.name}/status",
                                body={"status": node_status(self.cfg, self.kubelet_port)},
                                content_type=MERGE_PATCH)
        self._last_status = asyncio.get_running_loop().time()

    async def status_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(STATUS_CHECK)
            try:
                node = await self.kube.get(f"/api/v1/nodes/{self.cfg.name}")
                ready = next((c for c in node.get("status", {}).get("conditions") or []
                              if c.get("type") == "Ready"), {})
                if (ready.get("status") != "True"
                        or loop.time() - self._last_status > STATUS_REFRESH):
                    await self.write_status()
            except KubeError as exc:
                if exc.status == 404:
                    log.warning("node %s was deleted; registering again", self.cfg.name)
                    await self.register()
                else:
                    log.warning("node status: %s", exc)
            except (OSError, TimeoutError) as exc:
                log.warning("node status: %s", exc)

    def _lease(self) -> dict[str, Any]:
        renew = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.cfg.name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.cfg.name,
                     "leaseDurationSeconds": self.cfg.lease_duration,
                     "renewTime": renew},
        }
        if self.node_uid:
            lease["metadata"]["ownerReferences"] = [{
                "apiVersion": "v1", "kind": "Node", "name": self.cfg.name, "uid": self.node_uid}]
        return lease

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.cfg.name}"
        lease = self._lease()
        try:
            await self.kube.request("PATCH", path, body={"spec": lease["spec"],
                                                         "metadata": {"ownerReferences": lease[
                                                             "metadata"].get("ownerReferences")}},
                                    content_type=MERGE_PATCH)
        except KubeError as exc:
            if exc.status != 404:
                raise
            await self.kube.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                body=lease)

    async def lease_loop(self) -> None:
        interval = self.cfg.lease_duration / 4
        while True:
            try:
                await self.renew_lease()
                await asyncio.sleep(interval)
            except (KubeError, OSError, TimeoutError) as exc:
                log.warning("lease renewal failed: %s", exc)
                await asyncio.sleep(1.0)
