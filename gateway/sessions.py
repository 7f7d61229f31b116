"""Client sessions: a client's identity on one kernel, its sockets and its reconnect buffer.

A ClientSession per (kernel, session_id) owns DEALER sockets whose ZMQ identity is the
session_id, so replies and input_requests reach the right client. It outlives its websocket:
while no socket is attached, output is buffered (bounded by count and bytes) and replayed in
order when a websocket with the same session_id comes back. A newer websocket with the same
session_id replaces a stale one.

The websocket side is anything that can send a KernelMessage and close (`Attachment`); this
module knows nothing of Tornado.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Protocol

import zmq.asyncio

from kernelkeeper.gateway.connection import KernelConnection
from kernelkeeper.gateway.metrics import Metrics
from kernelkeeper.gateway.wire import KernelMessage

log = logging.getLogger(__name__)

CLIENT_CHANNELS = ("shell", "control", "stdin")
REPLY_CHANNELS = ("shell", "control")  # where a *_request is answered by one *_reply
MAX_AWAITED = 256


class Attachment(Protocol):
    """The websocket a client session is currently attached to."""

    def send_kernel_msg(self, msg: KernelMessage) -> bool:
        """Send; False when the socket is already closed (the message was not sent)."""

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
        self._expiry: asyncio.TimerHandle | None = None
        # Requests sent on shell/control whose reply has not come back (msg_id, oldest first):
        # a stopping replica waits a moment for them before it closes the websocket.
        self.awaiting: dict[str, None] = {}
        self.sockets: dict[str, zmq.asyncio.Socket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        identity = session_id.encode()
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
        if self.awaiting and msg.channel in REPLY_CHANNELS:
            self.awaiting.pop(str(msg.parent.get("msg_id", "")), None)
        handler = self.handler
        if handler is not None:
            if handler.send_kernel_msg(msg):
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
        replay, self.buffer, self.buffer_bytes = self.buffer, deque(), 0
        if replay:
            log.info("kernel %s: replaying %d messages to session %s", self.conn.kernel_id,
                     len(replay), self.session_id)
            self.metrics.inc("replayed_messages_total", len(replay))
        for msg in replay:
            self.deliver(msg)
        self.conn.touch()

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
        except ValueError:
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
