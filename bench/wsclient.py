"""A Jupyter websocket client for measurements, in either wire protocol every server may speak.

- legacy: one JSON text frame per message (the binary form with buffers is decoded too);
- `v1.kernel.websocket.jupyter.org`: one binary frame per message, offsets then the channel,
  header, parent_header, metadata and content as separate JSON parts.

It sets TCP_NODELAY on its own socket so the client never adds Nagle delay; whatever delay remains
comes from the server side. One request at a time, synchronous, so nothing else competes with the
measured round trip.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid
from typing import Any
from urllib.parse import quote

import websocket

from bench import measure
from bench.protocol import BenchError, ExecOutcome, execute_content, new_msg

V1 = "v1.kernel.websocket.jupyter.org"


class ProtocolNotSelected(BenchError):
    """The server answered the websocket without the subprotocol offered: it does not speak it."""


def channels_url(base_url: str, kernel_id: str, session: str) -> str:
    ws_base = "ws" + base_url[len("http"):] if base_url.startswith("http") else base_url
    return (f"{ws_base.rstrip('/')}/api/kernels/{quote(kernel_id)}/channels"
            f"?session_id={quote(session)}")


def _decode_legacy_binary(data: bytes) -> dict[str, Any]:
    """Legacy binary frame: nbufs, offsets (uint32 big-endian), JSON message, buffers."""
    nbufs = struct.unpack("!I", data[:4])[0]
    offsets = struct.unpack(f"!{nbufs}I", data[4:4 + 4 * nbufs])
    end = offsets[1] if nbufs > 1 else len(data)
    return dict(json.loads(data[offsets[0]:end]))


def _encode_v1(msg: dict[str, Any]) -> bytes:
    """v1 frame: n, n offsets (uint64 little-endian; the last is the end), then the parts."""
    parts = [msg["channel"].encode(),
             *(json.dumps(msg[k]).encode()
               for k in ("header", "parent_header", "metadata", "content"))]
    offsets, pos = [], 8 * (len(parts) + 2)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    offsets.append(pos)
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def _decode_v1(data: bytes) -> dict[str, Any]:
    (n,) = struct.unpack_from("<Q", data, 0)
    offsets = struct.unpack_from(f"<{n}Q", data, 8)

    def part(i: int) -> bytes:
        return data[offsets[i]:offsets[i + 1]]
    # Metadata (part 3) and buffers are not needed to measure: they stay undecoded.
    return {"channel": part(0).decode(), "header": json.loads(part(1)),
            "parent_header": json.loads(part(2)), "content": json.loads(part(4))}


class KernelWebSocket:
    """One websocket to /api/kernels/{id}/channels (a `KernelClient`).

    `protocol=V1` offers v1.kernel.websocket.jupyter.org; `connect` fails if the server does not
    select it, so a figure labelled v1 is never the legacy protocol.
    """

    def __init__(self, base_url: str, kernel_id: str, token: str | None = None, *,
                 protocol: str | None = None, nodelay: bool = True) -> None:
        self.session = uuid.uuid4().hex
        self.kernel_id = kernel_id
        self.url = channels_url(base_url, kernel_id, self.session)
        self.token = token
        self.protocol = protocol
        self.nodelay = nodelay
        self.ws: websocket.WebSocket | None = None

    def connect(self, timeout: float = measure.EXECUTE_TIMEOUT) -> None:
        headers = [f"Authorization: token {self.token}"] if self.token else []
        sockopt = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if self.nodelay else []
        where = f"/api/kernels/{self.kernel_id[:8]}…/channels"
        try:
            ws = websocket.create_connection(
                self.url, timeout=timeout, header=headers, sockopt=sockopt,
                subprotocols=[self.protocol] if self.protocol else None,
                skip_utf8_validation=True, enable_multithread=False,
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise BenchError(f"websocket connect to {where} failed: {exc!r}") from exc
        selected = ws.getsubprotocol() or None
        if selected != self.protocol:
            ws.close()
            raise ProtocolNotSelected(f"offered {self.protocol or 'no subprotocol'}, "
                                      f"the server selected {selected or 'none'}")
        self.ws = ws

    def close(self) -> None:
        if self.ws is None:
            return
        try:
            self.ws.close(timeout=2)
        except (OSError, websocket.WebSocketException):
            pass
        self.ws = None

    def __enter__(self) -> KernelWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, ws: websocket.WebSocket, deadline: float) -> tuple[dict[str, Any], int]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError("timed out")
        ws.settimeout(remaining)
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException as exc:
            raise BenchError("timed out") from exc
        except (OSError, websocket.WebSocketException) as exc:
            raise BenchError(f"websocket closed: {exc!r}") from exc
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return json.loads(data), len(data)
        if opcode == websocket.ABNF.OPCODE_BINARY:
            msg = _decode_v1(data) if self.protocol == V1 else _decode_legacy_binary(data)
            return msg, len(data)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise BenchError("websocket closed by the server")
        return {}, len(data)

    def _send(self, ws: websocket.WebSocket, msg: dict[str, Any]) -> None:
        try:
            if self.protocol == V1:
                ws.send_binary(_encode_v1(msg))
            else:
                ws.send(json.dumps(msg))
        except (OSError, websocket.WebSocketException) as exc:
            raise BenchError(f"send failed: {exc!r}") from exc

    def execute(self, code: str, timeout: float = measure.EXECUTE_TIMEOUT, *,
                collect_text: bool = False) -> ExecOutcome:
        """Send execute_request; return once execute_reply AND status idle have arrived."""
        ws = self.ws
        if ws is None:
            raise BenchError("websocket not connected")
        msg = new_msg("execute_request", execute_content(code), self.session)
        msg_id = msg["header"]["msg_id"]
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        self._send(ws, msg)
        reply: dict[str, Any] | None = None
        idle = False
        stream_bytes = messages = wire = 0
        types: list[str] = []
        chunks: list[str] = []
        while reply is None or not idle:
            try:
                m, size = self._recv(ws, deadline)
            except BenchError as exc:
                raise BenchError(
                    f"{exc} after {time.perf_counter() - t0:.1f}s waiting for "
                    f"{'execute_reply' if reply is None else 'status idle'} "
                    f"({stream_bytes} stream bytes, {messages} messages so far)",
                    stream_bytes=stream_bytes, messages=messages,
                ) from exc
            wire += size
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            messages += 1
            mtype = m.get("msg_type") or m.get("header", {}).get("msg_type")
            if len(types) < 20:
                types.append(f"{m.get('channel')}:{mtype}")
            if mtype == "execute_reply":
                reply = m
            elif mtype == "status" and m["content"].get("execution_state") == "idle":
                idle = True
            elif mtype == "stream":
                stream_bytes += len(m["content"].get("text", "").encode())
                if collect_text:
                    chunks.append(m["content"].get("text", ""))
        seconds = time.perf_counter() - t0
        return ExecOutcome(seconds, reply, stream_bytes, messages, wire, types, "".join(chunks))
