"""The websocket handler for /api/kernels/{id}/channels.

It accepts the upgrade, picks the wire format (wire.py), attaches the websocket to the
client's session (sessions.py), and relays frames in both directions; the ZMQ side is the
kernel connection's (connection.py).

- TCP_NODELAY is set on open: without it every small frame after the first waits ~40 ms
  for the client's delayed ACK (Nagle), the peers' main latency cost.
- The upgrade completes only after the kernel answered kernel_info and iopub is live.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import zmq
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway import frame_out
from kernelkeeper.gateway.base import GatewayMixin
from kernelkeeper.gateway.connection import KernelConnection
from kernelkeeper.gateway.errors import GatewayError, KernelUnavailable, not_found
from kernelkeeper.gateway.rate import TokenBucket
from kernelkeeper.gateway.sessions import ClientSession
from kernelkeeper.gateway.wire import (
    V1_PROTOCOL,
    KernelMessage,
    MalformedFrame,
    decode_client,
    encode_for,
)

log = logging.getLogger(__name__)

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
# "Service restart": clients reconnect, as they do for 1001.
SERVICE_RESTART = 1012


class ChannelsHandler(GatewayMixin, WebSocketHandler):
    conn: KernelConnection
    client: ClientSession | None = None
    session_id: str = ""
    protocol: str = ""
    bucket: TokenBucket | None = None

    @property
    def manager(self) -> Any:
        return self.settings["kk_manager"]

    async def get(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        if not crd.is_kernel_id(kernel_id):
            raise not_found(kernel_id)
        if self.settings["kk_draining"]():
            raise GatewayError(503, "Service Unavailable", "gateway is shutting down")
        conn = await self.manager.connection_for(self.identity, kernel_id)
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
            return bool(origin == allow)
        return super().check_origin(origin)

    def get_compression_options(self) -> None:
        return None

    def open(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        cfg, metrics = self.settings["kk_config"], self.settings["kk_metrics"]
        self.protocol = self.selected_subprotocol or ""
        metrics.inc("websocket_connections_total", protocol="v1" if self.protocol else "legacy")
        try:
            client = ClientSession.resume_or_open(
                self.conn, self.session_id or uuid.uuid4().hex,
                max_messages=cfg.buffer_max_messages, max_bytes=cfg.buffer_max_bytes,
                timeout=cfg.buffer_timeout, metrics=metrics, keep=bool(self.session_id))
        except zmq.ZMQError as exc:
            # Out of sockets or files: say so, rather than a bare connection reset.
            log.error("kernel %s: cannot open kernel sockets for a client: %s",
                      self.conn.kernel_id, exc)
            self.close_quietly(1011, f"gateway cannot open kernel sockets: {exc}"[:120])
            return
        self.client = client
        if cfg.ws_max_messages_per_second > 0:
            self.bucket = TokenBucket(cfg.ws_max_messages_per_second, cfg.ws_burst_messages)
        self.settings["kk_sockets"].add(self)
        client.attach(self)

    def on_message(self, message: str | bytes) -> None:
        client = self.client
        if client is None:
            return
        if self.bucket is not None and not self.bucket.take():
            cfg = self.settings["kk_config"]
            self.settings["kk_metrics"].inc("websocket_rate_limited_total")
            log.warning("kernel %s: closing a websocket over its message rate",
                        self.conn.kernel_id)
            self.client = None
            client.detach(self)
            self.close_quietly(POLICY_VIOLATION,
                               f"more than {cfg.ws_max_messages_per_second:g} messages/s "
                               f"(burst {cfg.ws_burst_messages})")
            return
        availability = self.settings.get("kk_availability")
        if availability is not None and not availability.serving() \
                and not self.settings["kk_draining"]():
            # A fenced holder forwards nothing: the client reconnects to the new holder. A
            # stopping replica still forwards until Gateway.stop closes the websocket: what
            # the kernel answers after that reaches the client through the replica it
            # reconnects to (the journal pushes the replies to it).
            self.close_quietly(SERVICE_RESTART, "replica is not active")
            return
        try:
            msg = decode_client(message, self.protocol, self.conn.session.pack)
        except MalformedFrame as exc:
            log.warning("kernel %s: dropping a malformed client message: %s",
                        self.conn.kernel_id, exc)
            return
        if not msg.is_housekeeping():
            self.conn.touch()
        client.send(msg.channel, msg.parts, msg.buffers)

    def send_kernel_msg(self, msg: KernelMessage,
                        flushed: Callable[[], None] | None = None) -> bool:
        """Write one message; `flushed` runs once its bytes are in the socket (at once,
        normally; when the client reads slowly, once Tornado's buffer has drained)."""
        ws = self.ws_connection
        if ws is None or ws.is_closing():
            return False
        payload, binary = encode_for(msg, self.protocol)
        stream = getattr(ws, "stream", None)
        if flushed is not None and stream is not None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            return frame_out.write_then_report(
                stream, frame_out.frame(data, frame_out.BINARY if binary else frame_out.TEXT),
                flushed)
        try:
            self.write_message(payload, binary=binary)
        except WebSocketClosedError:
            return False
        return True

    def close_quietly(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            self.close(code, reason)

    def on_close(self) -> None:
        self.settings["kk_sockets"].discard(self)
        if self.client is not None:
            self.client.detach(self)
