"""Reading a kernel Pod's state the way the reconciler needs it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernelkeeper.operator.render import ANN_INCARNATION, ANN_RESTARTS_BASE, CONTAINER

# Waiting reasons of a container whose image cannot be had: retrying will not help by itself.
IMAGE_ERRORS = frozenset({"ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull",
                          "InvalidImageName", "ImageInspectError"})


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    phase: str
    ip: str | None
    ready: bool
    deleting: bool
    incarnation: int
    restarts_base: int | None
    unschedulable: str | None  # the scheduler's message
    waiting: str | None  # why the container is not running yet
    terminated: str | None  # how the container ended
    image_error: str | None = None  # the kubelet's reason and message when the image is the problem
    created: str | None = None  # metadata.creationTimestamp

    @property
    def live(self) -> bool:
        return not self.deleting and self.phase not in ("Succeeded", "Failed")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ann = meta.get("annotations") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conds.get("PodScheduled") or {}
    unschedulable = None
    if sched.get("status") == "False" and sched.get("reason") == "Unschedulable":
        unschedulable = sched.get("message") or "the scheduler found no node for the pod"
    waiting = terminated = image_error = None
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        state = cs.get("state") or {}
        if "waiting" in state:
            w = state["waiting"] or {}
            waiting = ": ".join(x for x in (w.get("reason"), w.get("message")) if x) or None
            if w.get("reason") in IMAGE_ERRORS:
                image_error = waiting
        if "terminated" in state:
            t = state["terminated"] or {}
            terminated = (f"exit code {t.get('exitCode')}"
                          + (f", {t['reason']}" if t.get("reason") else "")
                          + (f": {t['message']}" if t.get("message") else ""))
    return PodView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        ip=status.get("podIP") or None,
        ready=(conds.get("Ready") or {}).get("status") == "True",
        deleting=bool(meta.get("deletionTimestamp")),
        incarnation=_int(ann.get(ANN_INCARNATION)) or 0,
        restarts_base=_int(ann.get(ANN_RESTARTS_BASE)),
        unschedulable=unschedulable,
        waiting=waiting,
        terminated=terminated,
        image_error=image_error,
        created=meta.get("creationTimestamp"),
    )


def loss_reason(pod: PodView | None, raw: Mapping[str, Any] | None = None) -> str:
    """A short human explanation of why a kernel Pod no longer serves."""
    if pod is None:
        return "the pod was deleted"
    reason = ((raw or {}).get("status") or {}).get("reason")
    message = ((raw or {}).get("status") or {}).get("message")
    if reason:
        return f"{reason}: {message}" if message else reason
    if pod.deleting:
        return "the pod is being deleted"
    if pod.phase == "Failed":
        return f"the pod failed ({pod.terminated or 'no details'})"
    return f"the pod is {pod.phase}"
