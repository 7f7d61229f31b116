"""Reading a Kubernetes watch: one JSON event per line, of any length.

One watch event carries a whole object. aiohttp's `readline()` refuses lines longer than twice
the reader's buffer limit: 4 MiB under the kubernetes client's 2 MiB `read_bufsize` today,
512 KiB under aiohttp's own default, and the limit belongs to whoever configures the session.
This reader joins chunks until the newline however long the line is, so no setting elsewhere
decides which objects a watch can carry; `max_bytes` only guards against a stream that never
ends a line (etcd caps an object at 1.5 MiB).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypedDict

import aiohttp

from kernelkeeper.kube.client import ApiError, Kube

MAX_EVENT_BYTES = 16 * 1024 * 1024


class WatchEvent(TypedDict):
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK (ERROR is raised, never yielded)
    object: dict[str, Any]


class WatchExpired(ApiError):
    """The resourceVersion is too old (410 Gone): list again and watch from the new one."""


async def lines(stream: aiohttp.StreamReader, *,
                max_bytes: int = MAX_EVENT_BYTES) -> AsyncIterator[bytes]:
    """Complete newline-terminated lines, without the newline; a partial tail is dropped."""
    pending = bytearray()
    async for chunk in stream.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending += chunk[start:end]
            if pending:
                yield bytes(pending)
            pending.clear()
            start = end + 1
        pending += chunk[start:]
        if len(pending) > max_bytes:
            raise ValueError(f"watch event larger than {max_bytes} bytes")


async def watch(kube: Kube, path: str, *, resource_version: str, timeout_seconds: int,
                query: Mapping[str, Any] | None = None) -> AsyncIterator[WatchEvent]:
    """Events after `resource_version` until the server ends the watch (`timeout_seconds`).

    An ERROR event becomes an exception: `WatchExpired` for 410, `ApiError` otherwise.
    """
    params = {**(query or {}), "watch": "true", "resourceVersion": resource_version,
              "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
    async with kube.stream(path, query=params, timeout=timeout_seconds + 30) as stream:
        async for line in lines(stream):
            event = json.loads(line)
            etype, obj = event.get("type"), event.get("object") or {}
            if etype == "ERROR":
                code = int(obj.get("code") or 500)
                cls = WatchExpired if code == 410 else ApiError
                raise cls(code, obj.get("reason") or "watch error", obj)
            yield WatchEvent(type=str(etype), object=obj)
