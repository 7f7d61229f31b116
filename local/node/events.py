"""core/v1 Events about pods, sent in the background like the kubelet's event recorder.

Events never block a pod: they are queued and sent by one task. A repeat of the same event
(same object, reason and message) within ten minutes bumps the count of the existing Event
instead of creating a new one, so a crash loop does not flood the namespace.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any

from kernelkeeper.local.node.kube import Kube, KubeError

log = logging.getLogger(__name__)

AGGREGATE_WINDOW = 600.0
SPAM_BURST = 25
SPAM_REFILL = 300.0  # seconds per token
MAX_QUEUE = 5000


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, kube: Kube, node_name: str) -> None:
        self.kube = kube
        self.node = node_name
        self.queue: asyncio.Queue[tuple[dict[str, Any], str, str, str, str | None]] = (
            asyncio.Queue(MAX_QUEUE))
        self._seen: OrderedDict[tuple[str, ...], tuple[str, int, float]] = OrderedDict()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _allowed(self, uid: str) -> bool:
        """The kubelet's spam filter: per pod a burst of 25 events, then one per 5 minutes."""
        now = time.monotonic()
        tokens, last = self._buckets.get(uid, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - last) / SPAM_REFILL)
        if tokens < 1:
            self._buckets[uid] = (tokens, now)
            return False
        self._buckets[uid] = (tokens - 1, now)
        self._buckets.move_to_end(uid)
        while len(self._buckets) > 4096:
            self._buckets.popitem(last=False)
        return True

    def emit(self, pod: dict[str, Any], type_: str, reason: str, message: str,
             container: str | None = None) -> None:
        log.info("event %s/%s %s %s: %s", pod["metadata"].get("namespace"),
                 pod["metadata"].get("name"), type_, reason, message)
        if not self._allowed(str(pod["metadata"].get("uid"))):
            return
        try:
            self.queue.put_nowait((pod, type_, reason, message, container))
        except asyncio.QueueFull:
            log.warning("event queue full, dropping %s %s", reason, message)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pod, type_, reason, message, container = await self.queue.get()
            try:
                await self._send(pod, type_, reason, message, container, loop.time())
            except (KubeError, OSError, TimeoutError) as exc:
                log.debug("event %s not recorded: %s", reason, exc)

    async def _send(self, pod: dict[str, Any], type_: str, reason: str, message: str,
                    container: str | None, t: float) -> None:
        meta = pod["metadata"]
        ns = meta["namespace"]
        field_path = f"spec.containers{{{container}}}" if container else None
        key = (meta.get("uid", ""), reason, message, field_path or "")
        ts = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None and t - seen[2] < AGGREGATE_WINDOW:
            name, count, _ = seen
            try:
                await self.kube.request(
                    "PATCH", f"/api/v1/namespaces/{ns}/events/{name}",
                    body={"count": count + 1, "lastTimestamp": ts},
                    content_type="application/merge-patch+json")
                self._seen[key] = (name, count + 1, t)
                self._seen.move_to_end(key)
                return
            except KubeError as exc:
                if exc.status != 404:
                    raise
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": ns,
                    "name": meta.get("name"), "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion")}
        if field_path:
            involved["fieldPath"] = field_path
        name = f"{meta.get('name')}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason, "message": message, "type": type_,
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet", "reportingInstance": self.node,
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        }
        await self.kube.request("POST", f"/api/v1/namespaces/{ns}/events", body=body)
        self._seen[key] = (name, 1, t)
        while len(self._seen) > 4096:
            self._seen.popitem(last=False)
