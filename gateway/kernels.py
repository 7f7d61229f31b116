"""Kernel lifecycle as seen from one replica: start, hydrate, interrupt, restart, delete.

This replica keeps no state another replica lacks: every kernel is a KernelSession, and a
kernel id this replica has not seen is hydrated from its session and key Secret on first use.

Every public method takes the caller's Identity: a kernel whose owner (`spec.username`) is
not the caller's, and the caller no admin, is answered exactly as a kernel that does not
exist, so its existence does not leak. The check reads the session (cache, else the API
server), so it holds on a replica that has never seen the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, NoReturn

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway import limits
from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.gateway.connection import KernelConnection
from kernelkeeper.gateway.errors import GatewayError, KernelUnavailable, not_found
from kernelkeeper.gateway.identity import Identity
from kernelkeeper.gateway.metrics import Metrics
from kernelkeeper.gateway.model import kernel_model, phase
from kernelkeeper.gateway.store import SessionStore
from kernelkeeper.gateway.validation import StartRequest, validate_start
from kernelkeeper.kernel.specs import SpecCatalog
from kernelkeeper.kube.client import ApiError

log = logging.getLogger(__name__)


def _settled(obj: crd.KernelSession | None) -> bool:
    return obj is None or phase(obj).ready or phase(obj).failed


class KernelManager:
    def __init__(self, cfg: GatewayConfig, store: SessionStore, specs: SpecCatalog,
                 metrics: Metrics) -> None:
        self.cfg = cfg
        self.store = store
        self.specs = specs
        self.metrics = metrics
        self.context = limits.kernel_context(limits.raise_open_files_limit())
        # The activity reporter reads this mapping (app.py): it must stay this one dict.
        self.conns: dict[str, KernelConnection] = {}
        self._hydrating: dict[str, asyncio.Future[KernelConnection]] = {}
        store.add_listener(self._on_event)

    @property
    def launch_timeout(self) -> float:
        return self.cfg.launch_timeout

    def launch_timeout_for(self, obj: crd.KernelSession | None) -> float:
        """The client's KERNEL_LAUNCH_TIMEOUT recorded in the session (jupyter_server sends
        its request timeout minus a pad), else the configured one."""
        spec = obj.get("spec") if obj is not None else None
        raw = ((spec or {}).get("env") or {}).get("KERNEL_LAUNCH_TIMEOUT")
        try:
            value = float(raw) if raw else self.cfg.launch_timeout
        except ValueError:
            value = self.cfg.launch_timeout
        return min(max(value, 1.0), self.cfg.max_launch_timeout)

    # ------------------------------------------------------------------ lookups

    async def session(self, who: Identity, kernel_id: str) -> crd.KernelSession:
        """The live session, or 404 (unknown, not the caller's, deleted, or failed: with the
        reason)."""
        obj = await self._existing(who, kernel_id)
        return self._live(obj)

    def _live(self, obj: crd.KernelSession) -> crd.KernelSession:
        kernel_id = obj["metadata"]["name"]
        ph = phase(obj)
        if ph.failed:
            raise not_found(kernel_id, f"Kernel {kernel_id} is dead ({ph.reason}: {ph.message})")
        return obj

    def model(self, obj: crd.KernelSession) -> dict[str, Any]:
        conn = self.conns.get(obj["metadata"]["name"])
        local = None
        if conn is not None:
            local = conn.activity
            local.connections = conn.connection_count()
        return kernel_model(obj, local=local, replica_id=self.cfg.replica_id,
                            stale_after=self.cfg.replica_stale_after)

    async def get_model(self, who: Identity, kernel_id: str) -> dict[str, Any]:
        return self.model(await self.session(who, kernel_id))

    async def list_models(self, who: Identity) -> list[dict[str, Any]]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.store.synced.wait(), 10)
        return [self.model(o) for o in list(self.store.cache.values())
                if not phase(o).failed and who.may_use(crd.owner(o))]

    async def connection_for(self, who: Identity, kernel_id: str) -> KernelConnection:
        """connection(), for a caller who must own the kernel."""
        await self.session(who, kernel_id)
        return await self.connection(kernel_id)

    # ------------------------------------------------------------------ hydration

    async def connection(self, kernel_id: str, timeout: float | None = None) -> KernelConnection:
        """This replica's connection to the kernel, hydrated from its session on first use.

        A starting (or restarting) session is waited for up to the launch timeout.
        """
        conn = self.conns.get(kernel_id)
        if conn is not None and not conn.dead_reason:
            return conn
        pending = self._hydrating.get(kernel_id)
        if pending is None:
            pending = asyncio.ensure_future(self._hydrate(
                kernel_id, timeout or self.launch_timeout_for(self.store.cache.get(kernel_id))))
            self._hydrating[kernel_id] = pending
            pending.add_done_callback(lambda _f: self._hydrating.pop(kernel_id, None))
        return await asyncio.shield(pending)

    async def _hydrate(self, kernel_id: str, timeout: float) -> KernelConnection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        obj = self._live(await self._lookup(kernel_id))
        if not phase(obj).ready:
            settled = await self.store.wait(kernel_id, _settled, timeout)
            if settled is None:
                raise not_found(kernel_id)
            obj = settled
            ph = phase(obj)
            if ph.failed:
                raise not_found(kernel_id, f"Kernel {kernel_id} is dead ({ph.reason}: {ph.message})")
            if not ph.ready:
                self.metrics.inc("hydrations_total", result="timeout")
                raise GatewayError(503, "Service Unavailable",
                                   f"Kernel {kernel_id} is not ready after {timeout:.0f}s "
                                   f"({ph.reason}: {ph.message})")
        key, curve_public = await self.store.read_keys(obj)
        conn = KernelConnection(kernel_id, crd.connection_info(
            obj["status"], key, curve_public=curve_public), self.context)
        conn.restarts_seen = int((obj.get("status") or {}).get("restarts") or 0)
        activity = (obj.get("status") or {}).get("activity") or {}
        conn.activity.execution_state = activity.get("executionState") or ""
        try:
            await conn.ensure_alive(max(1.0, deadline - loop.time()))
        except KernelUnavailable as exc:
            conn.close()
            self.metrics.inc("hydrations_total", result="unavailable")
            await self.raise_for_unavailable(kernel_id, str(exc))
        if conn.activity.execution_state in ("", "starting", "restarting"):
            conn.activity.execution_state = "idle"  # it just answered kernel_info
        stale = self.conns.get(kernel_id)
        if stale is not None:
            stale.close()
        self.conns[kernel_id] = conn
        self.metrics.inc("hydrations_total", result="ok")
        log.info("kernel %s: hydrated (%s)", kernel_id, conn.info["ip"])
        return conn

    async def raise_for_unavailable(self, kernel_id: str, why: str) -> NoReturn:
        """A kernel that does not answer: 404 if its session is gone or failed, else 503.
        (Callers have checked the owner already.)"""
        self._live(await self._lookup(kernel_id))
        raise GatewayError(503, "Service Unavailable", f"Kernel {kernel_id} is not responding: {why}")

    def _on_event(self, etype: str, obj: crd.KernelSession) -> None:
        kernel_id = obj["metadata"]["name"]
        conn = self.conns.get(kernel_id)
        if conn is None:
            return
        if etype == "DELETED":
            self._drop(kernel_id, "the kernel session was deleted")
            return
        ph = phase(obj)
        if ph.failed:
            self._drop(kernel_id, f"{ph.reason}: {ph.message}")
            return
        status = obj.get("status") or {}
        restarts = int(status.get("restarts") or 0)
        bumped = conn.restarts_seen is not None and restarts > conn.restarts_seen
        conn.restarts_seen = max(restarts, conn.restarts_seen or 0)
        expected = time.monotonic() < conn.restart_expected_until
        if bumped and expected:
            conn.restart_expected_until = 0.0
        elif (bumped or ph.name == "restarting") and not expected and not conn.restarting:
            # The kernel restarted on its own (crash, lost Pod) or through another replica.
            conn.restarting = True
            conn.broadcast_status("restarting")
        elif ph.ready and not bumped:
            conn.restarting = False
        if ph.ready:
            info = crd.connection_info(status, conn.info["key"])
            if any(info[k] != conn.info.get(k) for k in info if k != "key"):
                conn.retarget(info)

    def _drop(self, kernel_id: str, reason: str) -> None:
        conn = self.conns.pop(kernel_id, None)
        if conn is None:
            return
        log.info("kernel %s: gone (%s)", kernel_id, reason)
        conn.mark_dead(reason)
        conn.close()

    # ------------------------------------------------------------------ actions

    def _check_limits(self, req: StartRequest) -> None:
        live = [o for o in self.store.cache.values() if not phase(o).failed]
        if self.cfg.max_kernels and len(live) >= self.cfg.max_kernels:
            raise GatewayError(403, "Resource Limit",
                               f"the maximum number of kernels ({self.cfg.max_kernels}) is running")
        if self.cfg.max_kernels_per_user:
            mine = [o for o in live if (o.get("spec") or {}).get("username") == req.username]
            if len(mine) >= self.cfg.max_kernels_per_user:
                raise GatewayError(403, "Resource Limit",
                                   f"user {req.username or '(anonymous)'} already runs "
                                   f"{len(mine)} kernels (limit {self.cfg.max_kernels_per_user})")

    async def start(self, who: Identity, body: Any) -> dict[str, Any]:
        req = validate_start(body, await self.specs.get(), self.cfg, who)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.store.synced.wait(), 10)
        self._check_limits(req)
        kernel_id = crd.new_kernel_id()
        manifest = crd.kernel_session(kernel_id, namespace=self.cfg.namespace,
                                      kernel_spec=req.kernel_spec, username=req.username,
                                      env=req.env)
        started = time.monotonic()
        try:
            await self.store.create(manifest)
        except ApiError as exc:
            self.metrics.inc("kernel_starts_total", result="rejected")
            message = exc.message
            if exc.status in (400, 422):
                raise GatewayError(400, "Bad Request", message) from None
            raise GatewayError(503 if (exc.status or 500) >= 500 else exc.status,
                               "Kernel Launch Failed", message) from None
        log.info("kernel %s: created (%s, user %r)", kernel_id, req.kernel_spec, req.username)
        obj = await self.store.wait(kernel_id, _settled, req.launch_timeout)
        try:
            if obj is None:
                raise GatewayError(500, "Kernel Launch Failed",
                                   f"Kernel {kernel_id} was deleted while starting")
            ph = phase(obj)
            if ph.failed:
                code = 400 if ph.reason in (crd.REASON_UNKNOWN_SPEC, crd.REASON_INVALID_ENV) else 500
                raise GatewayError(code, "Kernel Launch Failed", f"{ph.reason}: {ph.message}")
            if not ph.ready:
                raise GatewayError(500, "Kernel Launch Timeout",
                                   f"Kernel {kernel_id} was not ready after "
                                   f"{req.launch_timeout:.0f}s ({ph.reason}: {ph.message})")
            remaining = req.launch_timeout - (time.monotonic() - started)
            await self.connection(kernel_id, timeout=max(5.0, remaining))
        except GatewayError:
            self.metrics.inc("kernel_starts_total", result="failed")
            with contextlib.suppress(Exception):
                await self.store.delete(kernel_id)
            raise
        self.metrics.inc("kernel_starts_total", result="ok")
        self.metrics.observe_start(time.monotonic() - started)
        return self.model(self.store.cache.get(kernel_id) or obj)

    async def interrupt(self, who: Identity, kernel_id: str) -> None:
        conn = await self.connection_for(who, kernel_id)
        try:
            await conn.request("control", "interrupt_request", {}, self.cfg.kernel_request_timeout)
        except (TimeoutError, KernelUnavailable) as exc:
            await self.raise_for_unavailable(kernel_id, f"no interrupt_reply ({exc or 'timeout'})")

    async def restart(self, who: Identity, kernel_id: str) -> dict[str, Any]:
        """shutdown_request(restart=True) on control; the in-pod launcher restarts ipykernel in
        place. Answer once a *new* kernel process answers kernel_info, all within the launch
        timeout (jupyter_server gives up on the request 2 s after it)."""
        started = time.monotonic()
        budget = self.launch_timeout_for(self.store.cache.get(kernel_id))
        conn = await self.connection_for(who, kernel_id)
        try:
            await conn.ensure_alive(self.cfg.kernel_request_timeout)
        except KernelUnavailable as exc:
            await self.raise_for_unavailable(kernel_id, str(exc))
        old_session = conn.kernel_session
        conn.restarting = True
        conn.restart_expected_until = time.monotonic() + budget + 60
        conn.broadcast_status("restarting")
        conn.expect_new_kernel()
        with contextlib.suppress(TimeoutError, KernelUnavailable):
            await conn.request("control", "shutdown_request", {"restart": True},
                               min(5.0, self.cfg.kernel_request_timeout))
        remaining = budget - (time.monotonic() - started)
        try:
            await conn.ensure_alive(max(5.0, remaining), not_session=old_session)
        except KernelUnavailable as exc:
            await self.raise_for_unavailable(kernel_id, f"restart did not complete: {exc}")
        conn.restarting = False
        conn.activity.execution_state = "idle"
        conn.touch()
        return self.model(await self.session(who, kernel_id))

    async def delete(self, who: Identity, kernel_id: str) -> None:
        """Ask the kernel to shut down, then delete its session. Safe to repeat."""
        obj = await self._existing(who, kernel_id)
        conn = self.conns.get(kernel_id)
        quick = min(self.cfg.kernel_request_timeout, 5.0)
        if conn is None and phase(obj).ready:
            # Shutting down politely needs a connection; a kernel that cannot be reached in
            # a few seconds is deleted all the same.
            with contextlib.suppress(Exception):
                conn = await self.connection(kernel_id, timeout=quick)
        if conn is not None and not conn.dead_reason:
            with contextlib.suppress(TimeoutError, KernelUnavailable):
                await conn.request("control", "shutdown_request", {"restart": False}, quick)
        if not await self.store.delete(kernel_id):
            raise not_found(kernel_id)
        self._drop(kernel_id, "shut down by request")

    async def _existing(self, who: Identity, kernel_id: str) -> crd.KernelSession:
        """Like session(), but a failed or terminating session can still be deleted."""
        obj = await self._lookup(kernel_id)
        if not who.may_use(crd.owner(obj)):
            self.metrics.inc("ownership_refusals_total")
            raise not_found(kernel_id)
        return obj

    async def _lookup(self, kernel_id: str) -> crd.KernelSession:
        if not crd.is_kernel_id(kernel_id):
            raise not_found(kernel_id)
        obj = await self.store.get(kernel_id)
        if obj is None:
            raise not_found(kernel_id)
        return obj

    # ------------------------------------------------------------------ end

    def close(self) -> None:
        """Drop every ZMQ socket of this replica; kernels keep running."""
        for conn in list(self.conns.values()):
            conn.close()
        self.conns.clear()
        self.context.destroy(linger=0)
