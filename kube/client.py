"""A small async Kubernetes client that speaks plain dicts, on top of ``kubernetes.aio``.

kubernetes.aio handles configuration and authentication (kubeconfig or in-cluster); this
wrapper keeps objects in their wire form (camelCase dicts, as manifests are written), puts a
hard timeout on every request, and can refuse writes when a guard (the Lease) says no.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        self.status, self.reason, self.body = status, reason, body
        msg = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{status} {reason}: {msg}")


class NotLeader(RuntimeError):
    """A write was attempted while this replica does not hold the Lease."""


async def load_configuration(kubeconfig: str | None = None) -> aclient.Configuration:
    """In-cluster when no kubeconfig is given and we run in a Pod; the kubeconfig otherwise."""
    conf = aclient.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        aconfig.load_incluster_config(client_configuration=conf)
    else:
        await aconfig.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"),
                                       client_configuration=conf, persist_config=False)
    return conf


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
        return self.api.configuration

    async def close(self) -> None:
        await self.api.close()

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str | None = None,
                      timeout: float | None = None, guarded: bool = True) -> dict[str, Any]:
        """One API call; raises ApiError for non-2xx answers, TimeoutError past `timeout`."""
        if guarded and method != "GET" and self.guard is not None and not self.guard():
            raise NotLeader(f"refusing {method} {path}: not the leader")
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        limit = timeout or self.timeout
        params = await self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        async with asyncio.timeout(limit):
            resp = await self.api.call_api(
                *params, _request_timeout=aiohttp.ClientTimeout(total=limit)
            )
            raw = await resp.read()
        data: Any
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = raw.decode(errors="replace")
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, resp.reason or "", data)
        return data

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


def core_path(namespace: str, plural: str, name: str | None = None, sub: str | None = None) -> str:
    path = f"/api/v1/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def group_path(group: str, version: str, plural: str, namespace: str | None = None,
               name: str | None = None, sub: str | None = None) -> str:
    path = f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path
