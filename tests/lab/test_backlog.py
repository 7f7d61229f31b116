"""kernelkeeper.lab.backlog and .replies: the bounds of what waits for the gateway hop, and
the answer a request gets when it cannot wait. No cluster."""

from __future__ import annotations

import json

from kernelkeeper.lab import framing, replies
from kernelkeeper.lab.backlog import Backlog, RecentIds
from tests.lab.test_ledger import request


def test_the_backlog_keeps_order_per_kind_and_refuses_past_its_bounds():
    backlog = Backlog(max_messages=3, max_bytes=1 << 20)
    shell = [request(), request()]
    control = framing.make("control", {"msg_id": "c", "msg_type": "interrupt_request"}, {}, {})
    for frame in (shell[0], control, shell[1]):
        assert backlog.push(frame)
    assert not backlog.push(request()), "a fourth message is over the bound"
    assert backlog.take(shell=False) == [control]
    assert backlog.take(shell=True) == shell and len(backlog) == 0 and backlog.bytes == 0
    small = Backlog(max_messages=100, max_bytes=shell[0].size())
    assert small.push(shell[0]) and not small.push(shell[1])


def test_recent_ids_forget_the_oldest():
    ids = RecentIds(2)
    for msg_id in "abc":
        ids.add(msg_id)
    assert "a" not in ids and "b" in ids and "c" in ids


def test_an_execute_not_answered_ends_as_an_error_the_frontend_can_show():
    execute = request()
    frames = replies.not_answered(execute, "the gateway is gone")
    assert [(f.channel, f.msg_type) for f in frames] == [
        ("iopub", "error"), ("shell", "execute_reply"), ("iopub", "status")]
    assert all(f.parent_id == execute.msg_id for f in frames)
    legacy = [json.loads(framing.encode(f, framing.LEGACY)[0]) for f in frames]
    assert legacy[1]["content"]["status"] == "error"
    assert "the gateway is gone" in legacy[1]["content"]["evalue"]
    assert legacy[2]["content"] == {"execution_state": "idle"}
    assert [f.msg_type for f in replies.not_answered(request("complete_request"), "x")] == [
        "complete_reply", "status"]
    assert replies.not_answered(request("comm_msg"), "x") == [], "nobody waits for a reply"
