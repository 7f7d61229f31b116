"""gateway/frame_out.py over a real socket pair: frames as RFC 6455 lays them out, reported
only once their bytes are in the socket, in order with what Tornado had queued."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import subprocess
import sys

import pytest
from tornado.iostream import IOStream

from kernelkeeper.gateway import frame_out


def _read_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame, parsed from the RFC's layout."""
    frames, at = [], 0
    while at < len(data):
        b0, b1 = data[at], data[at + 1]
        assert b0 & 0x80 and not b1 & 0x80, "FIN set, unmasked"
        size, at = b1 & 0x7F, at + 2
        if size == 126:
            (size,), at = struct.unpack_from("!H", data, at), at + 2
        elif size == 127:
            (size,), at = struct.unpack_from("!Q", data, at), at + 8
        frames.append((b0 & 0x0F, data[at:at + size]))
        at += size
    return frames


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000])
def test_frame_lengths(size):
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert _read_frames(frame_out.frame(payload, frame_out.BINARY)) == [(2, payload)]


async def _drain(peer: socket.socket, want: int) -> bytes:
    got = b""
    while len(got) < want:
        try:
            got += peer.recv(1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.001)
    return got


async def test_reported_at_once_when_nothing_is_queued():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    stream = IOStream(ours)
    reports: list[str] = []
    data = frame_out.frame(b'{"a": 1}', frame_out.TEXT)
    assert frame_out.write_then_report(stream, data, lambda: reports.append("a"))
    assert reports == ["a"], "reported in the same call, right after the send"
    assert _read_frames(await _drain(peer, len(data))) == [(1, b'{"a": 1}')]
    stream.close()
    peer.close()


async def test_a_slow_reader_gets_everything_in_order_and_reports_wait_for_the_bytes():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    stream = IOStream(ours)
    big = b"b" * 4_000_000  # far more than the socket buffers take
    stream.write(frame_out.frame(big, frame_out.BINARY))  # Tornado queues most of it
    assert stream.writing()
    reports: list[str] = []
    small = frame_out.frame(b"after", frame_out.TEXT)
    assert frame_out.write_then_report(stream, small, lambda: reports.append("small"))
    await asyncio.sleep(0.05)
    assert reports == [], "its bytes are still queued behind the big frame"
    received = await _drain(peer, len(big) + len(small) + 10)
    await asyncio.sleep(0.05)
    assert reports == ["small"]
    assert _read_frames(received) == [(2, big), (1, b"after")]
    stream.close()
    peer.close()


async def test_a_closed_stream_writes_nothing_and_reports_nothing():
    ours, peer = socket.socketpair()
    stream = IOStream(ours)
    stream.close()
    peer.close()
    reports: list[str] = []
    assert not frame_out.write_then_report(stream, frame_out.frame(b"x", frame_out.TEXT),
                                           lambda: reports.append("x"))
    assert reports == []


async def test_over_tcp_the_report_is_sent_before_the_reader_sees_the_frame():
    """The frame is queued corked, so the reader is not woken (and cannot preempt the
    writer) before the report is out; it gets the frame right after."""
    server = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(server.getsockname())
    ours, _ = server.accept()
    server.close()
    ours.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the gateway's sockets are
    ours.setblocking(False)
    peer.setblocking(False)
    stream = IOStream(ours)
    seen_at_report: list[bytes] = []

    def report() -> None:
        try:
            seen_at_report.append(peer.recv(1 << 16))
        except BlockingIOError:
            seen_at_report.append(b"")

    data = frame_out.frame(b"x" * 1000, frame_out.BINARY)
    assert frame_out.write_then_report(stream, data, report)
    assert seen_at_report == [b""], "the reader had the frame before the report was sent"
    assert _read_frames(await _drain(peer, len(data))) == [(2, b"x" * 1000)]
    assert not ours.getsockopt(socket.IPPROTO_TCP, frame_out.CORK), "left corked"
    stream.close()
    peer.close()


def test_a_process_killed_while_corked_still_delivers_what_it_queued():
    """What the write path relies on: the kernel sends a corked socket's queued bytes when
    the process owning it is SIGKILLed (the FIN pushes them)."""
    server = socket.create_server(("127.0.0.1", 0))
    script = (
        "import os, signal, socket, sys\n"
        f"s = socket.create_connection({server.getsockname()!r})\n"
        "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)\n"
        "s.sendall(b'queued while corked')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    child = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert child.returncode == -signal.SIGKILL
    conn, _ = server.accept()
    conn.settimeout(10)
    got = b""
    while chunk := conn.recv(1 << 16):
        got += chunk
    assert got == b"queued while corked"
    conn.close()
    server.close()
