"""What the kernel is doing, as the launcher sees it on iopub: busy or idle, and since when.

The launcher is subscribed to iopub whether or not any gateway is, so this is the one observer
that sees a long silent computation with no client connected; the operator reads it from the
launcher's /status before it culls (a busy kernel is never idle, whoever watches it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kernelkeeper.crds import model as crd

# Requests whose busy/idle say nothing about the user's work (as jupyter_server tracks it).
HOUSEKEEPING_REQUESTS = frozenset({"kernel_info_request", "comm_info_request", "usage_request",
                                   "debug_request"})


class ExecutionTracker:
    def __init__(self) -> None:
        self.state = "starting"
        self.last_activity: dt.datetime | None = None
        self.busy_since: dt.datetime | None = None

    def observe(self, msg_type: str, parent: dict[str, Any], content: dict[str, Any],
                now: dt.datetime | None = None) -> None:
        """One iopub message from the kernel (its header's msg_type, parent header, content)."""
        if msg_type == "iopub_welcome":
            return
        now = now or dt.datetime.now(dt.UTC)
        if msg_type == "status":
            state = str(content.get("execution_state") or "")
            if state == "starting":
                self.state, self.busy_since = "starting", None
                return
            if parent.get("msg_type") in HOUSEKEEPING_REQUESTS or state not in ("busy", "idle"):
                return
            if state == "busy" and self.state != "busy":
                self.busy_since = now
            elif state == "idle":
                self.busy_since = None
            self.state = state
        self.last_activity = now

    def restarted(self) -> None:
        self.state, self.busy_since = "starting", None

    def status(self) -> dict[str, Any]:
        return {
            "executionState": self.state,
            "lastActivity": crd.format_time(self.last_activity, micro=True)
            if self.last_activity else None,
            "busySince": crd.format_time(self.busy_since, micro=True) if self.busy_since else None,
        }
