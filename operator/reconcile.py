"""Level-based reconciliation of one KernelSession: Secret, Pod, status, culling.

Every trigger (a KernelSession event, a kernel Pod event, the periodic resync) ends in
``reconcile(namespace, name)``, which reads the current state from the API server and
converges it. A per-session lock keeps two triggers from acting on one session at once.
Nothing here keeps state that a restarted operator would need: pods are found by label and
their incarnation and restart base live in the Pod's annotations, so a new leader adopts
running kernels as they are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel.specs import KernelSpec, SpecCatalog
from kernelkeeper.kube.client import ApiError, Kube, NotLeader
from kernelkeeper.kube.paths import core_path
from kernelkeeper.operator import render
from kernelkeeper.operator.culling import REASON_CULL_POSTPONED, CullDecision, cull_decision
from kernelkeeper.operator.events import EventRecorder
from kernelkeeper.operator.launcher_status import LauncherStatusReader
from kernelkeeper.operator.metrics import OperatorMetrics
from kernelkeeper.operator.pods import PodView, loss_reason, view
from kernelkeeper.operator.settings import OperatorConfig
from kernelkeeper.operator.status import (
    Readiness,
    desired_status,
    ks_path,
    ready_condition,
    write_status,
)

log = logging.getLogger(__name__)


class Reconciler:
    PARALLEL = 8  # sessions handled at once by the periodic rounds

    def __init__(self, cfg: OperatorConfig, kube: Kube, *, events: EventRecorder | None = None,
                 launcher: LauncherStatusReader | None = None,
                 specs: SpecCatalog | None = None,
                 metrics: OperatorMetrics | None = None) -> None:
        self.cfg = cfg
        self.kube = kube
        self.events = events or EventRecorder(kube, cfg.identity)
        self.launcher = launcher or LauncherStatusReader(cfg.health_timeout)
        self.specs = specs or SpecCatalog(cfg.kernelspec_dirs)
        self.metrics = metrics or OperatorMetrics()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # busySince of the busy stretch each session's CullPostponed event was posted for,
        # so that a long computation gets one event, not one per culling round.
        self._postponed: dict[tuple[str, str], str] = {}

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def forget(self, namespace: str, name: str) -> None:
        self.metrics.set_owned(namespace, name, 0)
        self._postponed.pop((namespace, name), None)
        lock = self._locks.get((namespace, name))
        if lock is not None and not lock.locked():
            self._locks.pop((namespace, name), None)

    async def close(self) -> None:
        await self.launcher.close()

    # ------------------------------------------------------------------ entry points

    async def reconcile(self, namespace: str, name: str) -> None:
        if not crd.is_kernel_id(name):
            return
        try:
            result = await self._reconcile_locked(namespace, name)
        except Exception as exc:
            self.metrics.reconcile_failed(exc)
            raise
        self.metrics.reconciled(result)

    async def _reconcile_locked(self, namespace: str, name: str) -> str:
        """"ok", or "conflict" when every attempt lost a race."""
        async with self._lock(namespace, name):
            for _attempt in range(4):
                ks = await self._session(namespace, name)
                if ks is None or ks["metadata"].get("deletionTimestamp"):
                    self.forget(namespace, name)
                    return "ok"
                try:
                    await self._reconcile(ks)
                    return "ok"
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                    log.debug("conflict on %s/%s, retrying with a fresh read", namespace, name)
            log.info("%s/%s: still conflicting after retries; the next trigger will converge",
                     namespace, name)
            return "conflict"

    async def list_sessions(self) -> list[crd.KernelSession]:
        paths = ([ks_path(ns, "").rstrip("/") for ns in self.cfg.namespaces]
                 if self.cfg.namespaces else
                 [f"/apis/{crd.GROUP}/{crd.VERSION}/{crd.PLURAL}"])
        items: list[crd.KernelSession] = []
        for path in paths:
            items += [crd.as_session(o)
                      for o in (await self.kube.request("GET", path)).get("items") or []]
        return items

    async def _session(self, namespace: str, name: str) -> crd.KernelSession | None:
        raw = await self.kube.get(ks_path(namespace, name))
        return None if raw is None else crd.as_session(raw)

    async def _each(self, what: str, fn: Callable[[str, str], Awaitable[bool | None]],
                    sessions: list[crd.KernelSession] | None = None) -> list[str]:
        """Run `fn` for every session (default: listed now), a few at a time; names for which
        it returned True."""
        gate = asyncio.Semaphore(self.PARALLEL)

        async def one(ns: str, name: str) -> bool:
            async with gate:
                try:
                    return bool(await fn(ns, name))
                except NotLeader:
                    raise
                except Exception as exc:  # one broken session must not stop the round
                    log.warning("%s of %s/%s failed: %s", what, ns, name, exc)
                    return False

        if sessions is None:
            sessions = await self.list_sessions()
        metas = [ks["metadata"] for ks in sessions]
        done = await asyncio.gather(*(one(m["namespace"], m["name"]) for m in metas))
        return [m["name"] for m, hit in zip(metas, done, strict=True) if hit]

    async def resync(self) -> None:
        """Reconcile every session once (picks up in-place restarts and missed events)."""
        sessions = await self.list_sessions()
        self.metrics.retain_owned((ks["metadata"]["namespace"], ks["metadata"]["name"])
                                  for ks in sessions)
        await self._each("resync", self.reconcile, sessions)

    async def cull(self, now: dt.datetime | None = None) -> list[str]:
        """Cull every idle session; returns the culled names."""
        return await self._each("culling check", lambda ns, name: self.cull_one(ns, name, now))

    async def cull_one(self, namespace: str, name: str, now: dt.datetime | None = None) -> bool:
        async with self._lock(namespace, name):
            ks = await self._session(namespace, name)
            if ks is None or ks["metadata"].get("deletionTimestamp"):
                return False
            now = now or dt.datetime.now(dt.UTC)
            decision = self._cull_decision(ks, now)
            if decision.cull:
                decision = await self._recheck_with_launcher(ks, now, decision)
            if not decision.cull:
                return False
            message = (f"kernel culled after {decision.idle_seconds:.0f}s without activity "
                       f"(idle timeout {decision.timeout}s); {decision.why}")
            desired = desired_status(ks, Readiness(False, crd.REASON_CULLED, message),
                                     culledAt=crd.format_time())
            try:
                await write_status(self.kube, ks, desired)
                fresh = await self.kube.get(ks_path(namespace, name))
                if fresh is None:
                    return False
                # The resourceVersion precondition makes any activity report that raced in
                # since our decision cancel the deletion; the next round decides again.
                await self.kube.delete(ks_path(namespace, name), preconditions={
                    "uid": fresh["metadata"]["uid"],
                    "resourceVersion": fresh["metadata"]["resourceVersion"]})
            except ApiError as exc:
                if exc.status == 409:
                    log.info("%s/%s: activity changed while culling; not culled", namespace, name)
                    return False
                raise
            self.metrics.culled()
            self._postponed.pop((namespace, name), None)
            await self.events.post(ks, crd.REASON_CULLED, message)
            return True

    def _cull_decision(self, ks: crd.KernelSession, now: dt.datetime,
                       launcher: Mapping[str, Any] | None = None) -> CullDecision:
        return cull_decision(ks, now, default_timeout=self.cfg.idle_timeout,
                             staleness=self.cfg.activity_staleness, cull_busy=self.cfg.cull_busy,
                             cull_connected=self.cfg.cull_connected, launcher=launcher)

    async def _recheck_with_launcher(self, ks: crd.KernelSession, now: dt.datetime,
                                     decision: CullDecision) -> CullDecision:
        """The gateways' reports say cull; ask the kernel's launcher too, which sees a long
        silent computation no client watches. Only such candidates are asked: one GET each."""
        meta = ks["metadata"]
        ip = (ks.get("status") or {}).get("podIP")
        launcher = await self.launcher.read(ip) if ip else None
        if launcher is None:  # unreachable: the reports alone decide, as they always could
            return decision
        if launcher.get("kernelId") != meta["name"]:
            # A stale podIP now used by another kernel's Pod: its state says nothing of ours.
            return decision
        final = self._cull_decision(ks, now, launcher)
        kept_busy = not final.cull and launcher.get("executionState") == "busy" \
            and not self.cfg.cull_busy
        if not kept_busy:
            if not final.cull:  # its lastActivity is recent: as quiet as any unexpired timeout
                log.debug("%s/%s: not culled: %s", meta["namespace"], meta["name"], final.why)
            return final
        key, since = (meta["namespace"], meta["name"]), str(launcher.get("busySince") or "")
        if self._postponed.get(key) != since:
            self._postponed[key] = since
            await self.events.post(ks, REASON_CULL_POSTPONED, (
                f"not culled after {decision.idle_seconds:.0f}s without reported activity "
                f"(idle timeout {decision.timeout}s): {final.why}"
                + (f" since {since}" if since else "")))
        return final

    # ------------------------------------------------------------------ one session

    async def _reconcile(self, ks: crd.KernelSession) -> None:
        meta, spec = ks["metadata"], ks.get("spec") or {}
        secret = await self._secret_state(ks)
        if secret == "foreign":
            await self._write(ks, Readiness(False, crd.REASON_FAILED, (
                f"Secret {crd.key_secret_name(meta['name'])} exists but does not belong to this "
                "session; delete it or the session")))
            return
        raw_pods = await self._pods(ks)
        pods = sorted((view(p) for p in raw_pods), key=lambda p: p.incarnation)
        live = [p for p in pods if p.live]
        why = None
        if secret == "missing" and live:
            # A new key means running kernels can no longer be reached: replace them.
            for pod in live:
                await self._delete_pod(ks, pod)
            live, why = [], "its key Secret was deleted, so clients could no longer reach it"
        for extra in live[:-1]:
            await self._delete_pod(ks, extra)
        self.metrics.set_owned(meta["namespace"], meta["name"], 1 if live else 0)
        if live:
            # A running kernel is left alone even if its kernel spec has gone from disk since.
            await self._observe(ks, live[-1])
            return
        latest = pods[-1] if pods else None
        if latest is not None and latest.phase == "Succeeded" and not latest.deleting:
            await self.events.post(ks, "KernelShutdown",
                                   "the kernel was shut down by a client; deleting the session")
            await self.kube.delete(ks_path(meta["namespace"], meta["name"]),
                                   preconditions={"uid": meta["uid"]})
            return
        # A new Pod is needed: only now do the kernel spec and env have to be valid.
        specs = await self.specs.get()
        kspec = specs.get(str(spec.get("kernelSpec") or ""))
        if kspec is None:
            known = ", ".join(sorted(specs)) or "none"
            await self._write(ks, Readiness(False, crd.REASON_UNKNOWN_SPEC, (
                f"kernel spec {spec.get('kernelSpec')!r} is not known to the operator "
                f"(known: {known}); create the session with one of those")))
            return
        try:
            user_env = render.check_env(spec.get("env"), self.cfg.env_allow)
        except render.InvalidEnv as exc:
            await self._write(ks, Readiness(False, crd.REASON_INVALID_ENV, str(exc)))
            return
        if secret == "missing":
            # A 409 (created concurrently) propagates: reconcile() retries with a fresh view.
            curve = render.new_curve_keys() if render.wants_curve(kspec, self.cfg) else None
            await self.kube.create(core_path(meta["namespace"], "secrets"),
                                   render.render_secret(ks, render.new_key(), curve))
        raw_latest = next((p for p in raw_pods if latest and p["metadata"]["name"] == latest.name),
                          None)
        old_name = latest.name if latest else None
        await self._replace(ks, kspec, user_env, pods, old_name,
                            why or loss_reason(latest, raw_latest))

    async def _secret_state(self, ks: crd.KernelSession) -> str:
        """"ok", "missing", or "foreign" (a Secret of that name that is not ours)."""
        meta = ks["metadata"]
        path = core_path(meta["namespace"], "secrets", crd.key_secret_name(meta["name"]))
        secret = await self.kube.get(path)
        if secret is None:
            return "missing"
        owners = secret["metadata"].get("ownerReferences") or []
        return "ok" if any(o.get("uid") == meta["uid"] for o in owners) else "foreign"

    async def _pods(self, ks: crd.KernelSession) -> list[dict[str, Any]]:
        meta = ks["metadata"]
        result = await self.kube.request(
            "GET", core_path(meta["namespace"], "pods"),
            query={"labelSelector": f"{crd.LABEL_KERNEL_ID}={meta['name']},"
                                    f"{crd.LABEL_COMPONENT}={render.COMPONENT_KERNEL}"})
        return [p for p in result.get("items") or []
                if any(o.get("uid") == meta["uid"]
                       for o in p["metadata"].get("ownerReferences") or [])]

    async def _delete_pod(self, ks: crd.KernelSession, pod: PodView) -> None:
        await self.kube.delete(core_path(ks["metadata"]["namespace"], "pods", pod.name),
                               preconditions={"uid": pod.uid})

    async def _replace(self, ks: crd.KernelSession, kspec: KernelSpec, user_env: dict[str, str],
                       pods: list[PodView], old_name: str | None, why: str) -> None:
        meta, status = ks["metadata"], ks.get("status") or {}
        kid = meta["name"]
        seen = [p.incarnation for p in pods]
        from_status = render.incarnation_of(status.get("podName"), kid)
        if from_status is not None:
            seen.append(from_status)
        restarts = int(status.get("restarts") or 0)
        if not seen:
            incarnation, base = 0, restarts
            new_name = render.pod_name(kid, incarnation)
            readiness = Readiness(False, crd.REASON_STARTING, f"creating kernel pod {new_name}")
        else:
            incarnation, base = max(seen) + 1, restarts + 1
            new_name = render.pod_name(kid, incarnation)
            old_name = old_name or status.get("podName")
            if incarnation > self.cfg.max_pod_restarts:
                await self._write(ks, Readiness(False, crd.REASON_FAILED, (
                    f"kernel pod {old_name} was lost ({why}) and the kernel has been replaced "
                    f"{incarnation - 1} times already (limit {self.cfg.max_pod_restarts}); "
                    "delete this session and start a new kernel")))
                return
            readiness = Readiness(False, crd.REASON_POD_LOST,
                                  f"kernel pod {old_name} was lost ({why}); starting {new_name}")
        pod = render.render_pod(ks, kspec, self.cfg, user_env=user_env,
                                incarnation=incarnation, restarts_base=base)
        try:
            await self.kube.create(core_path(meta["namespace"], "pods"), pod)
            log.info("%s/%s: created pod %s", meta["namespace"], kid, new_name)
            self.metrics.kernel_started("new" if incarnation == 0 else "replacement")
        except ApiError as exc:
            if exc.namespace_terminating:
                # The namespace's deletion takes the session with it; nothing to replace.
                log.info("%s/%s: namespace is being deleted; not starting %s",
                         meta["namespace"], kid, new_name)
                return
            if exc.status != 409:
                raise
        self.metrics.set_owned(meta["namespace"], kid, 1)
        # Finished pods hold nothing worth keeping once their replacement exists.
        for old in pods:
            if old.phase == "Failed" and not old.deleting:
                await self._delete_pod(ks, old)
        await self._write(ks, readiness, podName=new_name, podIP=None, connection=None,
                          restarts=base, culledAt=None)

    async def _observe(self, ks: crd.KernelSession, pod: PodView) -> None:
        status = ks.get("status") or {}
        restarts = int(status.get("restarts") or 0)
        base = pod.restarts_base if pod.restarts_base is not None else restarts
        launcher = None
        if pod.ip and pod.phase == "Running":
            launcher = await self.launcher.read(pod.ip)
        restarts = max(restarts, base + int((launcher or {}).get("restarts") or 0))
        ready = pod.ready and (launcher is None or bool(launcher.get("ready")))
        if pod.unschedulable:
            hint = ("lower the requested resources (spec.resources or the kernel spec's) or "
                    "add capacity" if "Insufficient" in pod.unschedulable else
                    "check the kernel spec's nodeSelector and tolerations, or add nodes")
            readiness = Readiness(False, crd.REASON_UNSCHEDULABLE, (
                f"kernel pod {pod.name} cannot be scheduled: {pod.unschedulable.rstrip('.')}; "
                f"{hint}"))
        elif pod.image_error:
            readiness = Readiness(False, crd.REASON_IMAGE_ERROR, (
                f"kernel pod {pod.name} cannot start its image: {pod.image_error}; import or "
                "push the image, or fix the kernel spec's image"))
        elif ready:
            readiness = Readiness(True, crd.REASON_RUNNING,
                                  f"kernel is running in pod {pod.name} at {pod.ip}")
        elif pod.phase == "Running" and launcher and (launcher.get("restarts") or 0) > 0 \
                and launcher.get("state") != "ready":
            last = launcher.get("lastRestart") or {}
            readiness = Readiness(False, crd.REASON_RESTARTING, (
                f"kernel is restarting in place in pod {pod.name} "
                f"({last.get('reason', 'unknown')}: {last.get('detail', '')})"))
        elif pod.phase == "Running" and launcher and launcher.get("state") == "unresponsive":
            readiness = Readiness(False, crd.REASON_RESTARTING,
                                  f"kernel in pod {pod.name} stopped answering its heartbeat")
        elif pod.phase == "Running" and launcher and launcher.get("ready"):
            readiness = Readiness(False, crd.REASON_STARTING, (
                f"kernel in pod {pod.name} answers; waiting for the pod to be Ready "
                "(readiness probe, or the node is not Ready)"))
        else:
            detail = pod.waiting or ("waiting for the kernel to answer"
                                     if pod.phase == "Running" else f"pod is {pod.phase}")
            readiness = Readiness(False, crd.REASON_STARTING,
                                  f"kernel pod {pod.name} is starting: {detail}")
        conn = crd.connection_status(pod.ip, crd.DEFAULT_PORTS) if pod.ip else None
        was_status, was_reason = ready_condition(ks)
        written = await self._write(ks, readiness, podName=pod.name, podIP=pod.ip,
                                    connection=conn, restarts=restarts, culledAt=None,
                                    _launcher=launcher)
        if written and readiness.ready and was_status != "True" \
                and was_reason != crd.REASON_RESTARTING:
            # A new Pod's kernel came up (an in-place restart is not a start). A first Pod
            # is timed from the session's creation, which is what a client waited for; a
            # replacement from the Pod's. Both stamps have whole seconds.
            began = crd.parse_time(ks["metadata"].get("creationTimestamp")
                                   if pod.incarnation == 0 else pod.created)
            if began is not None:
                self.metrics.kernel_ready(
                    max(0.0, (dt.datetime.now(dt.UTC) - began).total_seconds()))

    async def _write(self, ks: crd.KernelSession, readiness: Readiness, *,
                     _launcher: Mapping[str, Any] | None = None, **fields: Any) -> bool:
        """Write the status if it changed (and post Events); whether it was written."""
        old_status, old_reason = ready_condition(ks)
        old_restarts = int((ks.get("status") or {}).get("restarts") or 0)
        desired = desired_status(ks, readiness, **fields)
        if not await write_status(self.kube, ks, desired):
            return False
        new_status = "True" if readiness.ready else "False"
        if (old_status, old_reason) != (new_status, readiness.reason):
            quiet = readiness.ready or readiness.reason == crd.REASON_STARTING
            await self.events.post(ks, readiness.reason, readiness.message, warning=not quiet)
        if desired["restarts"] > old_restarts and readiness.reason != crd.REASON_POD_LOST:
            last = (_launcher or {}).get("lastRestart") or {}
            await self.events.post(ks, "KernelRestarted", (
                f"kernel restarted in place ({last.get('reason', 'unknown')}: "
                f"{last.get('detail', '')}); restarts={desired['restarts']}"))
        return True
