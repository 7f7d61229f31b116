"""Test helpers that look at real sockets: a socket option read from inside another process
(pidfd_getfd), and a TCP relay that keeps the first bytes each way of every connection."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from dataclasses import dataclass, field

SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture
_libc = ctypes.CDLL(None, use_errno=True)


def peer_socket_option(pid: int, peer: tuple[str, int], level: int, option: int) -> int:
    """getsockopt on the TCP socket of process `pid` whose remote end is `peer`."""
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                continue
            # A duplicate of the descriptor: closing it leaves the process's socket alone.
            sock = socket.socket(fileno=fd)
            try:
                if sock.type == socket.SOCK_STREAM and sock.getpeername()[:2] == peer:
                    return sock.getsockopt(level, option)
            except OSError:
                pass
            finally:
                sock.close()
    finally:
        os.close(pidfd)
    raise LookupError(f"process {pid} has no TCP socket connected to {peer}")


CAPTURE_BYTES = 1 << 16


@dataclass
class Capture:
    """The first bytes of one relayed connection, each way."""

    sent: bytearray = field(default_factory=bytearray)  # client -> upstream
    received: bytearray = field(default_factory=bytearray)  # upstream -> client

    @staticmethod
    def _head(data: bytearray) -> str:
        end = data.find(b"\r\n\r\n")
        return data[:end].decode("latin-1") if end >= 0 else ""

    def request_head(self) -> str:
        return self._head(self.sent)

    def response_head(self) -> str:
        return self._head(self.received)

    def header(self, head: str, name: str) -> str:
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return ""

    def first_client_opcode(self) -> int | None:
        """The opcode of the client's first websocket frame after the upgrade."""
        end = self.sent.find(b"\r\n\r\n")
        if end < 0 or len(self.sent) <= end + 4:
            return None
        return self.sent[end + 4] & 0x0F


class SniffingRelay:
    """127.0.0.1:<port> relayed to 127.0.0.1:<upstream_port>, keeping a Capture per connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.captures: list[Capture] = []
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def websockets(self) -> list[Capture]:
        return [c for c in self.captures if "/channels" in c.request_head().split("\r\n")[0]]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._open += [client, upstream]
            capture = Capture()
            self.captures.append(capture)
            for src, dst, keep in ((client, upstream, capture.sent),
                                   (upstream, client, capture.received)):
                threading.Thread(target=self._pump, args=(src, dst, keep), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, keep: bytearray) -> None:
        try:
            while data := src.recv(65536):
                if len(keep) < CAPTURE_BYTES:
                    keep += data[:CAPTURE_BYTES - len(keep)]
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()
