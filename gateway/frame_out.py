"""One server-to-client websocket frame, written so that its report can follow at once.

A replica reports each message to the kernel Pod's journal right after the message's bytes
reach the client's socket; a replica killed (SIGKILL) between the two sends that message to
the client again when the client resumes elsewhere. Through Tornado's `write_message` the code
between the two sends is its framing tail, a Task per message and our bookkeeping; on a busy
machine a preempted replica sits inside that window often enough to show in the chaos soak.
Here, when Tornado has nothing queued for the socket, the frame (built beforehand) is one
`send` on the socket and the report is the very next statement. Anything else (bytes already
queued, a partial send) goes through Tornado's stream, whose order this keeps.

Server frames are unmasked (RFC 6455, 5.1); the gateway negotiates no compression.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from tornado.iostream import IOStream, StreamClosedError

TEXT, BINARY = 0x1, 0x2
FIN = 0x80


def frame(payload: bytes, opcode: int) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", FIN | opcode, size)
    elif size <= 0xFFFF:
        head = struct.pack("!BBH", FIN | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", FIN | opcode, 127, size)
    return head + payload


def write_then_report(stream: IOStream, data: bytes, report: Callable[[], None]) -> bool:
    """Write one frame; `report` runs right after its last byte is in the socket (at once,
    or once Tornado's buffer has drained up to it). False when the stream is closed."""
    if stream.closed():
        return False
    sent = 0
    if not stream.writing():
        try:
            sent = stream.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False  # the connection is gone; Tornado's read side closes the handler
        if sent == len(data):
            report()
            return True
    try:
        # The rest waits in Tornado's buffer; an empty write's future resolves once the
        # buffer has drained up to here.
        stream.write(data[sent:])
        stream.write(b"").add_done_callback(
            lambda f: report() if not f.cancelled() and f.exception() is None else None)
    except StreamClosedError:
        return False
    return True
