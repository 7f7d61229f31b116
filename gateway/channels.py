"""The websocket bridge: /api/kernels/{id}/channels <-> the kernel's ZMQ sockets.

- Wire formats: the legacy JSON protocol (text frames; binary frames when there are buffers)
  and v1.kernel.websocket.jupyter.org (chosen when the client offers it).
- A ClientSession per (kernel, session_id) owns DEALER sockets whose ZMQ identity is the
  session_id, so replies and input_requests reach the right client. It outlives its
  websocket: while no socket is attached, output is buffered (bounded by count and bytes)
  and replayed in order when a websocket with the same session_id comes back. A newer
  websocket with the same session_id replaces a stale one.
- TCP_NODELAY is set on open: without it every small frame after the first waits ~40 ms
  for the client's delayed ACK (Nagle), the peers' main latency cost.
- The upgrade completes only after the kernel answered kernel_info and iopub is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import uuid
from collections import deque
from typing import Any

import zmq.asyncio
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway.base import GatewayMixin
from kernelkeeper.gateway.connection import KernelConnection, KernelMessage
from kernelkeeper.gateway.errors import GatewayError, KernelUnavailable, not_found

log = logging.getLogger(__name__)

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CLIENT_CHANNELS = ("shell", "control", "stdin")
GOING_AWAY = 1001
# "Service restart": clients reconnect, as they do for 1001.
SERVICE_RESTART = 1012

# ---------------------------------------------------------------------- wire formats


def v1_frame(msg: KernelMessage) -> bytes:
    """u64le count, u64le offsets, then channel|header|parent|metadata|content|buffers."""
    parts = [msg.channel.encode(), *msg.parts, *msg.buffers]
    count = len(parts) + 1
    offsets, pos = [], 8 * (count + 1)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    offsets.append(pos)
    return b"".join([struct.pack(f"<{count + 1}Q", count, *offsets), *parts])


def v1_parse(data: bytes) -> tuple[str, list[bytes], list[bytes]]:
    (count,) = struct.unpack_from("<Q", data, 0)
    if count < 6 or 8 * (count + 1) > len(data):
        raise ValueError("bad v1 frame")
    offsets = struct.unpack_from(f"<{count}Q", data, 8)
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
    return parts[0].decode(), [p or b"{}" for p in parts[1:5]], parts[5:]


def legacy_json(msg: KernelMessage) -> bytes:
    """The legacy JSON object, assembled from the raw parts without re-encoding them."""
    header = msg.header
    return b'{"header":%s,"msg_id":%s,"msg_type":%s,"parent_header":%s,"metadata":%s,' \
           b'"content":%s,"buffers":[],"channel":"%s"}' % (
               msg.parts[0], json.dumps(header.get("msg_id")).encode(),
               json.dumps(header.get("msg_type")).encode(), msg.parts[1], msg.parts[2],
               msg.parts[3], msg.channel.encode())


def legacy_binary(msg: KernelMessage) -> bytes:
    """u32be nbufs, u32be offsets, JSON (without buffers), then the buffers."""
    parts = [legacy_json(msg).replace(b'"buffers":[],', b"", 1), *msg.buffers]
    offsets, pos = [], 4 * (len(parts) + 1)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    return b"".join([struct.pack(f">{len(parts) + 1}I", len(parts), *offsets), *parts])


def legacy_parse(data: str | bytes) -> tuple[dict[str, Any], list[bytes]]:
    if isinstance(data, str):
        return json.loads(data), []
    (nbufs,) = struct.unpack_from(">I", data, 0)
    if nbufs < 1 or 4 * (nbufs + 1) > len(data):
        raise ValueError("bad binary frame")
    offsets = [*struct.unpack_from(f">{nbufs}I", data, 4), len(data)]
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(nbufs)]
    return json.loads(parts[0]), parts[1:]


def encode_for(msg: KernelMessage, protocol: str) -> tuple[bytes, bool]:
    """(payload, binary) for a client speaking `protocol`; cached on the message so a fan-out
    to many clients encodes once."""
    key = protocol or ("legacy-bin" if msg.buffers else "legacy")
    hit = msg.cache.get(key)
    if hit is None:
        if protocol == V1_PROTOCOL:
            hit = (v1_frame(msg), True)
        elif msg.buffers:
            hit = (legacy_binary(msg), True)
        else:
            hit = (legacy_json(msg), False)
        msg.cache[key] = hit
    return hit


# ---------------------------------------------------------------------- client sessions


class ClientSession:
    """A client's identity on one kernel, with its sockets and its reconnect buffer."""

    def __init__(self, conn: KernelConnection, session_id: str, *, max_messages: int,
                 max_bytes: int, timeout: float, metrics: Any, keep: bool) -> None:
        self.conn = conn
        self.session_id = session_id
        self.max_messages, self.max_bytes, self.timeout = max_messages, max_bytes, timeout
        self.metrics = metrics
        self.keep = keep  # False when the client gave no session_id: nobody can come back
        self.handler: ChannelsHandler | None = None
        self.buffer: deque[KernelMessage] = deque()
        self.buffer_bytes = 0
        self._expiry: asyncio.TimerHandle | None = None
        self.sockets: dict[str, zmq.asyncio.Socket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        identity = session_id.encode()
        for channel in CLIENT_CHANNELS:
            sock = conn.open_socket(channel, identity)
            self.sockets[channel] = sock
            self._tasks.append(conn.spawn(conn.pump(sock, channel, self.deliver)))
        conn.clients[session_id] = self

    def connected(self) -> bool:
        return self.handler is not None

    def deliver(self, msg: KernelMessage) -> None:
        handler = self.handler
        if handler is not None:
            try:
                handler.send_kernel_msg(msg)
                return
            except WebSocketClosedError:
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

    def attach(self, handler: ChannelsHandler) -> None:
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

    def detach(self, handler: ChannelsHandler) -> None:
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
        self.conn.send(sock, parts, buffers)

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


# ---------------------------------------------------------------------- the handler


class ChannelsHandler(GatewayMixin, WebSocketHandler):
    conn: KernelConnection
    client: ClientSession | None = None
    session_id: str = ""

    @property
    def manager(self) -> Any:
        return self.settings["kk_manager"]

    async def get(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        if not crd.is_kernel_id(kernel_id):
            raise not_found(kernel_id)
        if self.settings["kk_draining"]():
            raise GatewayError(503, "Service Unavailable", "gateway is shutting down")
        conn = await self.manager.connection(kernel_id)
        try:
            await conn.ensure_alive(self.manager.launch_timeout)
        except KernelUnavailable as exc:
            await self.manager.raise_for_unavailable(kernel_id, str(exc))
        self.conn = conn
        self.session_id = self.get_argument("session_id", "") or ""
        await super().get(kernel_id, *args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        cfg = self.settings["kk_config"]
        if V1_PROTOCOL in subprotocols and not cfg.prefer_legacy_protocol:
            return V1_PROTOCOL
        return None

    def check_origin(self, origin: str) -> bool:
        allow = self.settings["kk_config"].allow_origin
        if allow == "*":
            return True
        if allow:
            return origin == allow
        return super().check_origin(origin)

    def get_compression_options(self) -> None:
        return None

    def open(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        cfg, metrics = self.settings["kk_config"], self.settings["kk_metrics"]
        metrics.inc("websocket_connections_total")
        self.protocol = self.selected_subprotocol or ""
        sid = self.session_id or uuid.uuid4().hex
        client = self.conn.clients.get(sid)
        if not isinstance(client, ClientSession):
            try:
                client = ClientSession(self.conn, sid, max_messages=cfg.buffer_max_messages,
                                       max_bytes=cfg.buffer_max_bytes,
                                       timeout=cfg.buffer_timeout, metrics=metrics,
                                       keep=bool(self.session_id))
            except zmq.ZMQError as exc:
                # Out of sockets or files: say so, rather than a bare connection reset.
                log.error("kernel %s: cannot open kernel sockets for a client: %s",
                          self.conn.kernel_id, exc)
                self.close_quietly(1011, f"gateway cannot open kernel sockets: {exc}"[:120])
                return
        self.client = client
        self.settings["kk_sockets"].add(self)
        client.attach(self)

    def on_message(self, message: str | bytes) -> None:
        client = self.client
        if client is None:
            return
        availability = self.settings.get("kk_availability")
        if availability is not None and not availability.serving():
            # A fenced holder forwards nothing: the client reconnects to the new holder.
            self.close_quietly(SERVICE_RESTART, "replica is not active")
            return
        try:
            if isinstance(message, bytes) and self.protocol == V1_PROTOCOL:
                channel, parts, buffers = v1_parse(message)
                msg_type = ""
            else:
                msg, buffers = legacy_parse(message)
                channel = msg.pop("channel", None) or "shell"
                pack = self.conn.session.pack
                header = msg.get("header") or {}
                msg_type = str(header.get("msg_type", ""))
                parts = [pack(header), pack(msg.get("parent_header") or {}),
                         pack(msg.get("metadata") or {}), pack(msg.get("content") or {})]
        except (ValueError, TypeError, struct.error) as exc:
            log.warning("kernel %s: dropping a malformed client message: %s",
                        self.conn.kernel_id, exc)
            return
        if msg_type not in ("kernel_info_request", "comm_info_request"):
            self.conn.touch()
        client.send(channel, parts, buffers)

    def send_kernel_msg(self, msg: KernelMessage) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            raise WebSocketClosedError()
        payload, binary = encode_for(msg, self.protocol)
        self.write_message(payload, binary=binary)

    def close_quietly(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            self.close(code, reason)

    def on_close(self) -> None:
        self.settings["kk_sockets"].discard(self)
        if self.client is not None:
            self.client.detach(self)
