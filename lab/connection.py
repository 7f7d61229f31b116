"""jupyter_server's kernel websocket for a kernelkeeper gateway, made to survive failovers.

    c.ServerApp.kernel_websocket_connection_class = \\
        "kernelkeeper.lab.connection.KernelkeeperWebsocketConnection"

(or enable the `kernelkeeper.lab` server extension, which sets it in gateway mode). The path is
browser -> jupyter_server (this connection, on the handler's websocket) -> gateway hop (hop.py):

- TCP_NODELAY on the browser's socket: a cell's replies leave in bursts (busy, execute_input,
  output, execute_reply, idle), and with Nagle every burst after the first small frame waits
  for the browser's delayed ACK (~40 ms a round trip).
- The browser speaks what it offers (v1.kernel.websocket.jupyter.org or legacy JSON), the hop
  what the gateway selects (v1 when offered); framing.py translates between them.
- When the hop drops, it is opened again with the same session_id (the gateway's journal then
  sends what this session missed) after an immediate first try and a capped back-off. What the
  browser sends meanwhile waits in a bounded backlog. Shell traffic also waits for a
  kernel_info barrier whenever a shell message written to the dead hop got no sign of arrival
  (ledger.py): then the requests that were lost are sent again in order, before anything
  newer, and nothing is ever sent into a kernel that may have it already. Messages the gateway replays twice are
  passed to the browser once.
- The browser's websocket stays open throughout, so a failover the gateway survives looks like
  a pause, never a disconnect or a dead kernel. It is closed only when the gateway says the
  kernel is gone, or after `reconnect_timeout` without a hop (requests still waiting are then
  answered with an error, replies.py), and the frontend's own reconnect starts over.

Control and stdin messages are not ordered with shell by the kernel and carry no barrier: they
are flushed as soon as a hop is up, and one written into a dying replica is lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from typing import Any, ClassVar

from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.services.kernels.connection.base import BaseKernelWebsocketConnection
from tornado.websocket import WebSocketClosedError
from traitlets import Float, Int, Unicode

from kernelkeeper.lab import framing, replies
from kernelkeeper.lab.backlog import Backlog, RecentIds
from kernelkeeper.lab.framing import Frame
from kernelkeeper.lab.hop import GatewayHop, HopRefused, channels_url
from kernelkeeper.lab.ledger import Ledger

MAX_BARRIER_WAIT = 60.0
# Seconds: a hop the gateway closes sooner than this counts as a failed attempt.
SHORT_LIVED = 1.0


class KernelkeeperWebsocketConnection(BaseKernelWebsocketConnection):
    """One browser websocket for one kernel, bridged to the gateway across failovers."""

    kernel_ws_protocol = Unicode(
        None, allow_none=True, config=True,
        help="Protocol to select for the browser's websocket: None (default) picks "
             "v1.kernel.websocket.jupyter.org when the browser offers it, '' forces legacy "
             "JSON. The gateway hop speaks v1 whenever the gateway selects it, either way.")
    reconnect_interval = Float(
        0.1, config=True,
        help="Seconds before the second attempt to reopen a lost gateway hop (the first is "
             "immediate); doubled after each failure up to reconnect_interval_max.")
    reconnect_interval_max = Float(2.0, config=True,
                                   help="Longest pause between two attempts (seconds).")
    reconnect_timeout = Float(
        300.0, config=True,
        help="Seconds without a gateway hop before giving up: waiting requests are answered "
             "with an error and the browser's websocket is closed (its reconnect starts over).")
    max_queued_messages = Int(
        1000, config=True,
        help="Messages from the browser kept while the gateway hop is down; a request that "
             "does not fit is answered with an error at once.")
    max_queued_bytes = Int(64 * 1024 * 1024, config=True,
                           help="Bytes kept while the gateway hop is down.")
    barrier_retry_interval = Float(
        5.0, config=True,
        help="Seconds before another kernel_info barrier is sent when none was answered (a "
             "kernel restart drops one); doubled each time up to 60 s. A long-running cell "
             "delays the answer, which is expected: the kernel handles shell in order.")
    gateway_ping_interval = Float(
        10.0, config=True, help="Websocket ping interval on the gateway hop (0: none).")
    gateway_ping_timeout = Float(
        10.0, config=True,
        help="A gateway hop without a pong this long after a ping is closed and reopened (at "
             "most gateway_ping_interval).")
    gateway_max_message_size = Int(1024 * 1024 * 1024, config=True,
                                   help="Largest message accepted from the gateway (bytes).")
    replay_window = Int(
        4096, config=True,
        help="Ids of the last messages passed to the browser, so that one the gateway sends "
             "again after a failover is not shown twice.")

    _live: ClassVar[weakref.WeakSet[KernelkeeperWebsocketConnection]] = weakref.WeakSet()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._browser_protocol = framing.LEGACY
        self._hop: GatewayHop | None = None
        # Shell waits (in the backlog) until a hop is up and every earlier shell message is
        # settled; this is true until the first hop is up.
        self._holding_shell = True
        self._backlog = Backlog(self.max_queued_messages, self.max_queued_bytes)
        self._ledger = Ledger()
        self._forwarded = RecentIds(self.replay_window)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._barrier_timer: asyncio.TimerHandle | None = None
        self._barrier_wait = 0.0
        self._live.add(self)

    # ------------------------------------------------------------------ jupyter_server API

    async def connect(self) -> None:
        """Called by the handler's open(): the browser's websocket is up."""
        handler = self.websocket_handler
        handler.set_nodelay(True)
        self._browser_protocol = handler.selected_subprotocol or framing.LEGACY
        self._task = asyncio.create_task(self._keep_hop())

    def disconnect(self) -> None:  # type: ignore[override]
        """Called (not awaited) by the handler's on_close: the browser has gone."""
        self._stop.set()
        self._cancel_timers()
        if self._hop is not None:
            self._hop.close()
        self._live.discard(self)

    def handle_incoming_message(self, incoming_msg: str | bytes) -> None:
        """A message from the browser."""
        try:
            frame = framing.decode(incoming_msg, self._browser_protocol)
            frame.header  # noqa: B018 - parsed now: the ledger keys on its msg_id
        except framing.MalformedFrame as exc:
            self.log.warning("kernel %s: dropping a malformed message from the browser: %s",
                             self.kernel_id, exc)
            return
        if frame.channel == "shell" and self._holding_shell:
            self._queue(frame)
        else:
            self._write(frame)

    def handle_outgoing_message(self, stream: str, outgoing_msg: list[Any]) -> None:
        """Unused: messages from the kernel come from the gateway hop, not ZMQ streams."""
        raise NotImplementedError

    @classmethod
    async def close_all(cls) -> None:
        """ServerApp's cleanup: close every gateway hop."""
        for conn in list(cls._live):
            conn.disconnect()

    # ------------------------------------------------------------------ the gateway hop

    def _hop_url(self) -> str:
        gateway = GatewayClient.instance()
        return channels_url(gateway.ws_url or "", gateway.kernels_endpoint, self.kernel_id,
                            self.session_id)

    async def _keep_hop(self) -> None:
        loop = asyncio.get_running_loop()
        down_since, failures, was_up = loop.time(), 0, False
        while not self._stop.is_set():
            try:
                hop = await GatewayHop.open(
                    self._hop_url(), GatewayClient.instance().load_connection_args(),
                    on_frame=self._from_gateway, on_malformed=self._malformed,
                    ping_interval=self.gateway_ping_interval,
                    ping_timeout=self.gateway_ping_timeout,
                    max_message_size=self.gateway_max_message_size)
            except HopRefused as exc:
                failures += 1
                if exc.final or loop.time() - down_since > self.reconnect_timeout:
                    self._give_up(str(exc), final=exc.final)
                    return
                pause = self._pause(failures)
                self.log.info("kernel %s: gateway hop not open (%s); next attempt in %.2fs",
                              self.kernel_id, exc, pause)
                if await self._stopped_within(pause):
                    return
                continue
            if self._stop.is_set():
                hop.close()
                return
            self.log.info("kernel %s: gateway hop open (%s)%s", self.kernel_id,
                          hop.protocol or "legacy JSON",
                          f" after {loop.time() - down_since:.2f}s, {failures} failed "
                          f"attempt(s)" if was_up else "")
            self._hop, was_up, opened_at = hop, True, loop.time()
            self._resume()
            await hop.closed
            self._hop = None
            self._holding_shell = True
            self._cancel_timers()
            if self._stop.is_set():
                return
            down_since = loop.time()
            self.log.warning("kernel %s: gateway hop lost (%s); reopening with session %s",
                             self.kernel_id, hop.close_reason(), self.session_id)
            if down_since - opened_at >= SHORT_LIVED or not hop.closed_by_gateway():
                failures = 0  # after a hop that worked or a replica that died: at once
                continue
            # Accepted, then closed by the gateway at once (a kernel it just declared dead,
            # say): back off as after a refusal, or this would spin at network speed.
            failures += 1
            if await self._stopped_within(self._pause(failures)):
                return

    def _pause(self, failures: int) -> float:
        """Capped exponential back-off, with jitter so that the many browsers of one replica
        do not all come back in the same instant."""
        pause = min(self.reconnect_interval * 2 ** (failures - 1), self.reconnect_interval_max)
        return float(pause * (0.5 + random.random() / 2))

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _live_hop(self) -> GatewayHop | None:
        hop = self._hop
        return hop if hop is not None and not hop.closed.done() else None

    def _resume(self) -> None:
        """A hop is up: flush what is not ordered with shell, then settle shell."""
        for frame in self._backlog.take(shell=False):
            self._write(frame)
        if self._ledger.in_doubt():
            self._barrier_wait = 0.0
            self._send_barrier()
        else:
            self._release_shell([])

    # ------------------------------------------------------------------ the barrier

    def _send_barrier(self) -> None:
        hop = self._live_hop()
        if hop is None or not hop.write(self._ledger.barrier(self.session_id)):
            return  # the hop went: the next one sends its own barrier
        self._barrier_wait = min(MAX_BARRIER_WAIT,
                                 self._barrier_wait * 2 or self.barrier_retry_interval)
        self._barrier_timer = asyncio.get_running_loop().call_later(
            self._barrier_wait, self._barrier_overdue)

    def _barrier_overdue(self) -> None:
        self._barrier_timer = None
        if self._holding_shell and not self._ledger.answered():
            self.log.info("kernel %s: no answer to the kernel_info barrier yet; sending "
                          "another", self.kernel_id)
            self._send_barrier()

    def _check_barrier(self) -> None:
        if self._holding_shell and self._live_hop() is not None and self._ledger.answered():
            self._settle()

    def _settle(self) -> None:
        self._cancel_timers()
        settlement = self._ledger.settle()
        for frame in settlement.given_up:
            self.log.warning("kernel %s: %s %s may have died with its replica; not sent "
                             "again: %s", self.kernel_id, frame.msg_type, frame.msg_id,
                             settlement.why)
            self._answer_in_kernels_place(frame, settlement.why)
        for frame in settlement.resend:
            self.log.warning("kernel %s: %s %s never reached the kernel (its replica died); "
                             "sending it again", self.kernel_id, frame.msg_type, frame.msg_id)
        self._release_shell(settlement.resend)

    def _release_shell(self, resend: list[Frame]) -> None:
        self._holding_shell = False
        for frame in [*resend, *self._backlog.take(shell=True)]:
            self._write(frame)

    def _cancel_timers(self) -> None:
        if self._barrier_timer is not None:
            self._barrier_timer.cancel()
            self._barrier_timer = None

    # ------------------------------------------------------------------ browser -> gateway

    def _write(self, frame: Frame) -> None:
        """To the gateway now, or into the backlog when there is no hop."""
        hop = self._live_hop()
        if hop is not None:
            tracked = frame.channel == "shell" and bool(frame.msg_id)
            if tracked:
                self._ledger.sent(frame)
            if hop.write(frame):
                return
            if tracked:
                self._ledger.unsend(frame)
            if frame.channel == "shell":
                self._holding_shell = True
        self._queue(frame)

    def _queue(self, frame: Frame) -> None:
        if self._backlog.push(frame):
            return
        why = (f"the gateway has been unreachable while {len(self._backlog)} messages "
               f"({self._backlog.bytes} bytes) were waiting for it")
        self.log.warning("kernel %s: %s %s not queued: %s", self.kernel_id, frame.msg_type,
                         frame.msg_id, why)
        self._answer_in_kernels_place(frame, why)

    def _give_up(self, why: str, *, final: bool) -> None:
        # final: the gateway says the kernel is gone (or never ours), a normal end after a
        # shutdown; otherwise the gateway stayed unreachable for reconnect_timeout.
        self.log.log(logging.INFO if final else logging.ERROR,
                     "kernel %s: giving up on the gateway hop; closing the browser's websocket: "
                     "%s", self.kernel_id, why)
        for frame in [*self._backlog.take(shell=True), *self._backlog.take(shell=False)]:
            self._answer_in_kernels_place(frame, f"the gateway hop could not be opened: {why}")
        self._live.discard(self)
        try:
            self.websocket_handler.close(1000 if final else 1011, why[:120])
        except WebSocketClosedError:
            pass

    # ------------------------------------------------------------------ gateway -> browser

    def _from_gateway(self, frame: Frame) -> None:
        try:
            if self._ledger.observe(frame):
                self._check_barrier()
                return
            msg_id = frame.msg_id
        except framing.MalformedFrame:
            msg_id = ""  # not ours to judge: the browser gets it as it came
        if msg_id:
            if msg_id in self._forwarded:
                self.log.debug("kernel %s: %s %s came again after a failover; dropped",
                               self.kernel_id, frame.msg_type, msg_id)
                return
            self._forwarded.add(msg_id)
        self._to_browser(frame)
        if self._holding_shell:
            self._check_barrier()  # this may have been the last sign of arrival missing

    def _malformed(self, exc: Exception) -> None:
        self.log.warning("kernel %s: dropping a malformed message from the gateway: %s",
                         self.kernel_id, exc)

    def _to_browser(self, frame: Frame) -> None:
        payload, binary = framing.encode(frame, self._browser_protocol)
        try:
            self.websocket_handler.write_message(payload, binary=binary)
        except WebSocketClosedError:
            pass  # the browser went; on_close disconnects this connection

    def _answer_in_kernels_place(self, request: Frame, why: str) -> None:
        for frame in replies.not_answered(request, why):
            self._to_browser(frame)
