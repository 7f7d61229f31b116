"""One server-to-client websocket frame, written so that its report can follow at once.

A replica reports each message to the kernel Pod's journal right after the message's bytes
reach the client's socket; a replica killed (SIGKILL) between the two sends that message to
the client again when the client resumes elsewhere. Two things made that window wide:

- Tornado's `write_message` runs its framing tail and makes a Task between the two sends.
  Here, when Tornado has nothing queued for the socket, the frame (built beforehand) is one
  `send` and the report is the very next statement.
- A `send` on a local socket wakes the reader (nginx, the client), and the scheduler often
  lets it preempt the sender right at the return of that `send`: inside the window. So the
  frame goes out on a corked socket (TCP_CORK: queued in the kernel, nobody woken), the report
  is sent, and only then is the socket uncorked. A process that dies while corked still has
  its queued bytes sent by the kernel when it closes the socket (the FIN pushes them), so
  from the first `send` on both the message and, once sent, its report are out for good.

Anything else (bytes already queued, a partial send) goes through Tornado's stream, whose
order this keeps. Server frames are unmasked (RFC 6455, 5.1); the gateway negotiates no
compression.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from tornado.iostream import IOStream, StreamClosedError

TEXT, BINARY = 0x1, 0x2
FIN = 0x80
CORK = getattr(socket, "TCP_CORK", None)  # Linux


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
        sock = stream.socket
        corked = _cork(sock, True)
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False  # the connection is gone; Tornado's read side closes the handler
        if sent == len(data):
            report()
            if corked:
                _cork(sock, False)
            return True
        if corked:
            _cork(sock, False)
    try:
        # The rest waits in Tornado's buffer; an empty write's future resolves once the
        # buffer has drained up to here.
        stream.write(data[sent:])
        stream.write(b"").add_done_callback(
            lambda f: report() if not f.cancelled() and f.exception() is None else None)
    except StreamClosedError:
        return False
    return True


def _cork(sock: socket.socket, on: bool) -> bool:
    """Set TCP_CORK; False where there is none (not Linux, not TCP)."""
    if CORK is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, CORK, 1 if on else 0)
    except OSError:
        return False
    return True
