"""The launcher's tiny HTTP endpoint: the readiness probe, its status and its metrics.

``GET /healthz`` answers 200 only while the kernel answers; ``GET /status`` always answers
with the supervisor's JSON status, which the operator reads to count in-place restarts and to
see a busy kernel; ``GET /metrics`` gives the journal's size and evictions in Prometheus text.
Nothing here takes input beyond the request path, so a bare asyncio server is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from kernelkeeper.kernel import contract

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def respond(path: str, method: str, status: Callable[[], dict[str, Any]]) -> tuple[int, bytes]:
    if method not in ("GET", "HEAD"):
        return 405, b'{"error": "method not allowed"}'
    path = path.split("?", 1)[0]
    st = status()
    if path == contract.HEALTH_PATH:
        body = json.dumps({"ready": st["ready"], "state": st["state"]}).encode()
        return (200 if st["ready"] else 503), body
    if path == contract.STATUS_PATH:
        return 200, json.dumps(st).encode()
    if path == contract.METRICS_PATH:
        return 200, metrics_text(st).encode()
    return 404, b'{"error": "not found"}'


# (status key in "journal", metric name, type, help)
_JOURNAL_METRICS = (
    ("messages", "journal_messages", "gauge", "Messages the journal holds."),
    ("bytes", "journal_bytes", "gauge", "Bytes the journal holds."),
    ("maxMessages", "journal_max_messages", "gauge", "The journal's bound in messages."),
    ("maxBytes", "journal_max_bytes", "gauge", "The journal's bound in bytes."),
    ("evictedMessages", "journal_evicted_messages_total", "counter",
     "Messages evicted to stay within the bounds."),
    ("evictedBytes", "journal_evicted_bytes_total", "counter",
     "Bytes evicted to stay within the bounds."),
    ("sessions", "journal_sessions", "gauge", "Client sessions with a cursor."),
)


def metrics_text(st: dict[str, Any]) -> str:
    journal = st.get("journal") or {}
    lines = []
    for key, name, kind, text in _JOURNAL_METRICS:
        full = f"kernelkeeper_kernel_{name}"
        lines += [f"# HELP {full} {text}", f"# TYPE {full} {kind}",
                  f"{full} {int(journal.get(key) or 0)}"]
    restarts = "kernelkeeper_kernel_restarts_total"
    lines += [f"# HELP {restarts} In-place kernel restarts.", f"# TYPE {restarts} counter",
              f"{restarts} {int(st.get('restarts') or 0)}"]
    return "\n".join(lines) + "\n"


async def serve(host: str, port: int, status: Callable[[], dict[str, Any]]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            code, body = respond(path, method, status)
            kind = ("text/plain; version=0.0.4" if path.startswith(contract.METRICS_PATH)
                    else "application/json")
            writer.write(
                f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError,
                asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, reuse_address=True)
