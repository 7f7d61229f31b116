"""Culling idle kernels from the activity gateway replicas report and the kernel's launcher sees.

The decision is a pure function of the KernelSession, the clock, the settings and, when the
caller has it, the launcher's ``/status`` (read from the kernel's Pod):

- Claims about *now* count only from replicas whose ``heartbeat`` is fresh (within
  ``activity_staleness``): a live replica reporting open connections protects the kernel
  (unless ``cull_connected``), and one reporting ``busy`` does too (unless ``cull_busy``).
  A dead replica's connections or busy state protect nothing.
- The launcher watches iopub whether or not a client is connected, so its ``executionState``
  is the one report of a long silent computation nobody watches: ``busy`` there protects the
  kernel like a live replica's (unless ``cull_busy``), and its ``lastActivity`` is one more
  activity stamp. It was read just now, so it needs no heartbeat.
- Idle time counts from the newest of: every reported ``lastActivity`` (per replica, the
  session-wide summary and the launcher's), ``status.startedAt`` and the creation time. A past
  activity stays true when the replica that saw it goes quiet; gateways refresh heartbeats only
  while they hold connections, so ignoring a quiet replica's lastActivity would cull every
  kernel one staleness period after its last disconnect. Times in the future are clamped to now.
- The summary ``executionState`` is used only when there is no per-replica breakdown,
  since it cannot say which replica (dead or alive) saw it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernelkeeper.crds import model as crd

# Event reason when the launcher keeps a session the gateways' reports alone would cull.
REASON_CULL_POSTPONED = "CullPostponed"


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


def _stamps(ks: crd.KernelSession,
            launcher: Mapping[str, Any] | None) -> list[tuple[dt.datetime | None, str]]:
    """Every time idleness may count from, each with who says so (for the event message)."""
    status = ks.get("status") or {}
    activity = status.get("activity") or {}
    stamps = [(crd.parse_time(status.get("startedAt")), "the kernel started"),
              (crd.parse_time(ks["metadata"].get("creationTimestamp")), "the session was created"),
              (crd.parse_time(activity.get("lastActivity")), "the last activity (gateway)")]
    stamps += [(crd.parse_time((rep or {}).get("lastActivity")),
                f"the last activity (gateway {rid})")
               for rid, rep in (activity.get("replicas") or {}).items()]
    if launcher is not None:
        stamps.append((crd.parse_time(launcher.get("lastActivity")),
                       "the last activity (launcher)"))
    return stamps


def cull_decision(ks: crd.KernelSession, now: dt.datetime, *, default_timeout: int,
                  staleness: float, cull_busy: bool = False, cull_connected: bool = False,
                  launcher: Mapping[str, Any] | None = None) -> CullDecision:
    """Whether to cull `ks` now; `launcher` is its launcher's /status if the caller read it."""
    timeout = idle_timeout(ks, default_timeout)
    activity = (ks.get("status") or {}).get("activity") or {}
    live = live_replicas(activity, now, staleness)
    busy = [f"gateway {rid}" for rid, rep in live.items() if rep.get("executionState") == "busy"]
    if not activity.get("replicas") and activity.get("executionState") == "busy":
        busy.append("gateway")
    if launcher is not None and launcher.get("executionState") == "busy":
        busy.append("launcher")
    known = [(t, who) for t, who in _stamps(ks, launcher) if t is not None]
    newest, since = max(known, key=lambda s: s[0], default=(now, "now"))
    idle = max(0.0, (now - min(now, newest)).total_seconds())
    if timeout <= 0:
        return CullDecision(False, idle, timeout, "culling disabled for this session")
    connections = sum(int(rep.get("connections") or 0) for rep in live.values())
    if connections and not cull_connected:
        return CullDecision(False, idle, timeout,
                            f"{connections} connection(s) through {len(live)} live replica(s)")
    if busy and not cull_busy:
        return CullDecision(False, idle, timeout, f"kernel is busy ({', '.join(busy)})")
    if idle < timeout:
        return CullDecision(False, idle, timeout,
                            f"idle {idle:.0f}s < {timeout}s since {since}")
    return CullDecision(True, idle, timeout, f"idle since {since}")
