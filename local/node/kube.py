"""A thin asynchronous Kubernetes client on top of kubernetes.aio that speaks JSON dicts.

The generated models cost time and hide fields the node needs verbatim (status patches,
watch events), so requests go through the ApiClient's transport (TLS, auth, pooling) and
bodies stay plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig


class KubeError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.body = body


MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class Kube:
    def __init__(self, api: aclient.ApiClient) -> None:
        self.api = api

    @classmethod
    async def from_kubeconfig(cls, path: str, *, pool: int = 32) -> Kube:
        cfg = aclient.Configuration()
        await aconfig.load_kube_config(config_file=path, client_configuration=cfg,
                                       persist_config=False)
        cfg.connection_pool_maxsize = pool
        return cls(aclient.ApiClient(cfg))

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    async def close(self) -> None:
        await self.api.close()

    async def _send(self, method: str, path: str, *, query: dict[str, Any] | None,
                    body: Any, content_type: str | None,
                    timeout: aiohttp.ClientTimeout) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        q = {k: v for k, v in (query or {}).items() if v is not None}
        if q:
            path = path + "?" + urlencode({k: _q(v) for k, v in q.items()})
        _, url, headers, body, _ = await self.api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            return await self.api.call_api(method, url, header_params=headers, body=body,
                                           _request_timeout=timeout)
        except aiohttp.ClientError as exc:
            # Callers handle one error type; status 0 means "no answer".
            raise KubeError(0, f"{type(exc).__name__}: {exc}") from exc

    async def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                      body: Any = None, content_type: str | None = None,
                      timeout: float = 30.0) -> Any:
        resp = await self._send(method, path, query=query, body=body, content_type=content_type,
                                timeout=aiohttp.ClientTimeout(total=timeout))
        try:
            data = await resp.read()
        except aiohttp.ClientError as exc:
            raise KubeError(0, f"{type(exc).__name__}: {exc}") from exc
        try:
            obj = json.loads(data) if data else None
        except ValueError:
            obj = data.decode(errors="replace")
        if not 200 <= resp.status < 300:
            reason = obj.get("message", resp.reason) if isinstance(obj, dict) else resp.reason
            raise KubeError(resp.status, str(reason), obj)
        return obj

    async def get(self, path: str, **query: Any) -> Any:
        return await self.request("GET", path, query=query)

    async def watch(self, path: str, *, resource_version: str, timeout_seconds: int = 300,
                    **query: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events until the server ends the stream.

        An ERROR event is raised as KubeError (410 means: re-list).
        """
        q = dict(query, watch="true", resourceVersion=resource_version,
                 timeoutSeconds=timeout_seconds, allowWatchBookmarks="true")
        resp = await self._send("GET", path, query=q, body=None, content_type=None,
                                timeout=aiohttp.ClientTimeout(total=None,
                                                              sock_read=timeout_seconds + 30))
        raw = resp.response
        try:
            if resp.status != 200:
                body = await raw.read()
                raise KubeError(resp.status, body.decode(errors="replace")[:300])
            # Events are newline-delimited; read chunks ourselves, since aiohttp's readline
            # refuses lines longer than its buffer and a Pod with big annotations can be.
            buf = b""
            while True:
                try:
                    chunk = await raw.content.readany()
                except aiohttp.ClientError as exc:
                    raise KubeError(0, f"{type(exc).__name__}: {exc}") from exc
                if not chunk:
                    return
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        obj = event.get("object") or {}
                        raise KubeError(int(obj.get("code", 500)), str(obj.get("message", "")),
                                        obj)
                    yield event
        finally:
            raw.release()


def _q(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def is_status(exc: BaseException, *codes: int) -> bool:
    return isinstance(exc, KubeError) and exc.status in codes
