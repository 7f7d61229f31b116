"""The one async Kubernetes client of kernelkeeper: plain dicts over ``kubernetes.aio``.

kubernetes.aio handles configuration, authentication and the connection pool; this wrapper
keeps objects in their wire form (camelCase dicts, as manifests are written), puts a hard
timeout on every request, raises one `ApiError` for every non-2xx answer, and can refuse
writes when a guard (the Lease) says no. Watches go through `stream` and `kube.watch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from kubernetes.aio import client as aclient

from kernelkeeper.kube.config import load_configuration

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer; `message` is the API server's own explanation when it gave one."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        self.status, self.reason, self.body = status, reason, body
        msg = body.get("message") if isinstance(body, dict) else body
        self.message = str(msg or reason)
        super().__init__(f"{status} {reason}: {msg}")

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted, so nothing new may be created in it (a StatusCause's
        type is serialized as `reason`)."""
        details = self.body.get("details") if isinstance(self.body, dict) else None
        causes = details.get("causes") or [] if isinstance(details, dict) else []
        return self.status == 403 and any(
            isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)


class NotLeader(RuntimeError):
    """A write was attempted while this replica does not hold the Lease."""


class Kube:
    def __init__(self, api: aclient.ApiClient, *, timeout: float = 30.0,
                 guard: Callable[[], bool] | None = None) -> None:
        self.api = api
        self.timeout = timeout
        self.guard = guard

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, *, timeout: float = 30.0) -> Kube:
        return cls(aclient.ApiClient(await load_configuration(kubeconfig)), timeout=timeout)

    @property
    def configuration(self) -> aclient.Configuration:
        conf: aclient.Configuration = self.api.configuration
        return conf

    async def close(self) -> None:
        await self.api.close()

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str | None = None,
                      timeout: float | None = None, guarded: bool = True) -> dict[str, Any]:
        """One API call; raises ApiError for non-2xx answers, TimeoutError past `timeout`."""
        if guarded and method != "GET" and self.guard is not None and not self.guard():
            raise NotLeader(f"refusing {method} {path}: not the leader")
        limit = timeout or self.timeout
        async with asyncio.timeout(limit):
            resp = await self._send(method, path, query, body, content_type, limit)
            raw = await resp.read()
        data = _decode(raw)
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, resp.reason or "", data)
        if not isinstance(data, dict):
            raise ApiError(resp.status, "answer is not a JSON object", data)
        return data

    @contextlib.asynccontextmanager
    async def stream(self, path: str, *, query: Mapping[str, Any] | None = None,
                     timeout: float) -> AsyncIterator[aiohttp.StreamReader]:
        """A GET whose body is read as it arrives (a watch); the whole exchange ends by
        `timeout`. Raises ApiError, with the server's message, for a non-2xx answer."""
        resp = await self._send("GET", path, query, None, None, timeout)
        raw: aiohttp.ClientResponse = resp.response
        try:
            if not 200 <= raw.status < 300:
                async with asyncio.timeout(self.timeout):
                    body = await raw.read()
                raise ApiError(raw.status, raw.reason or "", _decode(body))
            yield raw.content
        finally:
            raw.release()

    async def _send(self, method: str, path: str, query: Mapping[str, Any] | None, body: Any,
                    content_type: str | None, limit: float) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = await self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        return await self.api.call_api(*params,
                                       _request_timeout=aiohttp.ClientTimeout(total=limit))

    # ------------------------------------------------------------------ conveniences

    async def get(self, path: str, **kw: Any) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return await self.request("GET", path, **kw)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, path: str, body: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
        return await self.request("POST", path, body=dict(body), **kw)

    async def merge_patch(self, path: str, patch: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH, **kw)

    async def delete(self, path: str, *, preconditions: Mapping[str, str] | None = None,
                     propagation: str | None = None, **kw: Any) -> bool:
        """True if deleted (or already being deleted), False if it was not there."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if preconditions:
            body["preconditions"] = dict(preconditions)
        if propagation:
            body["propagationPolicy"] = propagation
        try:
            await self.request("DELETE", path, body=body, **kw)
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw.decode(errors="replace")
