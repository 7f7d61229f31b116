"""One pod's life on the node: IP, volumes, init containers, containers, deletion.

A PodWorker is an asyncio task (never a thread) that owns the pod's runners. The watch feeds
it the latest Pod object through ``update()``; ``gone()`` tells it the API no longer has the
pod. It always ends by killing what runs (unless the node itself is shutting down), deleting
the Pod object with a uid precondition when it was asked to terminate, and forgetting the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernelkeeper.local.node import procs, volumes
from kernelkeeper.local.node.container import ContainerRunner
from kernelkeeper.local.node.envvars import ConfigError, SpecError
from kernelkeeper.local.node.events import now_rfc3339
from kernelkeeper.local.node.kube import KubeError
from kernelkeeper.local.node.podstatus import owned
from kernelkeeper.local.node.state import ContainerRecord, PodRecord

if TYPE_CHECKING:
    from kernelkeeper.local.node.kubelet import Kubelet

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed")
GONE_GRACE = 2.0


class PodWorker:
    def __init__(self, node: Kubelet, pod: dict[str, Any], record: PodRecord | None) -> None:
        self.node = node
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.name: str = meta["name"]
        self.namespace: str = meta["namespace"]
        self.fresh = record is None
        self.record = record or PodRecord(uid=self.uid, namespace=self.namespace, name=self.name)
        self.runners: dict[str, ContainerRunner] = {}
        self.init_runners: dict[str, ContainerRunner] = {}
        self.failure: tuple[str, str] | None = None
        self.volumes = volumes.Volumes()
        self.condition_times: dict[str, tuple[str, str]] = {}
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") and c.get("lastTransitionTime"):
                self.condition_times[c["type"]] = (c.get("status", ""), c["lastTransitionTime"])
        status = pod.get("status") or {}
        self.last_status: dict[str, Any] | None = owned(status) if not self.fresh else None
        self.done = False  # the worker has finished and forgotten the pod
        self.deleted = False  # the API no longer has the pod
        self.terminating = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.shutting_down = False
        self.status_lock = asyncio.Lock()
        self.frozen = False  # the API's status is final (terminal before this node saw it)

    # ----------------------------------------------------------------- properties

    @property
    def pod_dir(self) -> Path:
        return self.node.store.pod_dir(self.uid)

    @property
    def home(self) -> Path:
        return self.pod_dir / "home"

    @property
    def log_dir(self) -> Path:
        return self.node.store.log_dir(self.record)

    @property
    def ip(self) -> str:
        return self.record.ip or ""

    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy") or "Always")

    def grace_period(self, override: int | None = None) -> float:
        if override is not None:
            return float(override)
        meta = self.pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        value = self.pod["spec"].get("terminationGracePeriodSeconds")
        return float(30 if value is None else value)

    # ----------------------------------------------------------------- callbacks

    def changed(self) -> None:
        if not (self.done or self.deleted or self.shutting_down or self.frozen):
            self.node.status.mark(self)

    def save(self) -> None:
        if not self.done:
            self.node.store.save(self.record)

    def event(self, type_: str, reason: str, message: str, container: str | None = None) -> None:
        self.node.events.emit(self.pod, type_, reason, message, container)

    def note_pids(self) -> None:
        if self.record.ip:
            pids = [(r.process.pid, r.process.ticks)
                    for r in [*self.runners.values(), *self.init_runners.values()]
                    if r.process is not None and r.process.pid]
            self.node.ipam.note_pids(self.record.ip, self.uid, pids)

    def fail(self, reason: str, message: str, container: str | None = None) -> None:
        """The pod can never run as specified: Failed, with the reason on the pod and an Event."""
        if self.failure is None:
            log.warning("pod %s/%s failed: %s: %s", self.namespace, self.name, reason, message)
            self.failure = (reason, message)
            self.event("Warning", "Failed", f"Error: {message}", container)
            self.changed()

    def observe(self, pod: dict[str, Any]) -> None:
        """A newer Pod object (from the watch or a status write)."""
        if int(pod["metadata"].get("resourceVersion", 0) or 0) >= int(
                self.pod["metadata"].get("resourceVersion", 0) or 0):
            self.pod = pod

    def update(self, pod: dict[str, Any]) -> None:
        self.observe(pod)
        if self.pod["metadata"].get("deletionTimestamp"):
            self.terminating.set()
        self.changed()

    def gone(self) -> None:
        """The API no longer has this pod (deleted with grace 0, or its namespace went)."""
        self.deleted = True
        self.terminating.set()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._main(), name=f"pod-{self.uid}")

    async def _main(self) -> None:
        try:
            run = asyncio.get_running_loop().create_task(self._run())
            term = asyncio.get_running_loop().create_task(self.terminating.wait())
            try:
                await asyncio.wait([run, term], return_when=asyncio.FIRST_COMPLETED)
            finally:
                term.cancel()
            if not self.terminating.is_set():
                # Every container is final (or the pod failed): hold the pod until deletion.
                try:
                    await run
                except Exception as exc:  # noqa: BLE001 - a node bug must show on the pod
                    log.exception("pod %s/%s: node error", self.namespace, self.name)
                    self.fail("NodeError", f"the process node failed to run this pod: {exc!r}")
                self._release_ip()
                await self.terminating.wait()
            await self._terminate(run)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker %s/%s crashed", self.namespace, self.name)
            raise

    async def _run(self) -> None:
        if self.fresh and self.pod["metadata"].get("deletionTimestamp"):
            # Deleted before this node started it: nothing to run, only the final delete.
            self.frozen = True
            self._build_runners(adopt=False)
            return
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in TERMINAL and not self._has_live_process():
            # Finished before (maybe under an earlier node process): nothing left to run, and
            # its status in the API is final; this node must not rewrite it.
            self.frozen = True
            self.record.init_done = True
            self._build_runners(adopt=False)
            for r in self.runners.values():
                r.finished.set()
            return
        if not self.record.ip and not self._setup_ip():
            return
        if self.record.start_time is None:
            self.record.start_time = now_rfc3339()
        self._build_runners(adopt=True)
        self.save()  # adoption decisions (lost, final) must survive another node restart
        self.changed()
        try:
            volumes.check_supported(self.pod)
            self._check_mounts()
        except SpecError as exc:
            self.fail(exc.reason, str(exc))
            return
        if not await self._prepare_volumes():
            return
        if not self.record.init_done and not await self._run_init():
            return
        await self._run_containers()

    def _setup_ip(self) -> bool:
        if self.pod["spec"].get("hostNetwork"):
            self.record.ip = self.node.host_ip
            return True
        try:
            self.record.ip = self.node.ipam.allocate(self.uid)
        except Exception as exc:  # noqa: BLE001 - any allocator failure fails the pod clearly
            self.fail("PodIPUnavailable", str(exc))
            return False
        return True

    def _release_ip(self) -> None:
        if self.pod["spec"].get("hostNetwork"):
            return
        if self.record.ip and not self.shutting_down and not self._has_live_process():
            self.node.ipam.release(self.record.ip)

    def _has_live_process(self) -> bool:
        for c in self.record.containers.values():
            if c.pid and procs.alive(c.pid, c.ticks):
                return True
        return any(r.process is not None and r.process.alive()
                   for r in [*self.runners.values(), *self.init_runners.values()])

    def _check_mounts(self) -> None:
        needs = any(c.get("volumeMounts") for c in (self.pod["spec"].get("initContainers") or [])
                    + self.pod["spec"].get("containers", []))
        if needs and not self.node.mountns_ok:
            raise SpecError("volume mounts need a private mount namespace, which this host "
                            f"does not allow: {self.node.mountns_error}",
                            reason="MountNamespaceUnavailable")
        for c in self.pod["spec"].get("initContainers") or []:
            if c.get("restartPolicy") == "Always":
                raise SpecError(f'init container "{c["name"]}": sidecar containers '
                                "(restartPolicy: Always) are not supported by the process node",
                                reason="UnsupportedSidecar")

    def _build_runners(self, *, adopt: bool) -> None:
        for spec in self.pod["spec"].get("containers", []):
            rec = self.record.containers.setdefault(spec["name"], ContainerRecord())
            runner = ContainerRunner(self, spec, rec)
            self.runners[spec["name"]] = runner
            if rec.terminated is not None:
                runner.state = {"terminated": rec.terminated}
                runner.finished.set()
            elif adopt and rec.pid:
                if procs.alive(rec.pid, rec.ticks):
                    runner.adopt(procs.Process(rec.pid, rec.ticks))
                    runner.state = {"running": {"startedAt": rec.started_at}}
                    log.info("pod %s/%s container %s adopted (pid %s)", self.namespace,
                             self.name, spec["name"], rec.pid)
                else:
                    runner.lost()
            if adopt and rec.needs_decision and rec.terminated is None:
                self._decide_after_restart(runner)
        for spec in self.pod["spec"].get("initContainers") or []:
            rec = ContainerRecord(**self.record.init_containers.get(spec["name"], {}))
            runner = ContainerRunner(self, spec, rec, init=True)
            if self.record.init_done:
                runner.state = {"terminated": rec.terminated or {"exitCode": 0,
                                                                 "reason": "Completed"}}
            self.init_runners[spec["name"]] = runner
        if adopt:
            self.note_pids()

    def _decide_after_restart(self, runner: ContainerRunner) -> None:
        """A container ended while no node watched it: apply the restart policy now."""
        rec = runner.rec
        rec.needs_decision = False
        code = (rec.last_terminated or {}).get("exitCode", 137)
        policy = self.restart_policy
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            rec.restart_count += 1
        else:
            rec.terminated = rec.last_terminated
            runner.state = {"terminated": rec.terminated}
            runner.finished.set()

    async def _prepare_volumes(self) -> bool:
        delay = 0.0
        while True:
            try:
                self.volumes = await volumes.prepare(
                    self.pod, self.pod_dir, fetch=self.node.fetch, token=self.node.token,
                    pod_ip=self.ip, host_ip=self.node.host_ip, allocatable=self.node.allocatable)
                self.home.mkdir(parents=True, exist_ok=True)
                if self.volumes.refresh_at is not None:
                    asyncio.get_running_loop().create_task(self._refresh_tokens())
                return True
            except SpecError as exc:
                self.fail(exc.reason, str(exc))
                return False
            except (ConfigError, KubeError, OSError) as exc:
                for r in self.runners.values():
                    if "running" not in r.state:
                        r.state = {"waiting": {"reason": "CreateContainerConfigError",
                                               "message": str(exc)}}
                self.changed()
                self.event("Warning", "FailedMount", str(exc))
                delay = min(max(delay * 2, self.node.cfg.backoff_initial), self.node.cfg.backoff_max)
                await asyncio.sleep(delay)

    async def _refresh_tokens(self) -> None:
        """Renew projected service account tokens (and the files beside them) before expiry."""
        while not self.terminating.is_set() and self.volumes.refresh_at is not None:
            await asyncio.sleep(max(self.volumes.refresh_at - time.time(), 1.0))
            if self.terminating.is_set():
                return
            try:
                fresh = await volumes.prepare(
                    self.pod, self.pod_dir, fetch=self.node.fetch, token=self.node.token,
                    pod_ip=self.ip, host_ip=self.node.host_ip, allocatable=self.node.allocatable)
                self.volumes.refresh_at = fresh.refresh_at
            except (ConfigError, SpecError, KubeError, OSError) as exc:
                log.warning("refreshing volumes of %s/%s failed: %s", self.namespace, self.name,
                            exc)
                self.volumes.refresh_at = time.time() + 30

    async def _run_init(self) -> bool:
        for name, runner in self.init_runners.items():
            await runner.run()
            self.record.init_containers[name] = dict(vars(runner.rec))
            self.save()
            term = runner.rec.terminated or {}
            if self.failure is not None or term.get("exitCode") != 0:
                if self.failure is None:
                    self.fail("InitContainerFailed",
                              f'init container "{name}" exited with {term.get("exitCode")}', name)
                return False
        self.record.init_done = True
        self.save()
        self.changed()
        return True

    async def _run_containers(self) -> None:
        tasks = [asyncio.get_running_loop().create_task(r.run()) for r in self.runners.values()]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            raise
        if self.failure is not None:
            # One container can never start: stop its siblings, the pod is Failed.
            await self._stop_all(final=True)
        self.changed()

    async def _stop_all(self, *, final: bool, grace: float | None = None) -> None:
        g = self.grace_period() if grace is None else grace
        runners = [*self.init_runners.values(), *self.runners.values()]
        await asyncio.gather(*(r.stop(g, final=final) for r in runners))

    async def _terminate(self, run: asyncio.Task[None]) -> None:
        grace = min(self.grace_period(), GONE_GRACE) if self.deleted else self.grace_period()
        await self._stop_all(final=True, grace=max(grace, 0.0))
        # Let the run loops observe the exits before they are cancelled.
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(run), 2.0)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run
        if not self.deleted:
            await self._delete_object()
        self._forget()

    async def _delete_object(self) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        for attempt in range(5):
            try:
                await self.node.kube.request(
                    "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{self.name}", body=body)
                return
            except KubeError as exc:
                if exc.status in (404, 409):
                    return
                log.warning("deleting pod %s/%s failed: %s", self.namespace, self.name, exc)
            except (OSError, TimeoutError) as exc:
                log.warning("deleting pod %s/%s failed: %s", self.namespace, self.name, exc)
            await asyncio.sleep(0.5 * (attempt + 1))

    def _forget(self) -> None:
        if self.record.ip and not self.pod["spec"].get("hostNetwork"):
            self.node.ipam.release(self.record.ip)
        self.done = True
        self.node.store.remove(self.uid)
        self.node.forget(self)
        log.info("pod %s/%s removed", self.namespace, self.name)

    async def shutdown(self, *, stop_pods: bool) -> None:
        """The node is exiting: leave processes running unless asked to stop them."""
        self.shutting_down = True
        if stop_pods and self.task is not None and not self.task.done():
            # Short: `local down` gives the whole node 10 seconds before SIGKILL.
            await self._stop_all(final=False, grace=min(self.grace_period(), 5.0))
            for name, r in self.runners.items():
                self.record.containers[name] = r.rec
            self.save()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
