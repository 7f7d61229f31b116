"""Activity reporting: what this replica sees of each kernel, written to the KernelSession status.

Writes are JSON merge patches on the status subresource, at most one per kernel per
`activity_interval`: status.activity.replicas.<replicaId> (connections, executionState,
lastActivity, heartbeat) and the session-wide lastActivity/executionState. While this
replica has connections to a kernel, its heartbeat is re-written at least every
`heartbeat_interval`, so the operator's culler (which ignores stale replicas) sees it alive.
Entries of other replicas whose heartbeat is long dead are pruned so the map stays small.

The reporter reads this replica's kernel connections (a live mapping it never changes) and
finds what changed by comparing them with what it last wrote, so nothing has to tell it about
activity: it depends on no manager, and no manager depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.gateway.metrics import Metrics
from kernelkeeper.gateway.model import LocalActivity, utcnow
from kernelkeeper.gateway.store import SessionStore

log = logging.getLogger(__name__)


class ObservedKernel(Protocol):
    """What the reporter reads of one kernel connection (a connection.KernelConnection)."""

    activity: LocalActivity

    def connection_count(self) -> int: ...


@dataclass
class _Track:
    source: ObservedKernel  # a replacement connection gets a track of its own
    seen: dt.datetime | None = None  # the last_activity written (or being written)
    dirty: bool = False
    last_write: float = float("-inf")
    connections: int = 0


class ActivityReporter:
    def __init__(self, cfg: GatewayConfig, store: SessionStore, metrics: Metrics, *,
                 kernels: Mapping[str, ObservedKernel], serving: Callable[[], bool]) -> None:
        """`kernels`: this replica's connections by kernel id, read live at every flush;
        `serving`: False on a standby or fenced replica, which writes nothing."""
        self.cfg = cfg
        self.store = store
        self.metrics = metrics
        self.kernels = kernels
        self.serving = serving
        self._tracks: dict[str, _Track] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="activity-reporter")

    async def close(self, *, final_flush: bool = True) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if final_flush:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(force=True), 5)

    async def _run(self) -> None:
        tick = min(1.0, self.cfg.activity_interval / 2)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - reporting must never stop
                log.exception("activity flush failed")

    def _follow(self) -> None:
        """One track per connection: new connections get one, gone ones lose theirs."""
        for kernel_id, conn in list(self.kernels.items()):
            track = self._tracks.get(kernel_id)
            if track is None or track.source is not conn:
                self._tracks[kernel_id] = _Track(conn)
        for kernel_id in [k for k in self._tracks if k not in self.kernels]:
            del self._tracks[kernel_id]

    async def flush(self, *, force: bool = False) -> None:
        if not self.serving():
            return  # a standby or fenced replica writes nothing
        self._follow()
        now = time.monotonic()
        for kernel_id, track in list(self._tracks.items()):
            conn = track.source
            if self.kernels.get(kernel_id) is not conn:
                # Dropped (or replaced) while an earlier write of this pass was awaited.
                self._tracks.pop(kernel_id, None)
                continue
            connections = conn.connection_count()
            if connections != track.connections or conn.activity.last_activity != track.seen:
                track.dirty = True
            age = now - track.last_write
            due = (track.dirty and age >= self.cfg.activity_interval) or \
                  (connections > 0 and age >= self.cfg.heartbeat_interval)
            if not (due or (force and track.dirty)):
                continue
            track.dirty, track.last_write, track.connections = False, now, connections
            track.seen = conn.activity.last_activity
            await self._write(kernel_id, conn, connections)

    def patch_for(self, kernel_id: str, conn: ObservedKernel,
                  connections: int) -> dict[str, Any]:
        now = utcnow()
        mine: dict[str, Any] = {"connections": connections,
                                "heartbeat": crd.format_time(now, micro=True)}
        act = conn.activity
        if act.execution_state:
            mine["executionState"] = act.execution_state
        if act.last_activity:
            mine["lastActivity"] = crd.format_time(act.last_activity, micro=True)
        replicas: dict[str, Any] = {self.cfg.replica_id: mine}
        activity: dict[str, Any] = {"replicas": replicas}
        cached = self.store.cache.get(kernel_id)
        status = cached.get("status") if cached is not None else None
        current = (status or {}).get("activity") or {}
        # Never move the session-wide time backwards past another replica's newer report.
        theirs = crd.parse_time(current.get("lastActivity"))
        if act.last_activity and (theirs is None or act.last_activity >= theirs):
            activity["lastActivity"] = crd.format_time(act.last_activity, micro=True)
            if act.execution_state:
                activity["executionState"] = act.execution_state
        prune_after = 10 * self.cfg.replica_stale_after
        for rid, entry in (current.get("replicas") or {}).items():
            beat = crd.parse_time((entry or {}).get("heartbeat"))
            if rid != self.cfg.replica_id and (beat is None or
                                               (now - beat).total_seconds() > prune_after):
                replicas[rid] = None
        return {"status": {"activity": activity}}

    async def _write(self, kernel_id: str, conn: ObservedKernel, connections: int) -> None:
        try:
            result = await self.store.patch_status(kernel_id,
                                                   self.patch_for(kernel_id, conn, connections))
        except Exception as exc:  # noqa: BLE001
            self.metrics.inc("activity_writes_total", result="error")
            log.warning("kernel %s: activity write failed: %s", kernel_id, exc)
            if kernel_id in self._tracks:
                self._tracks[kernel_id].dirty = True
            return
        # "gone": the track stays (clean) until the session's DELETED event drops the
        # connection, so a deleted session is not patched again meanwhile.
        self.metrics.inc("activity_writes_total", result="ok" if result else "gone")
