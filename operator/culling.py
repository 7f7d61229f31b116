"""Culling idle kernels from the activity every gateway replica reports.

The decision is a pure function of the KernelSession, the clock and the settings:

- Only replicas whose ``heartbeat`` is fresh (within ``activity_staleness``) count; a dead
  replica's report neither keeps a kernel alive nor makes it look busy.
- A live replica reporting open connections protects the kernel (unless ``cull_connected``),
  and one reporting ``busy`` does too (unless ``cull_busy``).
- Idle time counts from the newest of: live replicas' ``lastActivity``, ``status.startedAt``
  and the creation time. The top-level ``activity`` summary is used only when no replica
  breakdown exists, because it cannot say which replica (dead or alive) saw the activity.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernelkeeper.crds import model as crd


@dataclass(frozen=True)
class CullDecision:
    cull: bool
    idle_seconds: float
    timeout: int
    why: str


def idle_timeout(ks: Mapping[str, Any], default: int) -> int:
    value = (ks.get("spec") or {}).get("idleTimeoutSeconds")
    return int(default if value is None else value)


def _t(value: Any) -> dt.datetime | None:
    try:
        return crd.parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


def live_replicas(activity: Mapping[str, Any], now: dt.datetime,
                  staleness: float) -> dict[str, Mapping[str, Any]]:
    out = {}
    for rid, rep in (activity.get("replicas") or {}).items():
        beat = _t((rep or {}).get("heartbeat"))
        if beat is not None and (now - beat).total_seconds() <= staleness:
            out[rid] = rep
    return out


def cull_decision(ks: Mapping[str, Any], now: dt.datetime, *, default_timeout: int,
                  staleness: float, cull_busy: bool = False,
                  cull_connected: bool = False) -> CullDecision:
    timeout = idle_timeout(ks, default_timeout)
    status = ks.get("status") or {}
    activity = status.get("activity") or {}
    live = live_replicas(activity, now, staleness)
    stamps = [_t(status.get("startedAt")), _t(ks["metadata"].get("creationTimestamp"))]
    stamps += [_t(rep.get("lastActivity")) for rep in live.values()]
    states = [rep.get("executionState") for rep in live.values()]
    if not activity.get("replicas"):
        stamps.append(_t(activity.get("lastActivity")))
        states.append(activity.get("executionState"))
    newest = max((s for s in stamps if s is not None), default=now)
    idle = max(0.0, (now - newest).total_seconds())
    if timeout <= 0:
        return CullDecision(False, idle, timeout, "culling disabled for this session")
    connections = sum(int(rep.get("connections") or 0) for rep in live.values())
    if connections and not cull_connected:
        return CullDecision(False, idle, timeout,
                            f"{connections} connection(s) through {len(live)} live replica(s)")
    if "busy" in states and not cull_busy:
        return CullDecision(False, idle, timeout, "kernel is busy")
    if idle < timeout:
        return CullDecision(False, idle, timeout, f"idle {idle:.0f}s < {timeout}s")
    return CullDecision(True, idle, timeout, f"idle for {idle:.0f}s (timeout {timeout}s)")
