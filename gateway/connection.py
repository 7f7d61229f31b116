"""One replica's ZMQ connection to one kernel pod.

A KernelConnection owns the shared iopub subscription (one per kernel per replica, fanned out
to every client session), private control/shell sockets for the gateway's own requests
(kernel_info, interrupt, shutdown), a socket to the Pod's journal (kernel/journal_service.py:
resume a client session, report what was sent to it), and the signing Session built from the
key Secret.
Client sessions (sessions.py) open their own DEALER sockets through it, so a pod that moves
to a new address is followed by every socket at once (`retarget`).

Messages are kept as raw frames (wire.KernelMessage): the websocket side re-frames them
without re-encoding JSON, which is what keeps the bridge close to direct ZMQ speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import zmq
import zmq.asyncio
from jupyter_client.session import Session

from kernelkeeper.gateway.errors import KernelUnavailable
from kernelkeeper.gateway.model import LocalActivity, utcnow
from kernelkeeper.gateway.wire import KernelMessage
from kernelkeeper.kernel import contract
from kernelkeeper.kernel.journal import IDENTITY_SEPARATOR
from kernelkeeper.kernel.report_server import report_line

log = logging.getLogger(__name__)

DELIM = b"<IDS|MSG>"
GATEWAY_USERNAME = "kernelkeeper-gateway"
GATEWAY_SESSION_PREFIX = "kernelkeeper-gateway-"
# Queued reports of what was sent get this long to leave when a connection closes.
JOURNAL_LINGER_MS = 1000
# Requests whose busy/idle say nothing about the user's work (as jupyter_server tracks it).
UNTRACKED = {"kernel_info_request", "comm_info_request", "usage_request", "debug_request"}


class Client(Protocol):
    """What a KernelConnection needs from a client session (sessions.ClientSession)."""

    def deliver(self, msg: KernelMessage) -> None: ...

    def deliver_pushed(self, msg: KernelMessage) -> None: ...

    def connected(self) -> bool: ...

    def kernel_dead(self, reason: str) -> None: ...


@dataclass(frozen=True)
class JournalReplay:
    """The journal's answer to a resume: what the session was not sent, and what was lost."""

    known: bool
    entries: list[KernelMessage]
    dropped: int
    max_messages: int
    max_bytes: int
    # The newest iopub msg_ids the journal held when it answered, sent or not: this replica's
    # own subscription may deliver some of them after the replay.
    recent_iopub: frozenset[str] = frozenset()


def is_gateway_own(msg: KernelMessage) -> bool:
    """A status the kernel published for some gateway replica's own request (kernel_info on
    connect, interrupt, ...): clients never asked for it, and no replica relays it."""
    if msg.msg_type != "status":
        return False
    parent = msg.parent
    return (parent.get("username") == GATEWAY_USERNAME and
            str(parent.get("session", "")).startswith(GATEWAY_SESSION_PREFIX))


class KernelConnection:
    def __init__(self, kernel_id: str, info: dict[str, Any], context: zmq.asyncio.Context) -> None:
        self.kernel_id = kernel_id
        self.context = context
        self.info = {"journal_port": contract.JOURNAL_PORT,
                     "report_port": contract.REPORT_PORT, **info}
        key = info["key"].encode() if isinstance(info["key"], str) else info["key"]
        self.session = Session(key=key, signature_scheme=info.get("signature_scheme",
                                                                 "hmac-sha256"),
                               username=GATEWAY_USERNAME,
                               session=GATEWAY_SESSION_PREFIX + uuid.uuid4().hex)
        # Appended to each client session's ZMQ identity: one session served by two replicas
        # (a client that moved) is two peers at the kernel's ROUTER, never one identity twice.
        self.identity_suffix = IDENTITY_SEPARATOR + uuid.uuid4().hex[:12].encode()
        # With the kernel's Curve public key, every socket is a CurveZMQ client with this
        # replica's own (throwaway) key pair for this kernel.
        server_key = info.get("curve_publickey")
        self.curve: tuple[bytes, bytes, bytes] | None = None
        if server_key:
            public, secret = zmq.curve_keypair()
            self.curve = (str(server_key).encode(), public, secret)
        self.activity = LocalActivity()
        self.clients: dict[str, Client] = {}
        self.kernel_session = ""  # the kernel process's own Session id, from its last reply
        self.dead_reason: str | None = None
        self.restarting = False
        self.restarts_seen: int | None = None
        # Until this monotonic time, a bump of status.restarts is our own restart, already
        # announced to clients (the operator's count lands after the kernel is back).
        self.restart_expected_until = 0.0
        self._sockets: dict[zmq.asyncio.Socket, str] = {}
        self._pending: dict[str, asyncio.Future[KernelMessage]] = {}
        self._resumes: dict[bytes, tuple[list[KernelMessage], asyncio.Future[KernelMessage]]] = {}
        self._iopub_seen = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

        ident = f"kernelkeeper-gw-{uuid.uuid4().hex[:12]}".encode()
        self.iopub = self.open_socket("iopub")
        self.control = self.open_socket("control", ident)
        self.shell = self.open_socket("shell", ident)
        self.spawn(self._pump(self.iopub, "iopub", self._on_iopub))
        self.spawn(self._pump(self.control, "control", self._on_reply))
        self.spawn(self._pump(self.shell, "shell", self._on_reply))
        self.journal = self.open_socket("journal")
        self.journal.linger = JOURNAL_LINGER_MS
        self.spawn(self._pump_journal())
        self._key = key
        self._reports: asyncio.StreamWriter | None = None
        self._reports_task = self.spawn(self._keep_reports_open())

    # ------------------------------------------------------------------ sockets

    def endpoint(self, channel: str) -> str:
        info = self.info
        return f"{info.get('transport', 'tcp')}://{info['ip']}:{info[f'{channel}_port']}"

    def open_socket(self, channel: str, identity: bytes | None = None) -> zmq.asyncio.Socket:
        kind = zmq.SUB if channel == "iopub" else zmq.DEALER
        sock = self.context.socket(kind)
        sock.linger = 0
        if identity is not None:
            sock.setsockopt(zmq.IDENTITY, identity)
        if kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        if self.curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve
        sock.connect(self.endpoint(channel))
        self._sockets[sock] = channel
        return sock

    def close_socket(self, sock: zmq.asyncio.Socket) -> None:
        channel = self._sockets.pop(sock, None)
        sock.close(linger=JOURNAL_LINGER_MS if channel == "journal" else 0)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._tasks_done)
        return task

    def _tasks_done(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() and not self._closed:
            log.error("kernel %s: socket task failed", self.kernel_id, exc_info=task.exception())

    def retarget(self, info: dict[str, Any]) -> None:
        """Follow the kernel to a new address (a replacement Pod); the key stays the same."""
        old = {ch: self.endpoint(ch) for ch in set(self._sockets.values())}
        self.info.update({k: v for k, v in info.items() if k != "key"})
        for sock, channel in list(self._sockets.items()):
            new = self.endpoint(channel)
            if new != old[channel]:
                with contextlib.suppress(zmq.ZMQError):
                    sock.disconnect(old[channel])
                sock.connect(new)
        if self._reports is not None:
            self._reports.close()  # reopened at the new address
        log.info("kernel %s: following the kernel to %s", self.kernel_id, self.info["ip"])

    async def pump(self, sock: zmq.asyncio.Socket, channel: str,
                   handle: Callable[[KernelMessage], None]) -> None:
        await self._pump(sock, channel, handle)

    async def _pump(self, sock: zmq.asyncio.Socket, channel: str,
                    handle: Callable[[KernelMessage], None]) -> None:
        while True:
            try:
                frames = await sock.recv_multipart()
            except zmq.ZMQError:
                if self._closed or sock.closed:
                    return
                raise
            msg = self.parse(channel, frames)
            if msg is not None:
                handle(msg)

    # ------------------------------------------------------------------ wire

    def parse(self, channel: str, frames: list[bytes]) -> KernelMessage | None:
        try:
            idx = frames.index(DELIM)
        except ValueError:
            log.warning("kernel %s: dropping a %s message without delimiter", self.kernel_id,
                        channel)
            return None
        sig, parts, buffers = frames[idx + 1], frames[idx + 2: idx + 6], frames[idx + 6:]
        if len(parts) != 4:
            return None
        if self.session.auth is not None:
            expected = self.session.sign(parts)
            if not hmac.compare_digest(sig, expected):
                log.warning("kernel %s: dropping a %s message with a bad signature",
                            self.kernel_id, channel)
                return None
        return KernelMessage(channel, parts, buffers)

    def send(self, sock: zmq.asyncio.Socket, parts: list[bytes], buffers: list[bytes]) -> None:
        """Sign and queue a message (DEALER sends never wait: ZMQ queues them)."""
        sock.send_multipart([DELIM, self.session.sign(parts), *parts, *buffers], copy=False)

    def pack(self, msg_type: str, content: dict[str, Any],
             parent: dict[str, Any] | None = None) -> tuple[str, list[bytes]]:
        msg = self.session.msg(msg_type, content, parent=parent or {})
        pack = self.session.pack
        return msg["header"]["msg_id"], [pack(msg["header"]), pack(msg["parent_header"]),
                                         pack(msg["metadata"]), pack(msg["content"])]

    # ------------------------------------------------------------------ journal

    async def _pump_journal(self) -> None:
        while True:
            try:
                frames = await self.journal.recv_multipart()
            except zmq.ZMQError:
                if self._closed or self.journal.closed:
                    return
                raise
            self._on_journal(frames)

    def _on_journal(self, frames: list[bytes]) -> None:
        # [b"entry", request id, channel, <IDS|MSG>, ...], [b"end", request id, <IDS|MSG>, ...]
        # or [b"push", session id, channel, <IDS|MSG>, ...]
        if len(frames) < 3:
            return
        if frames[0] == b"push":
            client = self.clients.get(frames[1].decode("utf-8", "replace"))
            msg = self.parse(frames[2].decode("ascii", "replace"), frames[3:])
            if client is not None and msg is not None:
                client.deliver_pushed(msg)
            return
        waiting = self._resumes.get(frames[1])
        if waiting is None:
            return
        entries, done = waiting
        if frames[0] == b"entry" and len(frames) > 3:
            msg = self.parse(frames[2].decode("ascii", "replace"), frames[3:])
            if msg is not None:
                entries.append(msg)
        elif frames[0] == b"end":
            end = self.parse("journal", frames[2:])
            if end is not None and not done.done():
                done.set_result(end)

    def client_identity(self, session_id: str) -> bytes:
        return session_id.encode() + self.identity_suffix

    async def resume(self, session_id: str, timeout: float) -> JournalReplay | None:
        """What the journal holds that `session_id` was not sent yet; None if the journal does
        not answer within `timeout` (an unreachable launcher: the caller carries on without).
        If the journal knew the session, it pushes every later reply of it here."""
        msg_id, parts = self.pack("journal_resume_request", {"session": session_id})
        key = msg_id.encode()
        done: asyncio.Future[KernelMessage] = asyncio.get_running_loop().create_future()
        entries: list[KernelMessage] = []
        self._resumes[key] = (entries, done)
        try:
            self.send(self.journal, parts, [])
            end = await asyncio.wait_for(done, timeout)
        except TimeoutError:
            log.warning("kernel %s: the journal did not answer a resume of session %s in %.0fs",
                        self.kernel_id, session_id, timeout)
            return None
        finally:
            self._resumes.pop(key, None)
        content = end.content
        return JournalReplay(
            known=bool(content.get("known")),
            entries=[m for m in entries if not is_gateway_own(m)],
            dropped=int(content.get("dropped_iopub") or 0) + int(content.get("dropped_replies")
                                                               or 0),
            max_messages=int(content.get("max_messages") or 0),
            max_bytes=int(content.get("max_bytes") or 0),
            recent_iopub=frozenset(str(i) for i in content.get("recent_iopub") or []))

    async def _keep_reports_open(self) -> None:
        """The plain TCP connection reports go over (kernel/report_server.py), reopened
        whenever it drops; until it is open, reports go over the journal socket."""
        delay = 0.1
        while not self._closed:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    self.info["ip"], int(self.info["report_port"])), 10)
            except (OSError, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            delay = 0.1
            self._reports = writer
            try:
                await reader.read(1)  # the launcher never writes: this is its close
            except OSError:
                pass
            finally:
                self._reports = None
                writer.close()

    def sent_report(self, session_id: str, msg_ids: list[str]) -> Callable[[], None]:
        """The report telling the journal these reached the session's websocket (its cursor
        moves), built now: call it right after the write. If a replica is killed between the
        two, the client gets that message again when it resumes elsewhere, so all the work
        (JSON, HMAC) is done before the write and what is left after it is one `send` on the
        report connection, whose bytes then leave this process at once."""
        line = report_line(self._key, session_id, msg_ids)

        def send() -> None:
            writer = self._reports
            if writer is not None and not writer.is_closing():
                writer.write(line)
                return
            _, parts = self.pack("journal_sent", {"session": session_id, "msg_ids": msg_ids})
            with contextlib.suppress(zmq.ZMQError):
                self.send(self.journal, parts, [])
        return send

    # ------------------------------------------------------------------ iopub

    def _on_iopub(self, msg: KernelMessage) -> None:
        self._iopub_seen.set()
        if not self._track(msg):
            return
        for client in list(self.clients.values()):
            client.deliver(msg)

    def _track(self, msg: KernelMessage) -> bool:
        """Update state and activity; False for the gateway's own traffic (not relayed)."""
        mtype = msg.msg_type
        if mtype == "iopub_welcome":
            return True
        if mtype == "status":
            parent = msg.parent
            if is_gateway_own(msg):
                return False
            if parent.get("msg_type") in UNTRACKED:
                return True
            state = msg.content.get("execution_state")
            if state:
                self.activity.execution_state = state
                if state == "starting":
                    self.restarting = False
        self.touch()
        return True

    def touch(self) -> None:
        self.activity.last_activity = utcnow()

    def connection_count(self) -> int:
        return sum(1 for c in self.clients.values() if c.connected())

    def broadcast_status(self, state: str) -> None:
        """A gateway-made iopub status (restarting, dead) to every client session."""
        _, parts = self.pack("status", {"execution_state": state})
        msg = KernelMessage("iopub", parts, [], local=True)
        self.activity.execution_state = state
        for client in list(self.clients.values()):
            client.deliver(msg)

    # ------------------------------------------------------------------ requests

    def _on_reply(self, msg: KernelMessage) -> None:
        fut = self._pending.pop(str(msg.parent.get("msg_id", "")), None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def request(self, channel: str, msg_type: str, content: dict[str, Any],
                      timeout: float) -> KernelMessage:
        """Send on the gateway's own control/shell socket and wait for the reply."""
        msg_id, parts = self.pack(msg_type, content)
        fut: asyncio.Future[KernelMessage] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            self.send(self.control if channel == "control" else self.shell, parts, [])
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(msg_id, None)
        self.kernel_session = str(reply.header.get("session", ""))
        return reply

    async def ensure_alive(self, timeout: float, *, not_session: str = "") -> None:
        """Return once the kernel answers kernel_info (on control, so a busy kernel answers
        too) and the iopub subscription is live. With `not_session`, wait for a *new* kernel
        process (after a restart). Raises KernelUnavailable after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or self.dead_reason:
                raise KernelUnavailable(self.dead_reason or
                                        f"kernel {self.kernel_id} did not answer in {timeout:.0f}s")
            attempt += 1
            try:
                reply = await self.request("control", "kernel_info_request", {},
                                           min(remaining, 0.5 * attempt))
            except TimeoutError:
                continue
            if not_session and reply.header.get("session") == not_session:
                await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
                continue
            # The kernel_info request brackets itself with busy/idle on iopub (and an XPUB
            # kernel sends iopub_welcome), so iopub traffic shows the subscription is live.
            try:
                await asyncio.wait_for(self._iopub_seen.wait(),
                                       min(max(0.0, deadline - loop.time()), 1.0))
                return
            except TimeoutError:
                continue

    def expect_new_kernel(self) -> None:
        """Before a restart: the next ensure_alive must see iopub traffic from the new process."""
        self._iopub_seen.clear()

    # ------------------------------------------------------------------ end

    def mark_dead(self, reason: str) -> None:
        if self.dead_reason:
            return
        self.dead_reason = reason
        self.broadcast_status("dead")
        for client in list(self.clients.values()):
            client.kernel_dead(reason)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(KernelUnavailable(reason))

    def close(self) -> None:
        """Drop this replica's sockets; the kernel itself keeps running."""
        self._closed = True
        if self._reports is not None:
            self._reports.close()
        for task in list(self._tasks):
            task.cancel()
        for sock in list(self._sockets):
            self.close_socket(sock)
