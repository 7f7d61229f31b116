"""Kubernetes Events about KernelSessions (what `kubectl describe ks` shows)."""

from __future__ import annotations

import logging
from typing import Any

from kernelkeeper.crds import model as crd
from kernelkeeper.kube.client import ApiError, Kube, NotLeader
from kernelkeeper.kube.paths import core_path

log = logging.getLogger(__name__)
COMPONENT = "kernelkeeper-operator"


def event_body(ks: crd.KernelSession, etype: str, reason: str, message: str,
               instance: str, now: str) -> dict[str, Any]:
    meta = ks["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": etype,
        "reason": reason,
        # Event messages are capped by the API at 1 KiB.
        "message": message[:1024],
        "source": {"component": COMPONENT, "host": instance},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, kube: Kube, instance: str) -> None:
        self.kube = kube
        self.instance = instance

    async def post(self, ks: crd.KernelSession, reason: str, message: str, *,
                   warning: bool = False) -> None:
        """Best effort: an Event that cannot be written is logged, never fatal."""
        ns = ks["metadata"]["namespace"]
        body = event_body(ks, "Warning" if warning else "Normal", reason, message,
                          self.instance, crd.format_time())
        log.info("event %s/%s %s: %s", ns, ks["metadata"]["name"], reason, message)
        try:
            await self.kube.create(core_path(ns, "events"), body)
        except (ApiError, NotLeader, TimeoutError, OSError) as exc:
            log.warning("could not post event %s for %s/%s: %s", reason, ns,
                        ks["metadata"]["name"], exc)
