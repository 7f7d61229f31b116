"""KernelSessions as this replica sees them: one shared, self-healing watch feeding a cache.

The watch lists, then watches from the list's resourceVersion; on any error it backs off and
lists again, so the cache converges after API server restarts or expired resource versions.
A kernel id missing from the cache (created a moment ago through another replica) is looked
up with a direct GET, so hydration never depends on the watch having caught up.
All calls go through kubernetes.aio: nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from kernelkeeper.crds import model as crd

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
_WATCH_SECONDS = 240  # server-side watch timeout; the loop simply re-watches


class SessionStore:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.cache: dict[str, dict[str, Any]] = {}
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

    async def _list(self) -> None:
        result = await self.custom.list_namespaced_custom_object(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL)
        items = {o["metadata"]["name"]: o for o in result.get("items", [])}
        for name in set(self.cache) - set(items):
            gone = self.cache.pop(name)
            self._emit("DELETED", gone)
        for name, obj in items.items():
            if self.cache.get(name, {}).get("metadata", {}).get("resourceVersion") != \
                    obj["metadata"].get("resourceVersion"):
                self.cache[name] = obj
                self._emit("MODIFIED", obj)
        self._resource_version = result["metadata"]["resourceVersion"]
        self.healthy = True
        self.synced.set()

    async def _watch(self) -> None:
        resp = await self.custom.list_namespaced_custom_object_without_preload_content(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, watch=True,
            resource_version=self._resource_version, allow_watch_bookmarks=True,
            timeout_seconds=_WATCH_SECONDS,
            _request_timeout=_WATCH_SECONDS + 30)
        try:
            if resp.status != 200:
                raise RuntimeError(f"watch answered {resp.status}: {(await resp.text())[:200]}")
            while True:
                line = await resp.content.readline()
                if not line:
                    return  # server closed the watch (timeout); caller lists again
                event = json.loads(line)
                etype, obj = event.get("type"), event.get("object") or {}
                if etype == "ERROR":
                    raise RuntimeError(f"watch error: {obj.get('message')}")
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
        finally:
            resp.release()

    def _emit(self, etype: str, obj: dict[str, Any]) -> None:
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

    async def get(self, name: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The session, from the cache or (missing or `fresh`) from the API server."""
        if not fresh and name in self.cache:
            return self.cache[name]
        try:
            obj = await self.custom.get_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        cached = self.cache.get(name)
        if cached is None or _rv(obj) >= _rv(cached):
            self.cache[name] = obj
        return obj

    async def wait(self, name: str, done: Callable[[dict[str, Any] | None], bool],
                   timeout: float) -> dict[str, Any] | None:
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

    async def read_key(self, obj: dict[str, Any]) -> bytes:
        ref = (obj.get("status") or {}).get("keySecretRef") or {}
        secret_name = ref.get("name") or crd.key_secret_name(obj["metadata"]["name"])
        field = ref.get("key") or crd.KEY_SECRET_FIELD
        secret = await self.core.read_namespaced_secret(secret_name, self.namespace)
        data = (secret.data or {}).get(field)
        if data is None:
            raise KeyError(f"secret {secret_name} has no {field!r}")
        return base64.b64decode(data)

    # ------------------------------------------------------------------ writes

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        obj = await self.custom.create_namespaced_custom_object(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, body)
        self.cache.setdefault(obj["metadata"]["name"], obj)
        return obj

    async def delete(self, name: str) -> bool:
        """Delete the session; False if it was already gone."""
        try:
            await self.custom.delete_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name,
                propagation_policy="Background")
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def patch_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge patch on the status subresource; None if the session is gone."""
        try:
            return await self.custom.patch_namespaced_custom_object_status(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name, patch,
                _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0
