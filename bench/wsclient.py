"""A Jupyter websocket client for measurements (the JSON protocol every peer speaks).

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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import websocket

from bench.protocol import (
    STREAM_BYTES,
    STREAM_CODE,
    BenchError,
    LatencyResult,
    ThroughputResult,
    execute_content,
    new_msg,
)


def channels_url(base_url: str, kernel_id: str, session: str) -> str:
    ws_base = "ws" + base_url[len("http"):] if base_url.startswith("http") else base_url
    return (f"{ws_base.rstrip('/')}/api/kernels/{quote(kernel_id)}/channels"
            f"?session_id={quote(session)}")


def _decode_binary(data: bytes) -> dict[str, Any]:
    """Legacy binary frame: nbufs, offsets (uint32 big-endian), JSON message, buffers."""
    nbufs = struct.unpack("!I", data[:4])[0]
    offsets = struct.unpack(f"!{nbufs}I", data[4:4 + 4 * nbufs])
    end = offsets[1] if nbufs > 1 else len(data)
    return json.loads(data[offsets[0]:end])


@dataclass
class ExecOutcome:
    seconds: float
    reply: dict[str, Any]
    stream_bytes: int
    messages: int
    wire_bytes: int
    msg_types: list[str] = field(default_factory=list)
    text: str = ""  # stream output, only when asked for (collect_text)


class KernelWebSocket:
    def __init__(self, base_url: str, kernel_id: str, token: str | None = None, *,
                 connect_timeout: float = 30.0, nodelay: bool = True) -> None:
        self.session = uuid.uuid4().hex
        self.url = channels_url(base_url, kernel_id, self.session)
        headers = [f"Authorization: token {token}"] if token else []
        sockopt = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if nodelay else []
        try:
            self.ws = websocket.create_connection(
                self.url, timeout=connect_timeout, header=headers, sockopt=sockopt,
                skip_utf8_validation=True, enable_multithread=False,
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise BenchError(f"websocket connect to /api/kernels/{kernel_id[:8]}…/channels "
                             f"failed: {exc!r}") from exc

    def close(self) -> None:
        try:
            self.ws.close(timeout=2)
        except (OSError, websocket.WebSocketException):
            pass

    def __enter__(self) -> KernelWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, deadline: float) -> tuple[dict[str, Any], int]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError("timed out")
        self.ws.settimeout(remaining)
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException as exc:
            raise BenchError("timed out") from exc
        except (OSError, websocket.WebSocketException) as exc:
            raise BenchError(f"websocket closed: {exc!r}") from exc
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return json.loads(data), len(data)
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return _decode_binary(data), len(data)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise BenchError("websocket closed by the server")
        return {}, len(data)

    def execute(self, code: str, timeout: float = 30.0, *,
                collect_text: bool = False) -> ExecOutcome:
        """Send execute_request; return once execute_reply AND status idle have arrived."""
        msg = new_msg("execute_request", execute_content(code), self.session)
        msg_id = msg["header"]["msg_id"]
        payload = json.dumps(msg)
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        try:
            self.ws.send(payload)
        except (OSError, websocket.WebSocketException) as exc:
            raise BenchError(f"send failed: {exc!r}") from exc
        reply: dict[str, Any] | None = None
        idle = False
        stream_bytes = messages = wire = 0
        types: list[str] = []
        chunks: list[str] = []
        while reply is None or not idle:
            try:
                m, size = self._recv(deadline)
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


def check_ok(outcome: ExecOutcome) -> None:
    status = outcome.reply.get("content", {}).get("status")
    if status != "ok":
        content = outcome.reply.get("content", {})
        raise BenchError(f"execute_reply status {status}: {content.get('ename')} "
                         f"{content.get('evalue')}")


def measure_latency(ws: KernelWebSocket, runs: int, warmup: int = 10,
                    timeout: float = 30.0) -> LatencyResult:
    for _ in range(warmup):
        check_ok(ws.execute("pass", timeout))
    samples: list[float] = []
    for _ in range(runs):
        out = ws.execute("pass", timeout)
        check_ok(out)
        samples.append(out.seconds * 1000)
    return LatencyResult(samples)


def measure_throughput(ws: KernelWebSocket, timeout: float = 300.0) -> ThroughputResult:
    t0 = time.perf_counter()
    try:
        out = ws.execute(STREAM_CODE, timeout)
        check_ok(out)
    except BenchError as exc:
        # Keep the partial numbers: "how much arrived before it failed" is the result.
        return ThroughputResult(STREAM_BYTES, exc.stream_bytes, time.perf_counter() - t0,
                                exc.messages, error=str(exc))
    return ThroughputResult(STREAM_BYTES, out.stream_bytes, out.seconds, out.messages,
                            wire_bytes=out.wire_bytes)
