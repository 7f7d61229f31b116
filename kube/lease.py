"""Leader election on a coordination.k8s.io/v1 Lease, for any asyncio component.

Semantics follow client-go (15/10/2 s), with the gaps of the Python clients closed:

- Expiry is judged on the local *monotonic* clock: a follower takes over only after it has
  seen the same record, unchanged, for ``leaseDurationSeconds``.
- The holder counts itself leader only while ``monotonic() - last_renewal < renew_deadline``,
  where ``last_renewal`` is taken *before* the successful request was sent. With
  renew_deadline < duration, it stops acting before any follower can take over.
- Every request has a hard timeout, so a hung call cannot stretch leadership.
- Takeovers increment ``leaseTransitions``; ``release()`` empties the holder so a standby
  takes over within one retry period instead of a full lease duration.
- Writes carry the read resourceVersion (PUT), so a lost race is a 409, never a blind write.

Usage::

    elector = LeaseElector(kube, "my-lease", "ns", identity)
    await elector.acquire()            # returns once leading
    lost = asyncio.create_task(elector.hold())   # returns when leadership is lost
    ... check elector.is_leader() before side effects ...
    await elector.release()            # on graceful shutdown
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kernelkeeper.crds.model import format_time
from kernelkeeper.kube.client import ApiError, Kube
from kernelkeeper.kube.paths import lease_path

log = logging.getLogger(__name__)


class LeaseElector:
    def __init__(self, kube: Kube, name: str, namespace: str, identity: str,
                 duration: float = 15, renew_deadline: float = 10, retry: float = 2) -> None:
        if not (duration > renew_deadline > retry > 0):
            raise ValueError("need duration > renew_deadline > retry > 0")
        self.kube = kube
        self.name, self.namespace, self.identity = name, namespace, identity
        self.duration, self.renew_deadline, self.retry = duration, renew_deadline, retry
        self._last_renewal: float | None = None  # monotonic, before the successful request
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.transitions = 0

    @property
    def path(self) -> str:
        return lease_path(self.namespace, self.name)

    def is_leader(self) -> bool:
        last = self._last_renewal
        return last is not None and time.monotonic() - last < self.renew_deadline

    def holder_hint(self) -> str | None:
        """The holder we last saw (for logs and 503 messages); may be stale."""
        return self._observed[0] if self._observed else None

    def observed_transitions(self) -> int:
        """leaseTransitions as last read, whoever held the Lease (a standby sees it too)."""
        return int(self._observed[2]) if self._observed else self.transitions

    async def acquire(self) -> None:
        """Return once this replica holds the Lease; retries every `retry` seconds."""
        waiting_logged = False
        while True:
            if await self.try_acquire_or_renew():
                log.info("%s acquired lease %s/%s (transitions=%d)", self.identity,
                         self.namespace, self.name, self.transitions)
                return
            if not waiting_logged:
                log.info("%s waiting for lease %s/%s held by %s", self.identity, self.namespace,
                         self.name, self.holder_hint())
                waiting_logged = True
            await asyncio.sleep(self.retry)

    async def hold(self) -> None:
        """Renew every `retry` seconds; return as soon as leadership is lost."""
        while True:
            await asyncio.sleep(self.retry)
            if not self.is_leader():
                break
            renewed = await self.try_acquire_or_renew()
            if not renewed and self.holder_hint() not in (None, self.identity):
                self._last_renewal = None  # someone else holds it: step down now
            if not self.is_leader():
                break
        log.error("%s lost lease %s/%s", self.identity, self.namespace, self.name)

    async def try_acquire_or_renew(self) -> bool:
        started = time.monotonic()
        # A holder's renewal may take the rest of its renew window (as client-go's does), but
        # never longer: capping it at the retry period instead lost the Lease whenever the API
        # server was slow for a few seconds, e.g. on 2 cores with 20 kernels starting at once.
        # A candidate gives up after one retry period and tries again.
        budget = self.retry
        if self._last_renewal is not None:
            budget = max(0.1, self.renew_deadline - (started - self._last_renewal))
        try:
            async with asyncio.timeout(budget):
                ok = await self._attempt()
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("lease %s/%s: attempt failed after %.1fs: %s", self.namespace, self.name,
                        time.monotonic() - started, repr(exc) if isinstance(exc, TimeoutError)
                        else exc)
            return False
        if ok:
            self._last_renewal = started
        return ok

    async def _attempt(self) -> bool:
        lease = await self.kube.get(self.path, guarded=False)
        now = format_time(micro=True)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, 0),
            }
            try:
                await self.kube.create(lease_path(self.namespace), body, guarded=False)
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            self.transitions = 0
            self._observe(self.identity, now, 0, "created")
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0)
        self._observe(holder, spec.get("renewTime"), transitions,
                      lease["metadata"].get("resourceVersion"))
        if holder == self.identity:
            if not self.is_leader() and self._last_renewal is not None:
                return False  # we already stepped down; never resurrect silently
            acquire_time = spec.get("acquireTime") or now
        else:
            duration = float(spec.get("leaseDurationSeconds") or self.duration)
            if holder and time.monotonic() - self._observed_at < duration:
                return False
            acquire_time = now
            transitions += 1
        lease["spec"] = self._spec(acquire_time, now, transitions)
        try:
            await self.kube.request("PUT", self.path, body=lease, guarded=False)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        if holder != self.identity:
            log.info("%s took over lease %s/%s from %r", self.identity, self.namespace,
                     self.name, holder)
        self.transitions = transitions
        self._observe(self.identity, now, transitions, "ours")
        return True

    def _spec(self, acquire: str, renew: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(round(self.duration)),
            "acquireTime": acquire,
            "renewTime": renew,
            "leaseTransitions": transitions,
        }

    def _observe(self, holder: str, renew: Any, transitions: int, rv: Any) -> None:
        record = (holder, renew, transitions, rv)
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()

    async def release(self, timeout: float = 5.0) -> bool:
        """Hand the Lease back (holder emptied, duration 1 s) if we still hold it."""
        was_leader = self._last_renewal is not None
        self._last_renewal = None
        if not was_leader:
            return False
        try:
            async with asyncio.timeout(timeout):
                lease = await self.kube.get(self.path, guarded=False)
                if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                    return False
                lease["spec"].update({"holderIdentity": "", "leaseDurationSeconds": 1,
                                      "renewTime": format_time(micro=True)})
                await self.kube.request("PUT", self.path, body=lease, guarded=False)
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)
            return False
        log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        return True


class LeaseThread:
    """A LeaseElector on a thread of its own, with its own event loop and connection pool.

    In asyncio a renewal waits its turn behind every ready callback of its loop, and an
    operator reconciling hundreds of new sessions at once keeps its loop busy. A thread is
    given the interpreter every switch interval however busy the main loop is, as client-go
    runs its election beside the controllers. (In the bench's 200-session burst on 2 cores
    this alone did not keep the Lease: the operator process itself was starved of CPU until
    kernel pods ran under the kubelet's cgroup CPU weights.) `is_leader()` may be called
    from any thread.
    """

    def __init__(self, connect: Callable[[], Awaitable[Kube]], name: str, namespace: str,
                 identity: str, *, duration: float = 15, renew_deadline: float = 10,
                 retry: float = 2) -> None:
        self._connect = connect
        self.identity = identity
        self._elector = functools.partial(LeaseElector, name=name, namespace=namespace,
                                          identity=identity, duration=duration,
                                          renew_deadline=renew_deadline, retry=retry)
        self.elector: LeaseElector | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lease",
                                        daemon=True)
        self._acquired: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._lifecycle: concurrent.futures.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._thread.start()
        self._lifecycle = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    async def _run(self) -> None:
        self._task = asyncio.current_task()
        try:
            self.elector = self._elector(await self._connect())
            await self.elector.acquire()
        except BaseException as exc:
            if not self._acquired.done():  # nobody may wait forever for a Lease never coming
                self._acquired.set_exception(
                    exc if isinstance(exc, Exception) else RuntimeError("lease thread stopped"))
            raise
        self._acquired.set_result(None)
        await self.elector.hold()

    def is_leader(self) -> bool:
        return self.elector is not None and self.elector.is_leader()

    async def acquired(self) -> None:
        """Return once this process holds the Lease."""
        await asyncio.wrap_future(self._acquired)

    async def lost(self) -> None:
        """Return once leadership is lost (or the thread failed)."""
        assert self._lifecycle is not None
        with contextlib.suppress(concurrent.futures.CancelledError):
            await asyncio.wrap_future(self._lifecycle)

    async def close(self, *, release: bool) -> None:
        """Stop renewing, hand the Lease back if asked to, and end the thread."""
        if self._thread.is_alive():
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._shutdown(release), self._loop))
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
        if not self._loop.is_running():
            self._loop.close()

    async def _shutdown(self, release: bool) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.elector is not None:
            if release:
                await self.elector.release()
            await self.elector.kube.close()
