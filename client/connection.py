"""One kernel's websocket to a kernelkeeper gateway that outlives the gateway replica behind it.

- It always reconnects with the same ``session_id``, so the gateway resumes the session from
  the kernel Pod's journal: what the kernel sent while no replica served this client arrives,
  in order, before live traffic (README, "What a client gets back after a failover").
- Messages sent while it is reconnecting are queued, in order, and flushed once it is back.
- Requests that went into a replica as it died may never have reached the kernel. After each
  reconnect it sends a ``kernel_info_request`` on shell as a barrier: shell requests are handled
  in order, so once the barrier is answered, every earlier request that has neither a reply
  nor (for an execute) an ``execute_input`` never arrived, and is sent again, with its own
  msg_id, so the caller's wait for that reply just continues.
- Messages are de-duplicated by msg_id (a replica killed mid-write can repeat its last few).

Callers see messages per channel (`on_message`) and never see the barrier's own traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from jupyter_client.session import Session
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from kernelkeeper.client import framing

log = logging.getLogger("kernelkeeper.client")

SEEN_IDS = 20000  # msg_ids remembered for de-duplication
PENDING_LIMIT = 10000  # requests remembered until answered
QUEUE_LIMIT = 10000  # messages queued while reconnecting


class KernelGone(RuntimeError):
    """The gateway says the kernel no longer exists, or it stayed out of reach too long."""


class ResumingWebsocket:
    def __init__(self, ws_url: str, kernel_id: str, *, token: str = "",
                 on_message: Callable[[str, dict[str, Any]], None],
                 reconnect_timeout: float = 300.0, connect_timeout: float = 30.0) -> None:
        self.kernel_id = kernel_id
        self.session_id = uuid.uuid4().hex
        self.url = (f"{ws_url.rstrip('/')}/api/kernels/{kernel_id}/channels"
                    f"?session_id={self.session_id}")
        self.token = token
        self.on_message = on_message
        self.reconnect_timeout = reconnect_timeout
        self.connect_timeout = connect_timeout
        self.session = Session(username="kernelkeeper-client", session=self.session_id)
        self.ws: WebSocketClientConnection | None = None
        self.gone: str | None = None
        self.reconnects = 0
        self.resent = 0
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._pending: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._started: set[str] = set()  # executes whose execute_input was seen
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._barrier: tuple[str, asyncio.Future[None]] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._barrier_task: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        self.ws = await self._open()
        self._reader = asyncio.create_task(self._read())

    async def _open(self) -> WebSocketClientConnection:
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        request = HTTPRequest(self.url, headers=headers, connect_timeout=self.connect_timeout,
                              request_timeout=self.connect_timeout)
        ws = await websocket_connect(request, subprotocols=[framing.V1_PROTOCOL],
                                     max_message_size=1 << 30)
        if ws.selected_subprotocol != framing.V1_PROTOCOL:
            ws.close()
            raise KernelGone("the gateway does not speak v1.kernel.websocket.jupyter.org")
        if ws.protocol is not None and ws.protocol.stream is not None:
            ws.protocol.stream.set_nodelay(True)
        return ws

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    @property
    def alive(self) -> bool:
        return self.gone is None and not self._closing

    # ------------------------------------------------------------------ sending

    def send(self, channel: str, msg: dict[str, Any]) -> None:
        """Send now, or queue in order while reconnecting."""
        if self.gone:
            raise KernelGone(self.gone)
        msg_type = str(msg["header"].get("msg_type", ""))
        if channel in ("shell", "control") and msg_type.endswith("_request"):
            self._pending[str(msg["header"]["msg_id"])] = (channel, msg)
            while len(self._pending) > PENDING_LIMIT:
                self._pending.popitem(last=False)
        if self.ws is None:
            if len(self._queue) >= QUEUE_LIMIT:
                raise KernelGone("too many messages queued while reconnecting")
            self._queue.append((channel, msg))
            return
        self._write(channel, msg)

    def _write(self, channel: str, msg: dict[str, Any]) -> None:
        if self.ws is None:
            self._queue.append((channel, msg))
            return
        try:
            self.ws.write_message(framing.encode(channel, msg), binary=True)
        except WebSocketClosedError:
            # The reader notices the close and reconnects; this one goes out after that.
            self._queue.append((channel, msg))

    # ------------------------------------------------------------------ receiving

    async def _read(self) -> None:
        while not self._closing:
            ws = self.ws
            frame = await ws.read_message() if ws is not None else None
            if frame is None:
                if self._closing:
                    return
                await self._reconnect()
                if self.gone:
                    return
                continue
            if isinstance(frame, str):
                continue
            try:
                channel, msg = framing.decode(frame)
            except framing.BadFrame as exc:
                log.warning("kernel %s: dropping a malformed frame: %s", self.kernel_id, exc)
                continue
            self._receive(channel, msg)

    def _receive(self, channel: str, msg: dict[str, Any]) -> None:
        msg_id = msg["msg_id"]
        if msg_id:
            if msg_id in self._seen:
                return
            self._seen[msg_id] = None
            while len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        parent = msg["parent_header"] if isinstance(msg["parent_header"], dict) else {}
        parent_id = str(parent.get("msg_id", ""))
        if channel in ("shell", "control"):
            self._pending.pop(parent_id, None)
        if msg["msg_type"] == "execute_input":
            self._started.add(parent_id)
        barrier = self._barrier
        if barrier is not None and parent_id == barrier[0]:
            if channel == "shell" and not barrier[1].done():
                barrier[1].set_result(None)
            return
        self.on_message(channel, msg)

    # ------------------------------------------------------------------ reconnecting

    async def _reconnect(self) -> None:
        self.ws = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = 0.1
        while not self._closing:
            try:
                self.ws = await self._open()
                break
            except KernelGone as exc:
                self.gone = str(exc)
                return
            except HTTPClientError as exc:
                if exc.code == 404:
                    self.gone = f"kernel {self.kernel_id} no longer exists"
                    return
                why = f"HTTP {exc.code}"
            except (TimeoutError, OSError, WebSocketClosedError) as exc:
                why = repr(exc)
            if loop.time() + delay > deadline:
                self.gone = (f"kernel {self.kernel_id}: gateway out of reach for "
                             f"{self.reconnect_timeout:.0f}s ({why})")
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
        self.reconnects += 1
        log.info("kernel %s: websocket back after a drop (reconnect %d)", self.kernel_id,
                 self.reconnects)
        self._start_barrier()

    def _start_barrier(self) -> None:
        msg = self.session.msg("kernel_info_request", {})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barrier = (str(msg["header"]["msg_id"]), done)
        # Requests sent before the drop and still unanswered: the barrier tells which of them
        # the kernel never got. What was queued during the drop goes out now, after it.
        unanswered = [msg_id for msg_id, (ch, _) in self._pending.items()
                      if ch == "shell" and msg_id not in self._started]
        queued = {id(m) for _, m in self._queue}
        unanswered = [i for i in unanswered if id(self._pending[i][1]) not in queued]
        self._write("shell", msg)
        while self._queue and self.ws is not None:
            channel, queued_msg = self._queue.popleft()
            self._write(channel, queued_msg)
        self._barrier_task = asyncio.create_task(self._after_barrier(done, unanswered))

    async def _after_barrier(self, done: asyncio.Future[None], unanswered: list[str]) -> None:
        try:
            await asyncio.wait_for(done, self.reconnect_timeout)
        except TimeoutError:
            # Still behind a long cell: whether the others arrived cannot be told yet, and a
            # second copy of one that did would run twice. Nothing is sent again.
            log.warning("kernel %s: reconnect barrier unanswered after %.0fs; not re-sending",
                        self.kernel_id, self.reconnect_timeout)
            return
        finally:
            self._barrier = None
        for msg_id in unanswered:
            entry = self._pending.get(msg_id)
            if entry is None or msg_id in self._started:
                continue  # answered (replayed or live) or started meanwhile
            channel, msg = entry
            self.resent += 1
            log.info("kernel %s: %s %s never reached the kernel; sending it again",
                     self.kernel_id, msg["header"]["msg_type"], msg_id)
            self._write(channel, msg)
