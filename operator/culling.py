"""Culling idle kernels from the activity every gateway replica reports.

The decision is a pure function of the KernelSession, the clock and the settings:

- Claims about *now* count only from replicas whose ``heartbeat`` is fresh (within
  ``activity_staleness``): a live replica reporting open connections protects the kernel
  (unless ``cull_connected``), and one reporting ``busy`` does too (unless ``cull_busy``).
  A dead replica's connections or busy state protect nothing.
- Idle time counts from the newest of: every reported ``lastActivity`` (per replica and the
  session-wide summary), ``status.startedAt`` and the creation time. A past activity stays
  true when the replica that saw it goes quiet; gateways refresh heartbeats only while they
  hold connections, so ignoring a quiet replica's lastActivity would cull every kernel one
  staleness period after its last disconnect. Times in the future are clamped to now.
- The summary ``executionState`` is used only when there is no per-replica breakdown,
  since it cannot say which replica (dead or alive) saw it.
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


def idle_timeout(ks: crd.KernelSession, default: int) -> int:
    value = (ks.get("spec") or {}).get("idleTimeoutSeconds")
    return int(default if value is None else value)


def live_replicas(activity: Mapping[str, Any], now: dt.datetime,
                  staleness: float) -> dict[str, Mapping[str, Any]]:
    out = {}
    for rid, rep in (activity.get("replicas") or {}).items():
        beat = crd.parse_time((rep or {}).get("heartbeat"))
        if beat is not None and (now - beat).total_seconds() <= staleness:
            out[rid] = rep
    return out


def cull_decision(ks: crd.KernelSession, now: dt.datetime, *, default_timeout: int,
                  staleness: float, cull_busy: bool = False,
                  cull_connected: bool = False) -> CullDecision:
    timeout = idle_timeout(ks, default_timeout)
    status = ks.get("status") or {}
    activity = status.get("activity") or {}
    live = live_replicas(activity, now, staleness)
    stamps = [crd.parse_time(status.get("startedAt")),
              crd.parse_time(ks["metadata"].get("creationTimestamp")),
              crd.parse_time(activity.get("lastActivity"))]
    stamps += [crd.parse_time((rep or {}).get("lastActivity"))
               for rep in (activity.get("replicas") or {}).values()]
    states = [rep.get("executionState") for rep in live.values()]
    if not activity.get("replicas"):
        states.append(activity.get("executionState"))
    newest = min(now, max((s for s in stamps if s is not None), default=now))
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
