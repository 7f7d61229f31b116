"""One websocket from jupyter_server to the gateway for one kernel and session: the gateway hop.

It offers v1.kernel.websocket.jupyter.org (kept when the gateway selects it, legacy JSON
otherwise), sets TCP_NODELAY on its socket, pings so that a half-open connection is noticed,
and hands every message to a callback as a Frame. `closed` resolves when it is gone, for
whatever reason. Opening it says whether trying again can help (`HopRefused.final`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from kernelkeeper.lab import framing

# Answers to the upgrade that no retry changes: the kernel or the route is gone, or we may not.
FINAL_STATUSES = frozenset({400, 401, 403, 404, 410})


class HopRefused(Exception):
    """The gateway hop could not be opened; `final` when trying again cannot help."""

    def __init__(self, why: str, *, final: bool = False) -> None:
        super().__init__(why)
        self.final = final


def channels_url(ws_base: str, kernels_endpoint: str, kernel_id: str, session_id: str) -> str:
    return (f"{ws_base.rstrip('/')}/{kernels_endpoint.strip('/')}/{quote(kernel_id, safe='')}"
            f"/channels?session_id={quote(session_id, safe='')}")


class GatewayHop:
    """An open websocket to the gateway; build it with `open`."""

    def __init__(self, on_frame: Callable[[framing.Frame], None],
                 on_malformed: Callable[[Exception], None]) -> None:
        self.conn: WebSocketClientConnection | None = None
        self.protocol = framing.LEGACY
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_frame = on_frame
        self._on_malformed = on_malformed
        # Tornado may deliver the first messages before the connect call returns (its read
        # loop starts with the upgrade): they wait here until the protocol is known.
        self._early: list[str | bytes | None] | None = []

    @classmethod
    async def open(cls, url: str, request_args: dict[str, Any], *,
                   on_frame: Callable[[framing.Frame], None],
                   on_malformed: Callable[[Exception], None],
                   ping_interval: float, ping_timeout: float,
                   max_message_size: int) -> GatewayHop:
        """Connect; the frames that arrived meanwhile are delivered before this returns.
        Raises HopRefused."""
        hop = cls(on_frame, on_malformed)
        try:
            conn = await websocket_connect(
                HTTPRequest(url, **request_args), on_message_callback=hop._received,
                ping_interval=ping_interval or None, ping_timeout=ping_timeout or None,
                max_message_size=max_message_size, subprotocols=[framing.V1])
        except HTTPClientError as exc:
            raise HopRefused(f"the gateway answered {exc.code}: {exc.message}",
                             final=exc.code in FINAL_STATUSES) from None
        except (TimeoutError, OSError, WebSocketClosedError) as exc:
            raise HopRefused(f"cannot reach the gateway: {exc!r}") from None
        hop.conn = conn
        hop.protocol = conn.selected_subprotocol or framing.LEGACY
        # Frames we write are small requests, each waited for: never hold one back for an ACK.
        if conn.protocol is not None:
            conn.protocol.set_nodelay(True)
        early, hop._early = hop._early or [], None
        for payload in early:
            hop._received(payload)
        return hop

    def _received(self, payload: str | bytes | None) -> None:
        if self._early is not None:
            self._early.append(payload)
            return
        if payload is None:
            self._gone()
            return
        try:
            frame = framing.decode(payload, self.protocol)
        except framing.MalformedFrame as exc:
            self._on_malformed(exc)
            return
        self._on_frame(frame)

    def write(self, frame: framing.Frame) -> bool:
        """Send; False when the hop is already closed (the frame was not sent)."""
        if self.closed.done() or self.conn is None:
            return False
        payload, binary = framing.encode(frame, self.protocol)
        try:
            written = self.conn.write_message(payload, binary=binary)
        except WebSocketClosedError:
            self._gone()
            return False
        # A write that fails later fails with the connection, which `closed` reports; the
        # caller's ledger decides what to do about frames written just before.
        written.add_done_callback(_ignore_failure)
        return True

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self._gone()

    def _gone(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def closed_by_gateway(self) -> bool:
        """The gateway closed it with a close frame (rather than the connection dying)."""
        return self.conn is not None and self.conn.close_code is not None

    def close_reason(self) -> str:
        conn = self.conn
        if conn is None or conn.close_code is None:
            return "connection lost"
        reason = f" {conn.close_reason}" if conn.close_reason else ""
        return f"closed by the gateway: {conn.close_code}{reason}"


def _ignore_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()
