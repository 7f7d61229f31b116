"""kernelkeeper.lab.ledger: what is sent again after a failover, and what never is. Messages
are real jupyter_client messages; the kernel's side is what ipykernel sends for them (busy on
iopub first, the reply on shell). No cluster."""

from __future__ import annotations

import json

from jupyter_client.session import Session

from kernelkeeper.lab import framing
from kernelkeeper.lab.ledger import Ledger

BROWSER = Session(session="browser", username="alice")


def request(msg_type: str = "execute_request", content: dict | None = None) -> framing.Frame:
    msg = json.loads(json.dumps(BROWSER.msg(msg_type, content or {"code": "1"}), default=str))
    return framing.make("shell", msg["header"], msg["parent_header"], msg["content"])


def from_kernel(channel: str, msg_type: str, parent: framing.Frame, kernel: str = "kernel-1",
                content: dict | None = None) -> framing.Frame:
    session = Session(session=kernel, username="kernel")
    msg = json.loads(json.dumps(session.msg(msg_type, content or {}, parent=parent.header),
                                default=str))
    return framing.make(channel, msg["header"], msg["parent_header"], msg["content"])


def answer_barrier(ledger: Ledger, barrier: framing.Frame, *, kernel: str = "kernel-1") -> None:
    busy = from_kernel("iopub", "status", barrier, kernel, {"execution_state": "busy"})
    assert ledger.observe(busy), "the barrier's status is not the browser's"
    assert ledger.observe(from_kernel("shell", "kernel_info_reply", barrier, kernel))


def test_a_request_without_any_sign_of_arrival_is_sent_again_after_the_barrier():
    ledger = Ledger()
    first, lost = request(), request()
    ledger.sent(first)
    assert not ledger.observe(from_kernel("iopub", "status", first))  # busy: it arrived
    ledger.sent(lost)
    assert ledger.in_doubt()
    barrier = ledger.barrier("browser")
    assert not ledger.answered()
    answer_barrier(ledger, barrier)
    assert ledger.answered()
    settlement = ledger.settle()
    assert [f.msg_id for f in settlement.resend] == [lost.msg_id] and not settlement.given_up
    assert not ledger.in_doubt()


def test_a_reply_replayed_before_the_barrier_answers_means_it_ran_once():
    ledger = Ledger()
    ran = request()
    ledger.sent(ran)
    barrier = ledger.barrier("browser")
    # The journal replays what the dead replica never wrote: the reply comes in first.
    assert not ledger.observe(from_kernel("shell", "execute_reply", ran))
    answer_barrier(ledger, barrier)
    assert ledger.settle().resend == []


def test_messages_without_a_reply_and_subshell_requests_are_never_sent_again():
    ledger = Ledger()
    comm, execute = request("comm_msg", {"comm_id": "c", "data": {}}), request()
    subshell = request()
    subshell.header["subshell_id"] = "s1"
    for frame in (comm, execute, subshell):
        ledger.sent(frame)
    answer_barrier(ledger, ledger.barrier("browser"))
    settlement = ledger.settle()
    assert [f.msg_id for f in settlement.resend] == [execute.msg_id]
    assert [f.msg_id for f in settlement.given_up] == [comm.msg_id, subshell.msg_id]


def test_nothing_is_sent_again_into_a_restarted_kernel():
    ledger = Ledger()
    seen = request("kernel_info_request", {})
    ledger.sent(seen)
    ledger.observe(from_kernel("shell", "kernel_info_reply", seen, kernel="kernel-1"))
    doubtful = request()
    ledger.sent(doubtful)
    answer_barrier(ledger, ledger.barrier("browser"), kernel="kernel-2")
    settlement = ledger.settle()
    assert settlement.resend == [] and [f.msg_id for f in settlement.given_up] == [
        doubtful.msg_id]
    assert "restarted" in settlement.why


def test_an_older_barriers_late_reply_settles_nothing_newer():
    ledger = Ledger()
    old = ledger.barrier("browser")
    newer = request()
    ledger.sent(newer)
    answer_barrier(ledger, old)
    assert not ledger.answered()
    answer_barrier(ledger, ledger.barrier("browser"))
    assert [f.msg_id for f in ledger.settle().resend] == [newer.msg_id]


def test_the_pending_bound_forgets_the_oldest_and_never_resends_them():
    ledger = Ledger(max_pending=2)
    frames = [request() for _ in range(3)]
    for f in frames:
        ledger.sent(f)
    assert ledger.evicted == 1
    answer_barrier(ledger, ledger.barrier("browser"))
    assert [f.msg_id for f in ledger.settle().resend] == [f.msg_id for f in frames[1:]]


def test_a_kernel_restart_voids_what_was_pending():
    ledger = Ledger()
    ledger.sent(request())
    restarting = from_kernel("iopub", "status", request("kernel_info_request", {}),
                             content={"execution_state": "restarting"})
    assert not ledger.observe(restarting)
    assert not ledger.in_doubt()
