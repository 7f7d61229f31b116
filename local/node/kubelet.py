"""The node's main loop: register, reconcile what ran before, then follow the pods bound here.

Pods come from a list + watch on ``spec.nodeName=<node>`` across namespaces; the watch resumes
from the last resourceVersion (bookmarks included) and re-lists on 410 Gone, treating pods
missing from the new list as deleted. Each pod gets a PodWorker task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from kernelkeeper.local.node import envvars, procs
from kernelkeeper.local.node.config import NodeConfig
from kernelkeeper.local.node.container import helper
from kernelkeeper.local.node.cpuweight import CpuGroups
from kernelkeeper.local.node.events import EventRecorder
from kernelkeeper.local.node.ipam import Allocator
from kernelkeeper.local.node.kube import Kube, KubeError
from kernelkeeper.local.node.logserver import LogServer
from kernelkeeper.local.node.pod import PodWorker
from kernelkeeper.local.node.podstatus import StatusWriter
from kernelkeeper.local.node.registration import Registration, node_status
from kernelkeeper.local.node.state import PodRecord, StateStore

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 300
READY_FILE = "node.ready"


def check_mount_namespace() -> str | None:
    """None if this host lets the node give a process a private mount namespace, else why not."""
    try:
        out = subprocess.run(helper("check"), capture_output=True, text=True, timeout=30,
                             check=False)
    except OSError as exc:
        return str(exc)
    return None if out.returncode == 0 else (out.stderr.strip() or f"exit {out.returncode}")


class Kubelet:
    def __init__(self, cfg: NodeConfig, kube: Kube) -> None:
        self.cfg = cfg
        self.kube = kube
        self.store = StateStore(cfg.state_dir)
        self.ipam = Allocator(cfg.pod_cidr, cfg.state_dir, cfg.ipam_dir)
        self.events = EventRecorder(kube, cfg.name)
        self.status = StatusWriter(kube, cfg.status_concurrency)
        self.registration = Registration(kube, cfg)
        self.logserver = LogServer(self)
        self.host_ip = cfg.host_ip
        self.allocatable: dict[str, str] = node_status(cfg)["allocatable"]
        self.cpu = CpuGroups(cfg.name, self.allocatable.get("cpu", "1"))
        self.service_env = envvars.service_env(kube.server)
        self.workers: dict[str, PodWorker] = {}
        self.finished: dict[str, None] = {}  # uids of pods forgotten, oldest first
        self.mountns_error = check_mount_namespace()
        self.mountns_ok = self.mountns_error is None
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = asyncio.Event()

    # ----------------------------------------------------------------- API helpers for pods

    async def fetch(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        plural = "secrets" if kind == "Secret" else "configmaps"
        try:
            obj = await self.kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return envvars.object_data(kind, obj)

    async def token(self, namespace: str, sa: str, audience: str | None, ttl: int,
                    pod: dict[str, Any]) -> tuple[str, float]:
        body = {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [audience] if audience else None,
                     "expirationSeconds": ttl,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                        "name": pod["metadata"]["name"],
                                        "uid": pod["metadata"]["uid"]}},
        }
        try:
            out = await self.kube.request(
                "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token", body=body)
        except KubeError as exc:
            if exc.status == 404:
                raise envvars.ConfigError(f"token for serviceaccount {sa!r}: {exc.reason}") from exc
            raise
        import datetime as dt

        exp = out["status"].get("expirationTimestamp", "")
        try:
            expiry = dt.datetime.strptime(exp, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC).timestamp()
        except ValueError:
            expiry = time.time() + ttl
        return out["status"]["token"], expiry

    # ----------------------------------------------------------------- workers

    def forget(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
        self.cpu.remove(worker.uid)
        # Watch events of a pod already finished here (its own final status, the DELETE)
        # may still be in flight: they must not start it again.
        self.finished[worker.uid] = None
        while len(self.finished) > 10000:
            self.finished.pop(next(iter(self.finished)))

    def _worker(self, pod: dict[str, Any], record: PodRecord | None = None) -> PodWorker:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            w = PodWorker(self, pod, record)
            self.workers[uid] = w
            w.start()
        return w

    # ----------------------------------------------------------------- main

    async def run(self) -> None:
        self.registration.kubelet_port = await self.logserver.start()
        await self.registration.register()
        loop = asyncio.get_running_loop()
        for coro in (self.registration.lease_loop(), self.registration.status_loop(),
                     self.events.run(), self.status.run()):
            self._tasks.append(loop.create_task(coro))
        if not self.mountns_ok:
            log.warning("private mount namespaces are unavailable (%s): pods with volume "
                        "mounts will fail", self.mountns_error)
        pods, rv = await self._list()
        self._reconcile(pods)
        self.ready.set()
        # Tools (test fixture, `local up`) wait for this file to know this process serves.
        marker = self.cfg.state_dir / READY_FILE
        marker.write_text(json.dumps({"pid": os.getpid(), "node": self.cfg.name}))
        log.info("node %s serving %d pods", self.cfg.name, len(self.workers))
        await self._watch(rv)

    async def _list(self) -> tuple[list[dict[str, Any]], str]:
        out = await self.kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={self.cfg.name}")
        return out.get("items") or [], out["metadata"]["resourceVersion"]

    def _reconcile(self, pods: list[dict[str, Any]]) -> None:
        """Adopt what the previous node process ran; kill what the API no longer knows."""
        records = {r.uid: r for r in self.store.load_all()}
        self.ipam.forget_unused({r.ip for r in records.values() if r.ip})
        for pod in pods:
            uid = pod["metadata"]["uid"]
            rec = records.pop(uid, None)
            if rec is not None and rec.ip and not pod["spec"].get("hostNetwork"):
                pids = [(c.pid, c.ticks) for c in rec.containers.values() if c.pid]
                if not self.ipam.reclaim(rec.ip, uid, pids):
                    log.warning("pod %s/%s: its IP %s was taken while the node was down",
                                rec.namespace, rec.name, rec.ip)
            self._worker(pod, rec)
        for rec in records.values():
            log.info("pod %s/%s (%s) no longer exists: stopping what is left of it",
                     rec.namespace, rec.name, rec.uid)
            for c in rec.containers.values():
                if c.pid and procs.alive(c.pid, c.ticks):
                    procs.signal_group(c.pid, signal.SIGKILL)
            if rec.ip:
                self.ipam.release(rec.ip)
            self.store.remove(rec.uid)

    async def _watch(self, rv: str) -> None:
        while True:
            try:
                async for event in self.kube.watch(
                        "/api/v1/pods", resource_version=rv, timeout_seconds=WATCH_TIMEOUT,
                        fieldSelector=f"spec.nodeName={self.cfg.name}"):
                    obj = event.get("object") or {}
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    self._handle(event.get("type", ""), obj)
            except KubeError as exc:
                if exc.status != 410:
                    log.warning("pod watch failed: %s", exc)
                    await asyncio.sleep(1.0)
                    continue
                log.info("pod watch expired (410): re-listing")
                rv = await self._relist()
            except (OSError, TimeoutError, ValueError) as exc:
                log.warning("pod watch interrupted: %s", exc)
                await asyncio.sleep(1.0)

    async def _relist(self) -> str:
        while True:
            try:
                pods, rv = await self._list()
                break
            except (KubeError, OSError, TimeoutError) as exc:
                log.warning("re-list failed: %s", exc)
                await asyncio.sleep(1.0)
        seen = set()
        for pod in pods:
            seen.add(pod["metadata"]["uid"])
            self._handle("MODIFIED", pod)
        for uid, w in list(self.workers.items()):
            if uid not in seen:
                w.gone()
        return rv

    def _handle(self, type_: str, pod: dict[str, Any]) -> None:
        if type_ == "BOOKMARK" or "metadata" not in pod:
            return
        uid = pod["metadata"].get("uid")
        if type_ == "DELETED":
            w = self.workers.get(uid)
            if w is not None:
                w.observe(pod)
                w.gone()
            return
        w = self.workers.get(uid)
        if w is None:
            if uid not in self.finished:
                self._worker(pod)
        else:
            w.update(pod)

    async def shutdown(self) -> None:
        stop = self.cfg.stop_pods_on_exit
        log.info("node %s shutting down (%s)", self.cfg.name,
                 "stopping pods" if stop else "pods keep running")
        await asyncio.gather(*(w.shutdown(stop_pods=stop) for w in list(self.workers.values())),
                             return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.logserver.stop()


async def serve(cfg: NodeConfig) -> int:
    if sys.version_info < (3, 12):
        # Exec probes use asyncio subprocesses; the default watcher of 3.11 costs a thread
        # per child, a pidfd watcher costs none.
        with contextlib.suppress(Exception):
            watcher = asyncio.PidfdChildWatcher()
            watcher.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(watcher)
    kube = await Kube.from_kubeconfig(cfg.kubeconfig)
    kubelet = Kubelet(cfg, kube)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    main = loop.create_task(kubelet.run())
    stop_wait = loop.create_task(stopping.wait())
    try:
        await asyncio.wait([main, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if main.done() and main.exception() is not None:
            raise main.exception()  # type: ignore[misc]
    finally:
        main.cancel()
        stop_wait.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await main
        await kubelet.shutdown()
        await kube.close()
    return 0
