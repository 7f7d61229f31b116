"""The launcher's journal service: fill the journal, and answer gateways from it.

One task owns three sockets, so the journal is never read while a message that arrived before
a request still waits in a socket:

- a SUB on the kernel's iopub (every topic; unbounded queue, the journal bounds what it keeps),
- a SUB for the relays' copies of replies (relay.py),
- a ROUTER on the Pod's journal port for gateways.

Gateways speak signed Jupyter messages (the session's key, the kernel's own signature scheme,
so only a holder of the key can read the journal or move a cursor):

- ``journal_resume_request {session}`` -> one ``[b"entry", request msg_id, channel, frames...]``
  per message the session was not sent (the frames exactly as the kernel signed them), then
  ``[b"end", request msg_id, <signed journal_resume_reply>]`` with ``known``, the counts
  ``dropped_iopub``/``dropped_replies``, the journal's bounds and ``recent_iopub``, the
  msg_ids of the newest iopub messages it holds (sent or not);
  For a session it knew, every reply the kernel sends that session from then on (whichever
  replica's identity it is addressed to: requests a dead replica forwarded are answered too)
  is pushed to the gateways that resumed it (the last few), as it comes: ``[b"push",
  session, channel, frames...]``. Such a gateway takes the session's replies from here only,
  so they keep the kernel's order.
- ``journal_sent {session, msg_ids}``: the gateway wrote these to the session's websocket.

Cursors are never dropped on a gateway's word (a client can come back to any replica at any
time); the journal keeps the most recently used ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session

from kernelkeeper.kernel.journal import IOPUB, Journal, session_of
from kernelkeeper.kernel.relay import COPY_PREFIX, curve_server

log = logging.getLogger("kernelkeeper.kernel")

DELIM = b"<IDS|MSG>"
ENTRY, END, PUSH = b"entry", b"end", b"push"
MAX_FOLLOWERS = 1024
MAX_ROUTES = 4  # gateways per session that get its replies pushed
# A dying replica's last sent-reports travel on its own TCP connection (report_server.py),
# not on the socket the resume comes in on; they are in this host's socket buffers before the
# client could even reconnect, and one pass of the event loop reads them.
REPORT_SETTLE = 0.002
# A resuming gateway's own iopub subscription lags the journal's by a few messages: it is told
# the newest ones the journal had, so that it never writes one of them a second time.
RECENT_IOPUB = 256


def _msg_id(frames: list[bytes], at: int) -> str:
    """The header's msg_id of a message whose delimiter is at `at` ("" if unreadable)."""
    try:
        return str(json.loads(frames[at + 2]).get("msg_id", ""))
    except (ValueError, IndexError, AttributeError):
        return ""


class JournalService:
    def __init__(self, journal: Journal, session: Session, context: zmq.asyncio.Context, *,
                 kernel_iopub: str, public: str,
                 on_iopub: Callable[[list[bytes]], None],
                 curve: tuple[bytes, bytes] | None = None) -> None:
        self.journal = journal
        self.session = session
        self.on_iopub = on_iopub
        self.iopub = context.socket(zmq.SUB)
        self.iopub.rcvhwm = 0
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(kernel_iopub)
        self.copies = context.socket(zmq.SUB)
        self.copies.rcvhwm = 0
        self.copies.setsockopt(zmq.SUBSCRIBE, COPY_PREFIX)
        port = self.copies.bind_to_random_port("tcp://127.0.0.1")
        self.copies_address = f"tcp://127.0.0.1:{port}"
        self.gateways = context.socket(zmq.ROUTER)
        self.gateways.sndhwm = 0  # a replay is bounded by the journal, and must not be cut
        if curve is not None:
            curve_server(self.gateways, curve)
        self.gateways.bind(public)
        for sock in (self.iopub, self.copies, self.gateways):
            sock.linger = 0
        self.requests = 0
        # session -> routes of the gateways that resumed it, newest last (known sessions only).
        # More than one: a replica may finish an upgrade the client has already given up on
        # after the client resumed elsewhere; each delivers only while its websocket is open.
        self.followers: OrderedDict[str, list[list[bytes]]] = OrderedDict()

    def close(self) -> None:
        for sock in (self.iopub, self.copies, self.gateways):
            sock.close(linger=0)

    async def run(self) -> None:
        poller = zmq.asyncio.Poller()
        for sock in (self.iopub, self.copies, self.gateways):
            poller.register(sock, zmq.POLLIN)
        while True:
            await poller.poll()
            await self._drain()
            try:
                frames = await self.gateways.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            await self._answer(frames)

    async def _drain(self) -> None:
        """Journal everything the kernel sent that is waiting in the two SUB sockets."""
        for sock, handle in ((self.iopub, self._from_iopub), (self.copies, self._from_relay)):
            while True:
                try:
                    frames = await sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                await handle(frames)

    async def _from_iopub(self, frames: list[bytes]) -> None:
        self.on_iopub(frames)
        try:
            at = frames.index(DELIM)
        except ValueError:
            return
        self.journal.append(IOPUB, None, _msg_id(frames, at), frames[at:])

    async def _from_relay(self, frames: list[bytes]) -> None:
        # [b"out.<channel>", client identity, <IDS|MSG>, signature, header, ...]
        try:
            at = frames.index(DELIM)
        except ValueError:
            return
        if at < 2:
            return
        session = session_of(frames[at - 1])
        if session is None:  # the gateway's own requests: nobody resumes them
            return
        channel = frames[0][len(COPY_PREFIX):].decode()
        self.journal.append(channel, session, _msg_id(frames, at), frames[at:])
        for route in self.followers.get(session, ()):
            await self.gateways.send_multipart(
                [*route, PUSH, session.encode(), channel.encode(), *frames[at:]], copy=False)

    async def _answer(self, frames: list[bytes]) -> None:
        try:
            idents, parts = self.session.feed_identities(frames)
            msg = self.session.deserialize(parts)
        except Exception as exc:  # unsigned, forged, replayed or garbled: say nothing back
            log.warning("ignoring a journal request that does not verify: %s", exc)
            return
        content: dict[str, Any] = msg["content"]
        session = str(content.get("session") or "")
        if not session:
            return
        mtype = msg["header"]["msg_type"]
        if mtype == "journal_sent":
            ids = content.get("msg_ids")
            if isinstance(ids, list):
                self.journal.sent(session, [str(i) for i in ids[:4096]])
        elif mtype == "journal_resume_request":
            self.requests += 1
            await self._replay(idents, msg, session)

    async def _replay(self, idents: list[bytes], request: dict[str, Any], session: str) -> None:
        await asyncio.sleep(REPORT_SETTLE)
        await self._drain()
        replay = self.journal.replay(session)
        if replay.known:
            # Its replies may be addressed to a replica that is gone; from now on every reply
            # of this session goes to the resuming gateway through here, in the kernel's order.
            routes = [r for r in self.followers.get(session, []) if r != idents]
            self.followers[session] = [*routes, idents][-MAX_ROUTES:]
            self.followers.move_to_end(session)
            while len(self.followers) > MAX_FOLLOWERS:
                self.followers.popitem(last=False)
        else:
            self.followers.pop(session, None)
        req_id = str(request["header"]["msg_id"]).encode()
        for entry in replay.entries:
            await self.gateways.send_multipart(
                [*idents, ENTRY, req_id, entry.channel.encode(), *entry.frames], copy=False)
        reply = self.session.msg("journal_resume_reply", {
            "known": replay.known,
            "count": len(replay.entries),
            "dropped_iopub": replay.dropped_iopub,
            "dropped_replies": replay.dropped_replies,
            "max_messages": self.journal.max_messages,
            "max_bytes": self.journal.max_bytes,
            "recent_iopub": self.journal.recent_iopub(RECENT_IOPUB) if replay.known else [],
        }, parent=request["header"])
        await self.gateways.send_multipart([*idents, END, req_id,
                                            *self.session.serialize(reply)])
        if replay.entries or replay.dropped:
            log.info("session %s resumed: %d messages replayed, %d lost to the journal's bounds",
                     session, len(replay.entries), replay.dropped)
