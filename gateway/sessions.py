"""Client sessions: a client's identity on one kernel, its sockets, its resume and its buffer.

A ClientSession per (kernel, session_id) owns DEALER sockets whose ZMQ identity is the
session_id plus this replica's suffix, so replies and input_requests reach the right client.

Resume: each websocket that attaches with a session_id first asks the kernel Pod's journal for
everything that session was not sent (by any replica), delivers it, then what arrived live
meanwhile (minus what the journal already had, by msg_id). What this replica writes to the
websocket is reported to the journal, which is where the session's cursor lives, so the next
replica knows where to resume. Journal overflow shows up as one stderr stream message saying
how many messages were lost.

The local buffer: while no websocket is attached, output is also kept here (bounded by count,
bytes and time). It is replayed only when the journal does not answer (a kernel Pod without a
reachable journal); otherwise the journal's replay replaces it. A newer websocket with the same
session_id replaces a stale one.

The websocket side is anything that can send a KernelMessage and close (`Attachment`); this
module knows nothing of Tornado.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

import zmq.asyncio

from kernelkeeper.gateway.connection import JournalReplay, KernelConnection
from kernelkeeper.gateway.metrics import Metrics
from kernelkeeper.gateway.wire import KernelMessage

log = logging.getLogger(__name__)

CLIENT_CHANNELS = ("shell", "control", "stdin")
REPLY_CHANNELS = ("shell", "control")  # where a *_request is answered by one *_reply
MAX_AWAITED = 256
RESUME_TIMEOUT = 5.0  # seconds the journal gets to answer before the local buffer is used


class Attachment(Protocol):
    """The websocket a client session is currently attached to."""

    def send_kernel_msg(self, msg: KernelMessage,
                        flushed: Callable[[], None] | None = None) -> bool:
        """Send; False when the socket is already closed (the message was not sent).
        `flushed` runs once the message's bytes have left this process."""

    def close_quietly(self, code: int, reason: str) -> None: ...


class ClientSession:
    """A client's identity on one kernel, with its sockets and its reconnect buffer."""

    def __init__(self, conn: KernelConnection, session_id: str, *, max_messages: int,
                 max_bytes: int, timeout: float, metrics: Metrics, keep: bool) -> None:
        self.conn = conn
        self.session_id = session_id
        self.max_messages, self.max_bytes, self.timeout = max_messages, max_bytes, timeout
        self.metrics = metrics
        self.keep = keep  # False when the client gave no session_id: nobody can come back
        self.handler: Attachment | None = None
        self.buffer: deque[KernelMessage] = deque()
        self.buffer_bytes = 0
        self.buffer_dropped = 0
        # While a resume is under way, what arrives is held here with whether the journal
        # pushed it (None: not resuming). A session that can be resumed holds from the start:
        # its first attach resumes it.
        self.holding: list[tuple[KernelMessage, bool]] | None = [] if keep else None
        self._resuming: asyncio.Task[None] | None = None
        # Once resumed from the journal, replies come only from it (replayed, then pushed as
        # the kernel sends them), whichever replica's identity they were addressed to: one
        # path, so their order is the kernel's (a live reply would overtake a pushed one).
        self.replies_via_journal = False
        # After a resume: iopub msg_ids the journal already had (written by the replay or by
        # a replica before), until this replica's own iopub stream has passed them.
        self._journaled: set[str] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        # Requests sent on shell/control whose reply has not come back (msg_id, oldest first):
        # a stopping replica waits a moment for them before it closes the websocket.
        self.awaiting: dict[str, None] = {}
        self.sockets: dict[str, zmq.asyncio.Socket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        identity = conn.client_identity(session_id)
        for channel in CLIENT_CHANNELS:
            sock = conn.open_socket(channel, identity)
            self.sockets[channel] = sock
            self._tasks.append(conn.spawn(conn.pump(sock, channel, self.deliver)))
        conn.clients[session_id] = self

    @classmethod
    def resume_or_open(cls, conn: KernelConnection, session_id: str, *, max_messages: int,
                       max_bytes: int, timeout: float, metrics: Metrics,
                       keep: bool) -> ClientSession:
        """The kernel's live session with this id (a reconnect), else a new one.
        Raises zmq.ZMQError when the sockets cannot be opened."""
        existing = conn.clients.get(session_id)
        if isinstance(existing, ClientSession):
            return existing
        return cls(conn, session_id, max_messages=max_messages, max_bytes=max_bytes,
                   timeout=timeout, metrics=metrics, keep=keep)

    def connected(self) -> bool:
        return self.handler is not None

    def deliver(self, msg: KernelMessage) -> None:
        if self.replies_via_journal and msg.channel in CLIENT_CHANNELS:
            return  # the journal pushes it (deliver_pushed)
        self._accept(msg, pushed=False)

    def deliver_pushed(self, msg: KernelMessage) -> None:
        """A reply the journal pushed for this session (it followed an earlier resume, or this
        one: a push can overtake the resume's answer on the way to this session)."""
        self._accept(msg, pushed=True)

    def _accept(self, msg: KernelMessage, *, pushed: bool) -> None:
        if self.awaiting and msg.channel in REPLY_CHANNELS:
            self.awaiting.pop(str(msg.parent.get("msg_id", "")), None)
        if self.holding is not None:
            self.holding.append((msg, pushed))
            return
        if self._journaled_already(msg):
            return
        self._write(msg)

    def _journaled_already(self, msg: KernelMessage) -> bool:
        """An iopub message the journal had when it answered the resume: the replay wrote it,
        or a replica did before. iopub comes in the kernel's order, so the first one the
        journal did not have ends the check."""
        if self._journaled is None or msg.channel != "iopub" or msg.local:
            return False
        if msg.msg_id in self._journaled:
            return True
        self._journaled = None
        return False

    def _write(self, msg: KernelMessage) -> None:
        handler = self.handler
        if handler is not None:
            report = None
            if self.keep and not msg.local:
                # Sent right after the message's bytes (gateway/frame_out.py says how close,
                # and what a kill in between costs).
                report = self.conn.sent_report(self.session_id, [msg.msg_id])
            if handler.send_kernel_msg(msg, report):
                return
            self.detach(handler)
        self._buffer(msg)

    def _buffer(self, msg: KernelMessage) -> None:
        self.buffer.append(msg)
        self.buffer_bytes += msg.size()
        while self.buffer and (len(self.buffer) > self.max_messages or
                               self.buffer_bytes > self.max_bytes):
            dropped = self.buffer.popleft()
            self.buffer_bytes -= dropped.size()
            self.buffer_dropped += 1
            self.metrics.inc("buffer_dropped_total")

    def attach(self, handler: Attachment) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        stale, self.handler = self.handler, handler
        if stale is not None and stale is not handler:
            log.info("kernel %s: session %s reconnected; closing the stale websocket",
                     self.conn.kernel_id, self.session_id)
            stale.close_quietly(1000, "replaced by a newer connection")
        self.conn.touch()
        if self.keep:
            if self._resuming is None:
                self.holding = [] if self.holding is None else self.holding
                self._resuming = asyncio.create_task(self._resume())
            return
        self._replay_buffer()

    def _replay_buffer(self) -> None:
        replay, self.buffer, self.buffer_bytes = self.buffer, deque(), 0
        if replay:
            log.info("kernel %s: replaying %d buffered messages to session %s (%d dropped)",
                     self.conn.kernel_id, len(replay), self.session_id, self.buffer_dropped)
            self.metrics.inc("replayed_messages_total", len(replay))
        self.buffer_dropped = 0
        for msg in replay:
            self.deliver(msg)

    async def _resume(self) -> None:
        try:
            replay = await self.conn.resume(self.session_id, RESUME_TIMEOUT)
        except zmq.ZMQError as exc:
            log.warning("kernel %s: cannot ask the journal to resume session %s: %s",
                        self.conn.kernel_id, self.session_id, exc)
            replay = None
        finally:
            self._resuming = None
        held, self.holding = self.holding or [], None
        if replay is None:
            # No journal: what this replica buffered is the best there is.
            self._replay_buffer()
            for msg, _ in held:
                self._write(msg)
            return
        self.buffer, self.buffer_bytes, self.buffer_dropped = deque(), 0, 0
        self._deliver_replay(replay, held)

    def _deliver_replay(self, replay: JournalReplay,
                        held: list[tuple[KernelMessage, bool]]) -> None:
        if replay.dropped:
            self.metrics.inc("journal_lost_messages_total", replay.dropped)
            log.warning("kernel %s: session %s lost %d messages to the journal's bounds",
                        self.conn.kernel_id, self.session_id, replay.dropped)
            self._write(self._loss_notice(replay))
        if replay.entries:
            log.info("kernel %s: resuming session %s with %d messages from the journal",
                     self.conn.kernel_id, self.session_id, len(replay.entries))
            self.metrics.inc("replayed_messages_total", len(replay.entries))
        # A session the journal knew may have replies addressed to a replica that is gone:
        # from now on they all come through the journal, in the kernel's order.
        self.replies_via_journal = replay.known
        seen = set()
        for msg in replay.entries:
            seen.add(msg.msg_id)
            self._write(msg)
        if replay.known:
            # Not for a new session: its cursor starts at the journal's present, so what this
            # replica holds for it is all it gets, and none of that may be dropped.
            self._journaled = seen | replay.recent_iopub
        for msg, pushed in held:
            if msg.channel in CLIENT_CHANNELS and not msg.local:
                if pushed and msg.msg_id in seen:
                    continue  # pushed, and journaled before the replay: the replay wrote it
                if self.replies_via_journal and not pushed:
                    continue  # this replica's live copy: the journal replayed it or pushes it
            if self._journaled_already(msg):
                continue  # for a known session `seen` is part of the check; a new one has none
            self._write(msg)

    def _loss_notice(self, replay: JournalReplay) -> KernelMessage:
        """The one thing a client sees of a gap: a stderr line in the cell that was running."""
        first = next((m for m in replay.entries if m.channel == "iopub"), None)
        text = (f"[kernelkeeper] {replay.dropped} output message(s) of this kernel were lost "
                f"while this client was away: the kernel's journal keeps the last "
                f"{replay.max_messages} messages ({replay.max_bytes} bytes).\n")
        _, parts = self.conn.pack("stream", {"name": "stderr", "text": text},
                                  parent=first.parent if first is not None else None)
        return KernelMessage("iopub", parts, [], local=True)

    def detach(self, handler: Attachment) -> None:
        if self.handler is not handler:
            return
        self.handler = None
        self.conn.touch()
        if not self.keep or self.conn.dead_reason:
            self.close()
        elif self._expiry is None:
            self._expiry = asyncio.get_running_loop().call_later(self.timeout, self.close)

    def send(self, channel: str, parts: list[bytes], buffers: list[bytes]) -> None:
        sock = self.sockets.get(channel)
        if sock is None:
            log.warning("kernel %s: dropping a message for unknown channel %r",
                        self.conn.kernel_id, channel)
            return
        if channel in REPLY_CHANNELS:
            self._await_reply(parts[0])
        self.conn.send(sock, parts, buffers)

    def _await_reply(self, header: bytes) -> None:
        try:
            fields = json.loads(header)
        except (ValueError, RecursionError):  # a v1 client's header, relayed unparsed
            return
        if isinstance(fields, dict) and str(fields.get("msg_type", "")).endswith("_request"):
            self.awaiting[str(fields.get("msg_id", ""))] = None
            while len(self.awaiting) > MAX_AWAITED:  # replies a kernel restart swallowed
                del self.awaiting[next(iter(self.awaiting))]

    def kernel_dead(self, reason: str) -> None:
        handler = self.handler
        if handler is not None:
            handler.close_quietly(1000, "kernel is dead")
        self.close()

    def close(self) -> None:
        if self._resuming is not None:
            self._resuming.cancel()
            self._resuming = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.conn.clients.get(self.session_id) is self:
            del self.conn.clients[self.session_id]
        for task in self._tasks:
            task.cancel()
        for sock in self.sockets.values():
            self.conn.close_socket(sock)
        self.sockets = {}
        self.buffer.clear()
