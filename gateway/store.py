"""KernelSessions as this replica sees them: one shared, self-healing watch feeding a cache.

The watch lists, then watches from the list's resourceVersion; on any error it backs off and
lists again, so the cache converges after API server restarts or expired resource versions.
A kernel id missing from the cache (created a moment ago through another replica) is looked
up with a direct GET, so hydration never depends on the watch having caught up.
All calls go through kube/ (async, hard timeouts): nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from kernelkeeper.crds import model as crd
from kernelkeeper.kube.client import ApiError, Kube
from kernelkeeper.kube.paths import core_path, group_path
from kernelkeeper.kube.watch import watch

log = logging.getLogger(__name__)

Listener = Callable[[str, crd.KernelSession], None]
_WATCH_SECONDS = 240  # server-side watch timeout; the loop simply re-watches


class SessionStore:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.cache: dict[str, crd.KernelSession] = {}
        self.synced = asyncio.Event()
        self.healthy = False
        self._listeners: list[Listener] = []
        self._changed: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._resource_version = ""

    # ------------------------------------------------------------------ watch

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kernelsession-watch")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._list()
                backoff = 0.5
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: list again
                self.healthy = False
                log.warning("KernelSession watch failed (%s); relisting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _path(self, name: str | None = None, sub: str | None = None) -> str:
        return group_path(crd.GROUP, crd.VERSION, crd.PLURAL, self.namespace, name, sub)

    async def _list(self) -> None:
        result = await self.kube.request("GET", self._path())
        sessions = [crd.as_session(o) for o in result.get("items") or []]
        items = {o["metadata"]["name"]: o for o in sessions}
        for name in set(self.cache) - set(items):
            gone = self.cache.pop(name)
            self._emit("DELETED", gone)
        for name, obj in items.items():
            cached = self.cache.get(name)
            if cached is None or cached["metadata"].get("resourceVersion") != \
                    obj["metadata"].get("resourceVersion"):
                self.cache[name] = obj
                self._emit("MODIFIED", obj)
        self._resource_version = result["metadata"]["resourceVersion"]
        self.healthy = True
        self.synced.set()

    async def _watch(self) -> None:
        """Apply events until the server ends the watch; the caller then lists again."""
        async for event in watch(self.kube, self._path(), resource_version=self._resource_version,
                                 timeout_seconds=_WATCH_SECONDS):
            etype, obj = event["type"], crd.as_session(event["object"])
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self._resource_version = rv
            if etype == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if etype == "DELETED":
                self.cache.pop(name, None)
            else:
                self.cache[name] = obj
            self._emit(etype, obj)

    def _emit(self, etype: str, obj: crd.KernelSession) -> None:
        name = obj["metadata"]["name"]
        ev = self._changed.pop(name, None)
        if ev:
            ev.set()
        for fn in self._listeners:
            try:
                fn(etype, obj)
            except Exception:  # noqa: BLE001 - one bad listener must not stop the watch
                log.exception("KernelSession listener failed")

    # ------------------------------------------------------------------ reads

    async def get(self, name: str, *, fresh: bool = False) -> crd.KernelSession | None:
        """The session, from the cache or (missing or `fresh`) from the API server."""
        if not fresh and name in self.cache:
            return self.cache[name]
        raw = await self.kube.get(self._path(name))
        if raw is None:
            return None
        obj = crd.as_session(raw)
        cached = self.cache.get(name)
        if cached is None or _rv(obj) >= _rv(cached):
            self.cache[name] = obj
        return obj

    async def wait(self, name: str, done: Callable[[crd.KernelSession | None], bool],
                   timeout: float) -> crd.KernelSession | None:
        """Wait until `done(session)` holds (None = deleted) or `timeout` passes.

        Watch events wake the waiter; a direct GET every few seconds covers a watch that is
        down or lagging. Returns the last session seen.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        obj = await self.get(name, fresh=True)
        next_get = loop.time() + 2.0
        while not done(obj):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            ev = self._changed.setdefault(name, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), min(remaining, max(0.05, next_get - loop.time())))
            if loop.time() >= next_get:
                obj = await self.get(name, fresh=True)
                next_get = loop.time() + 2.0
            else:
                obj = self.cache.get(name)
        return obj

    async def read_keys(self, obj: crd.KernelSession) -> tuple[bytes, str]:
        """The session's HMAC key and its kernel's Curve public key ("" for a plain kernel)."""
        ref = (obj.get("status") or {}).get("keySecretRef") or {}
        secret_name = ref.get("name") or crd.key_secret_name(obj["metadata"]["name"])
        field = ref.get("key") or crd.KEY_SECRET_FIELD
        secret = await self.kube.get(core_path(self.namespace, "secrets", secret_name))
        if secret is None:
            raise KeyError(f"secret {secret_name} does not exist")
        values = secret.get("data") or {}
        data = values.get(field)
        if data is None:
            raise KeyError(f"secret {secret_name} has no {field!r}")
        curve = values.get(crd.CURVE_PUBLIC_FIELD)
        return base64.b64decode(data), base64.b64decode(curve).decode() if curve else ""

    # ------------------------------------------------------------------ writes

    async def create(self, body: crd.KernelSession) -> crd.KernelSession:
        obj = crd.as_session(await self.kube.create(self._path(), body))
        self.cache.setdefault(obj["metadata"]["name"], obj)
        return obj

    async def delete(self, name: str) -> bool:
        """Delete the session; False if it was already gone."""
        return await self.kube.delete(self._path(name), propagation="Background")

    async def patch_status(self, name: str,
                           patch: dict[str, Any]) -> crd.KernelSession | None:
        """JSON merge patch on the status subresource; None if the session is gone."""
        try:
            return crd.as_session(await self.kube.merge_patch(self._path(name, "status"), patch))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise


def _rv(obj: crd.KernelSession) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0
