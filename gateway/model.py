"""The kernel model jupyter_server's gateway client parses, built from a KernelSession.

`last_activity` always has six fractional digits and a literal Z: the client parses it with
``%Y-%m-%dT%H:%M:%S.%fZ`` and a single miss turns its whole list call into a 500.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kernelkeeper.crds import model as crd

# Ready=False reasons after which the kernel will not come back on its own (an image that
# cannot be had may appear later, but a client waiting for it would only see a hang).
TERMINAL_REASONS = {crd.REASON_UNKNOWN_SPEC, crd.REASON_INVALID_ENV, crd.REASON_FAILED,
                    crd.REASON_CULLED, crd.REASON_TERMINATING, crd.REASON_IMAGE_ERROR}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Phase:
    """Where a session stands, for the gateway's purposes."""

    name: str  # ready | starting | restarting | failed
    reason: str = ""
    message: str = ""

    @property
    def ready(self) -> bool:
        return self.name == "ready"

    @property
    def failed(self) -> bool:
        return self.name == "failed"


def phase(obj: crd.KernelSession) -> Phase:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return Phase("failed", crd.REASON_TERMINATING, "the kernel session is being deleted")
    cond = crd.get_condition(obj.get("status"))
    if cond is None:
        return Phase("starting", crd.REASON_STARTING, "waiting for the operator")
    reason, message = cond.get("reason") or "", cond.get("message") or ""
    if cond.get("status") == "True":
        if not (obj.get("status") or {}).get("connection"):
            return Phase("starting", reason, "no connection info yet")
        return Phase("ready", reason, message)
    if reason in TERMINAL_REASONS:
        return Phase("failed", reason, message)
    if reason == crd.REASON_RESTARTING:
        return Phase("restarting", reason, message)
    return Phase("starting", reason, message)


@dataclass
class LocalActivity:
    """What this replica itself saw of a kernel."""

    execution_state: str = ""
    last_activity: dt.datetime | None = None
    connections: int = 0


def other_replica_connections(status: crd.KernelSessionStatus, replica_id: str, stale_after: float,
                              now: dt.datetime) -> int:
    total = 0
    replicas = ((status.get("activity") or {}).get("replicas")) or {}
    for rid, entry in replicas.items():
        if rid == replica_id or not isinstance(entry, dict):
            continue
        beat = crd.parse_time(entry.get("heartbeat"))
        if beat and (now - beat).total_seconds() <= stale_after:
            total += int(entry.get("connections") or 0)
    return total


def kernel_model(obj: crd.KernelSession, *, local: LocalActivity | None, replica_id: str,
                 stale_after: float) -> dict[str, Any]:
    now = utcnow()
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    activity = status.get("activity") or {}
    times = [crd.parse_time(activity.get("lastActivity")), crd.parse_time(status.get("startedAt")),
             crd.parse_time(meta.get("creationTimestamp")), local.last_activity if local else None]
    last = max((t for t in times if t is not None), default=now)
    ph = phase(obj)
    if ph.failed:
        state = "dead"
    elif ph.name in ("starting", "restarting"):
        state = ph.name
    else:
        state = (local.execution_state if local and local.execution_state else
                 activity.get("executionState") or "idle")
    connections = (local.connections if local else 0) + other_replica_connections(
        status, replica_id, stale_after, now)
    model: dict[str, Any] = {
        "id": meta.get("name"),
        "name": (obj.get("spec") or {}).get("kernelSpec"),
        "last_activity": crd.format_time(last, micro=True),
        "execution_state": state,
        "connections": connections,
    }
    if ph.failed:
        model["reason"] = f"{ph.reason}: {ph.message}"
    return model
