"""Which shell messages the kernel may not have got, and which of them may be sent again.

The gateway's guarantee (README, "What a client gets back after a failover"): a request sent
into a replica as it died may never have reached the kernel, and a client finds out with a
kernel_info_request on shell after reconnecting. The kernel answers the requests of its shell
in order, on one socket, so once this barrier's reply is in:

- a request (`*_request`) that got no reply and no other message naming it as parent never
  reached the kernel: its reply would be ahead of the barrier's. Sending it again cannot run
  it twice;
- a message with any sign of arrival is never sent again;
- a message that has no reply (comm_msg, comm_open, comm_close) is given up, never sent again:
  only an iopub busy status would show it arrived, and ipykernel 7 handles comm messages
  that come in during an async cell without one. So is a request to a subshell (its own
  queue, not ordered with the barrier);
- when the kernel process changed meanwhile (a restart: its replies carry a new session),
  everything in doubt is given up, not run in a kernel that may have run it already.

Barriers count only for messages written before them (by sequence number), so the late reply
to an older barrier settles nothing newer. Pure bookkeeping: nothing here does I/O.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kernelkeeper.lab import framing
from kernelkeeper.lab.framing import Frame

PROTOCOL_VERSION = "5.3"
# Statuses after which the kernel process that had the pending messages is gone (the gateway
# says restarting or dead; a new process says starting).
KERNEL_GONE = frozenset({"restarting", "starting", "dead"})
USERNAME = "kernelkeeper.lab"


@dataclass
class _Barrier:
    seq: int
    replied: bool = False
    kernel_session: str = ""


@dataclass
class Settlement:
    """What to do with the shell messages that were in doubt."""

    resend: list[Frame] = field(default_factory=list)  # in their original order
    given_up: list[Frame] = field(default_factory=list)
    why: str = ""  # why the given-up ones are not sent again


class Ledger:
    """Shell messages written to the gateway hop that the kernel has not acknowledged yet."""

    def __init__(self, max_pending: int = 10_000, max_barriers: int = 64) -> None:
        self.max_pending, self.max_barriers = max_pending, max_barriers
        self._seq = 0
        self._pending: OrderedDict[str, tuple[int, Frame]] = OrderedDict()
        self._barriers: OrderedDict[str, _Barrier] = OrderedDict()
        self.kernel_session = ""  # header.session of the kernel's latest shell reply
        self.evicted = 0  # pending entries dropped at the bound (never sent again: safe)

    # ------------------------------------------------------------------ what was sent

    def sent(self, frame: Frame) -> None:
        """`frame` (on shell) was written to the gateway hop."""
        self._seq += 1
        self._pending[frame.msg_id] = (self._seq, frame)
        self._pending.move_to_end(frame.msg_id)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            self.evicted += 1

    def unsend(self, frame: Frame) -> None:
        """Writing `frame` failed at once: it never left."""
        self._pending.pop(frame.msg_id, None)

    def in_doubt(self) -> bool:
        return bool(self._pending)

    # ------------------------------------------------------------------ what came back

    def observe(self, frame: Frame) -> bool:
        """Note what a message from the gateway says; True when it belongs to one of our
        barriers (its reply, its busy and idle: the browser never asked for them)."""
        parent = frame.parent_id
        if parent:
            self._pending.pop(parent, None)
            barrier = self._barriers.get(parent)
            if barrier is not None:
                if frame.channel == "shell" and frame.msg_type.endswith("_reply"):
                    barrier.replied = True
                    barrier.kernel_session = str(frame.header.get("session", ""))
                return True
        if frame.channel == "shell" and frame.msg_type.endswith("_reply"):
            self.kernel_session = str(frame.header.get("session", ""))
        elif frame.channel == "iopub" and frame.msg_type == "status" and \
                frame.content().get("execution_state") in KERNEL_GONE:
            # A new kernel process never got what the old one had not answered: nothing
            # pending may be sent into it.
            self._pending.clear()
        return False

    # ------------------------------------------------------------------ barriers

    def barrier(self, session_id: str) -> Frame:
        """A kernel_info_request to send on shell after every message in doubt."""
        self._seq += 1
        header = {"msg_id": uuid.uuid4().hex, "msg_type": "kernel_info_request",
                  "username": USERNAME, "session": session_id,
                  "date": datetime.now(UTC).isoformat(), "version": PROTOCOL_VERSION}
        self._barriers[header["msg_id"]] = _Barrier(self._seq)
        while len(self._barriers) > self.max_barriers:
            self._barriers.popitem(last=False)
        return framing.make("shell", header, {}, {})

    def _answering(self) -> _Barrier | None:
        """An answered barrier sent after every message in doubt."""
        newest = max((seq for seq, _ in self._pending.values()), default=0)
        return next((b for b in self._barriers.values() if b.seq > newest and b.replied), None)

    def answered(self) -> bool:
        """Every message in doubt can be decided now."""
        return not self._pending or self._answering() is not None

    def settle(self) -> Settlement:
        """Decide every message in doubt, once `answered()`; the ledger is empty afterwards."""
        barrier = self._answering()
        frames = [frame for _, frame in self._pending.values()]
        self._pending.clear()
        if not frames:
            return Settlement()
        if barrier is None:
            return Settlement(given_up=frames, why="no barrier was answered")
        previous, self.kernel_session = self.kernel_session, barrier.kernel_session
        if previous and barrier.kernel_session and previous != barrier.kernel_session:
            return Settlement(given_up=frames, why="the kernel restarted while the gateway "
                              "was unreachable; it may or may not have run this")
        settlement = Settlement(why="nothing shows whether the kernel got it, and it is not "
                                    "ordered with the kernel_info barrier")
        for frame in frames:
            ordered = frame.msg_type.endswith("_request") and \
                not frame.header.get("subshell_id")
            (settlement.resend if ordered else settlement.given_up).append(frame)
        return settlement
