"""Answers this extension gives the browser in the kernel's place, for requests it knows the
kernel will never answer, so no cell waits forever: an `error` on iopub, the request's reply
with status "error" on shell, then `idle` (what a frontend waits for to call a cell done)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from kernelkeeper.lab import framing
from kernelkeeper.lab.framing import Frame
from kernelkeeper.lab.ledger import PROTOCOL_VERSION, USERNAME

ENAME = "KernelkeeperLabError"


def _header(msg_type: str) -> dict[str, Any]:
    return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": USERNAME,
            "session": USERNAME, "date": datetime.now(UTC).isoformat(),
            "version": PROTOCOL_VERSION}


def not_answered(request: Frame, why: str) -> list[Frame]:
    """The frames that end `request` with an error saying `why`; none for a message that
    expects no reply (the browser waits for nothing)."""
    if request.channel != "shell" or not request.msg_type.endswith("_request"):
        return []
    parent = request.header
    text = f"[kernelkeeper.lab] {request.msg_type} not answered: {why}"
    error = {"ename": ENAME, "evalue": text, "traceback": [text]}
    reply_type = request.msg_type[: -len("_request")] + "_reply"
    reply: dict[str, Any] = {"status": "error", **error}
    if request.msg_type == "execute_request":
        reply["execution_count"] = None
    frames = []
    if request.msg_type == "execute_request":
        frames.append(framing.make("iopub", _header("error"), parent, error))
    frames.append(framing.make("shell", _header(reply_type), parent, reply))
    frames.append(framing.make("iopub", _header("status"), parent, {"execution_state": "idle"}))
    return frames
