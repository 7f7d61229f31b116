"""Where gateways report what they wrote to a client's websocket: plain TCP, one line each.

A gateway reports each message right after its bytes reached the client's socket. A replica
killed between the two repeats that message to the client when it resumes elsewhere, so the
window between them must be as short as possible: this is one `send` on a socket the gateway
keeps open, with no queue and no I/O thread in between (ZMQ's would add both).

A line is ``<hex HMAC-SHA256 of the JSON with the kernel's key> <JSON>\\n`` where the JSON is
``{"session": ..., "ids": [msg_id, ...]}``. A report can only move a cursor forward, so a
replayed line changes nothing; a line that does not verify is dropped and the connection
closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging

from kernelkeeper.kernel.journal import Journal

log = logging.getLogger("kernelkeeper.kernel")

MAX_LINE = 256 * 1024


def sign(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode()


def report_line(key: bytes, session: str, msg_ids: list[str]) -> bytes:
    body = json.dumps({"session": session, "ids": msg_ids}, separators=(",", ":")).encode()
    return sign(key, body) + b" " + body + b"\n"


def parse_line(key: bytes, line: bytes) -> tuple[str, list[str]] | None:
    """(session, msg_ids) of a verified line; None for anything else."""
    sig, _, body = line.rstrip(b"\n").partition(b" ")
    if not body or not hmac.compare_digest(sig, sign(key, body)):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ids"), list):
        return None
    session = data.get("session")
    if not isinstance(session, str) or not session:
        return None
    return session, [str(i) for i in data["ids"][:4096]]


async def serve(host: str, port: int, journal: Journal, key: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                report = parse_line(key, line)
                if report is None:
                    log.warning("a sent-report that does not verify; closing its connection")
                    return
                journal.sent(*report)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, reuse_address=True, limit=MAX_LINE)
