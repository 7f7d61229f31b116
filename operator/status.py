"""The operator's part of KernelSession.status: compute it, compare it, write it when changed.

Gateways own ``status.activity``; the operator owns everything else and never touches
activity. Writes go to the status subresource as a merge patch that carries the
resourceVersion it was computed from, so a concurrent writer (or a stale leader) gets a 409
instead of overwriting newer state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernelkeeper.crds import model as crd
from kernelkeeper.kube.client import Kube
from kernelkeeper.kube.paths import group_path

OWNED_FIELDS = ("observedGeneration", "podName", "podIP", "connection", "keySecretRef",
                "restarts", "startedAt", "culledAt")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    message: str


def ks_path(namespace: str, name: str, sub: str | None = None) -> str:
    return group_path(crd.GROUP, crd.VERSION, crd.PLURAL, namespace, name, sub)


def desired_status(ks: crd.KernelSession, readiness: Readiness, *,
                   now: str | None = None, **fields: Any) -> dict[str, Any]:
    """The owned part of status after this reconcile: current values, overridden by `fields`.

    Pass a field as None to remove it. startedAt is set the first time the kernel is Ready.
    """
    status = ks.get("status") or {}
    current: dict[str, Any] = dict(status)
    generation = ks["metadata"].get("generation")
    out = {k: current.get(k) for k in OWNED_FIELDS}
    out.update(fields)
    out["observedGeneration"] = generation
    out["keySecretRef"] = {"name": crd.key_secret_name(ks["metadata"]["name"]),
                           "key": crd.KEY_SECRET_FIELD}
    if out.get("restarts") is None:
        out["restarts"] = 0
    if readiness.ready and not out.get("startedAt"):
        out["startedAt"] = now or crd.format_time()
    out["conditions"] = crd.set_condition(
        status.get("conditions"), status=readiness.ready, reason=readiness.reason,
        message=readiness.message, generation=generation, now=now,
    )
    return out


def status_patch(ks: crd.KernelSession, desired: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields that differ (None removes a field); empty if nothing changed."""
    current = ks.get("status") or {}
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if current.get(key) != value:
            patch[key] = value
    return patch


def ready_condition(ks: crd.KernelSession) -> tuple[str | None, str | None]:
    cond = crd.get_condition(ks.get("status")) or {}
    return cond.get("status"), cond.get("reason")


async def write_status(kube: Kube, ks: crd.KernelSession, desired: Mapping[str, Any]) -> bool:
    """Patch status if anything changed; True if a write happened. 409 propagates."""
    patch = status_patch(ks, desired)
    if not patch:
        return False
    meta = ks["metadata"]
    await kube.merge_patch(
        ks_path(meta["namespace"], meta["name"], "status"),
        {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch},
    )
    return True
