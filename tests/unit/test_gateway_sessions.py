"""Client sessions against a real launcher and ipykernel on loopback (no cluster): resume from the
kernel Pod's journal, and the local reconnect buffer's bounds when the journal cannot answer.

The websocket side is a list that records what it was sent (sessions.Attachment), which is all
a ClientSession knows of a websocket.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import zmq.asyncio
from jupyter_client.session import Session

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway import sessions
from kernelkeeper.gateway.connection import JournalReplay, KernelConnection
from kernelkeeper.gateway.metrics import Metrics
from kernelkeeper.gateway.sessions import ClientSession
from kernelkeeper.gateway.wire import KernelMessage
from tests.unit.test_kernel_launcher import launch  # noqa: F401 - the launcher fixture

pytestmark = pytest.mark.timeout(180)


class Recorder:
    """Stands for the client's websocket: keeps what it was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[KernelMessage] = []
        self.closed = False

    def send_kernel_msg(self, msg: KernelMessage,
                        flushed: Callable[[], None] | None = None) -> bool:
        if self.closed:
            return False
        self.sent.append(msg)
        if flushed is not None:
            flushed()
        return True

    def close_quietly(self, code: int, reason: str) -> None:
        self.closed = True

    def lines(self, parent: str) -> list[int]:
        text = "".join(m.content["text"] for m in self.sent
                       if m.msg_type == "stream" and m.parent.get("msg_id") == parent)
        return [int(line.split()[1]) for line in text.splitlines() if line.startswith("line ")]

    def idle(self, parent: str) -> bool:
        return any(m.msg_type == "status" and m.parent.get("msg_id") == parent
                   and m.content["execution_state"] == "idle" for m in self.sent)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def kernel(launch) -> AsyncIterator[Callable[..., KernelConnection]]:  # noqa: F811
    launched = await asyncio.to_thread(launch)
    await asyncio.to_thread(launched.wait, lambda st: st["ready"], 90, "ready")
    context = zmq.asyncio.Context()
    made: list[KernelConnection] = []

    def connect(**overrides: Any) -> KernelConnection:
        info = {"ip": launched.ip, "key": launched.key, "transport": "tcp",
                "signature_scheme": crd.SIGNATURE_SCHEME,
                **{f"{ch}_port": port for ch, port in crd.DEFAULT_PORTS.items()}, **overrides}
        conn = KernelConnection(str(uuid.uuid4()), info, context)
        made.append(conn)
        return conn

    yield connect
    for conn in made:
        conn.close()
    context.destroy(linger=0)


def _session(conn: KernelConnection, metrics: Metrics, **bounds: Any) -> ClientSession:
    kw = {"max_messages": 1000, "max_bytes": 10_000_000, "timeout": 60.0, **bounds}
    return ClientSession(conn, uuid.uuid4().hex, metrics=metrics, keep=True, **kw)


async def _attached(conn: KernelConnection, metrics: Metrics,
                    **bounds: Any) -> tuple[ClientSession, Recorder]:
    """A new session on a live connection, attached to a websocket that records."""
    await conn.ensure_alive(30)
    session = _session(conn, metrics, **bounds)
    ws = Recorder()
    session.attach(ws)
    return session, ws


CLIENT = Session(username="test")  # a client's own session, as a websocket client has


def _execute(session: ClientSession, lines: int, every: float) -> str:
    msg = CLIENT.msg("execute_request", {
        "code": f"import time\nfor i in range({lines}):\n    print(f'line {{i}}', flush=True)\n"
                f"    time.sleep({every})",
        "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False})
    parts = [CLIENT.pack(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
    session.send("shell", parts, [])
    return str(msg["header"]["msg_id"])


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_session_resumed_on_another_connection_gets_every_line_once(kernel):
    metrics = Metrics()
    first_conn = kernel()
    first, ws1 = await _attached(first_conn, metrics)
    msg_id = _execute(first, 30, 0.05)
    await _until(lambda: len(ws1.lines(msg_id)) >= 5, 30, "first lines")
    first.detach(ws1)
    first.close()
    first_conn.close()  # its replica is gone; another one connects to the kernel mid-cell
    second_conn = kernel()
    await second_conn.ensure_alive(30)
    resumed = ClientSession(second_conn, first.session_id, max_messages=1000,
                            max_bytes=10_000_000, timeout=60, metrics=metrics, keep=True)
    ws2 = Recorder()
    resumed.attach(ws2)
    await _until(lambda: ws2.idle(msg_id), 30, "idle on the second replica")
    assert first_conn._reports is None and second_conn._reports is not None, \
        "reports go over the plain TCP connection to the launcher"
    assert ws1.lines(msg_id) + ws2.lines(msg_id) == list(range(30))
    replies = [m for m in ws2.sent if m.msg_type == "execute_reply"]
    assert len(replies) == 1, "the reply, sent while no replica had the session, is replayed"


@pytest.mark.parametrize("bound", ["messages", "bytes"])
async def test_without_a_journal_the_buffer_keeps_the_newest_within_its_bounds(kernel, bound,
                                                                               monkeypatch):
    monkeypatch.setattr(sessions, "RESUME_TIMEOUT", 1.0)
    metrics = Metrics()
    conn = kernel(journal_port=_unused_port())  # nothing answers there
    limits = {"max_messages": 8} if bound == "messages" else {"max_bytes": 4000}
    session, ws1 = await _attached(conn, metrics, **limits)
    await asyncio.sleep(1.5)  # the first resume gives up: no journal
    msg_id = _execute(session, 40, 0.02)
    await _until(lambda: len(ws1.lines(msg_id)) >= 1, 30, "first line")
    session.detach(ws1)
    await _until(lambda: any(m.msg_type == "status" and m.parent.get("msg_id") == msg_id
                             and m.content.get("execution_state") == "idle"
                             for m in session.buffer), 30, "the cell ran out while away")
    held = list(session.buffer)
    assert session.buffer_dropped > 0 and metrics.counters["buffer_dropped_total"][()] > 0
    if bound == "messages":
        assert len(held) == 8
    else:
        assert sum(m.size() for m in held) <= 4000 and len(held) >= 2
    ws2 = Recorder()
    session.attach(ws2)
    await _until(lambda: len(ws2.sent) >= len(held), 10, "the buffer replayed")
    assert [m.msg_id for m in ws2.sent[:len(held)]] == [m.msg_id for m in held]
    lines = ws1.lines(msg_id) + ws2.lines(msg_id)
    assert lines == sorted(set(lines)) and len(lines) < 40, "the oldest went first"


async def test_a_detached_session_ends_after_its_timeout(kernel):
    conn = kernel()
    session, ws = await _attached(conn, Metrics(), timeout=1.0)
    session.detach(ws)
    assert conn.clients.get(session.session_id) is session
    await asyncio.sleep(0.5)
    assert conn.clients.get(session.session_id) is session, "not before its timeout"
    await _until(lambda: session.session_id not in conn.clients, 5, "the session to end")
    assert session.sockets == {}


async def test_live_iopub_the_replay_already_wrote_is_not_written_again(kernel):
    """This replica's own iopub subscription can deliver a message after the journal's replay
    wrote it (the two come on different sockets): it must reach the client once."""
    metrics = Metrics()
    conn = kernel()
    first, ws1 = await _attached(conn, metrics)
    msg_id = _execute(first, 6, 0.01)
    await _until(lambda: ws1.idle(msg_id), 30, "the cell done")
    iopub = [m for m in ws1.sent if m.channel == "iopub" and m.parent.get("msg_id") == msg_id]
    late = iopub[-2:]  # the journal replays them all; this replica's stream has two late

    resumed = _session(conn, metrics)
    ws2 = Recorder()
    resumed.handler, resumed.holding = ws2, None
    resumed._deliver_replay(JournalReplay(
        known=True, entries=iopub, dropped=0, max_messages=1000, max_bytes=10_000_000,
        recent_iopub=frozenset(m.msg_id for m in iopub)), held=[(late[0], False)])
    resumed.deliver(late[1])
    assert [m.msg_id for m in ws2.sent] == [m.msg_id for m in iopub], "each once, in order"
    # What the journal did not have is new: it and everything after it go through.
    newer = _execute(first, 1, 0)
    await _until(lambda: ws2.idle(newer), 30, "the next cell, live on the resumed session")
    assert ws2.lines(newer) == [0]
    first.close()
    resumed.close()


async def test_a_reply_pushed_while_the_resume_is_answered_is_written_once(kernel):
    """The journal pushes a followed session's replies as they come, on the socket its resume
    answer comes on: a push can reach the session before the resume task has run, and is
    then neither in the replay nor pushed again. It must reach the client, once."""
    metrics = Metrics()
    conn = kernel()
    first, ws1 = await _attached(conn, metrics)
    msg_ids = [_execute(first, 1, 0) for _ in range(2)]
    await _until(lambda: all(ws1.idle(m) for m in msg_ids), 30, "both cells done")
    replies = [m for m in ws1.sent if m.channel == "shell"]
    assert [r.parent["msg_id"] for r in replies] == msg_ids

    resumed = _session(conn, metrics)
    ws2 = Recorder()
    resumed.handler, resumed.holding = ws2, None
    # The first reply the journal replayed and pushed too; the second it only pushed.
    resumed._deliver_replay(JournalReplay(
        known=True, entries=[replies[0]], dropped=0, max_messages=1000, max_bytes=10_000_000),
        held=[(replies[0], True), (replies[1], True), (replies[1], False)])
    assert [m.msg_id for m in ws2.sent] == [r.msg_id for r in replies], "each once, in order"
    first.close()
    resumed.close()
