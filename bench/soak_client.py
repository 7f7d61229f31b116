"""One client of the chaos soak (bench/soak.py): a kernel of its own, executing without pause
through the one URL, counting every line and reply that comes back, and resuming across gateway
replicas the way the kernel Pod's journal allows.

The resume protocol it follows (and so checks):
- a dropped websocket is reopened with the same `session_id`, through the same URL (any
  replica); a refused upgrade (503, a closed stream) or a close with 1001/1012 is retried with a
  back-off from 0.1 s doubling to 1 s, within a bounded budget;
- right after it reconnects it sends a `kernel_info_request` on shell, the barrier: shell
  requests are handled in order, so once the barrier's reply is in, the execute in flight either
  has its `execute_reply` (live or replayed) or never reached the kernel. One without a reply
  and without an `execute_input` is sent again with a new msg_id, and counted as re-sent; one
  whose `execute_input` was seen but whose reply never came is unanswered: lost.

What the kernel actually ran comes from the kernel itself: every cell appends its tag to a list
in the kernel, which the last cell prints. Lines produced are those runs' lines, so a line is
missing only if the kernel printed it and the client never saw it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from bench.protocol import execute_content, new_msg
from bench.wsclient import V1, _decode_legacy_binary, _decode_v1, _encode_v1

SETUP_CODE = "import time\n_kk_soak_ran = []"
REPORT_CODE = "import collections, json\nprint(json.dumps(collections.Counter(_kk_soak_ran)))"
# The journal's word that it overflowed: an iopub stream on stderr starting with this.
NOTICE_PREFIX = "[kernelkeeper]"
LINE = re.compile(r"(c\d+e\d+) (\d+)")

BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0
CONNECT_TIMEOUT = 20.0  # one websocket upgrade (hydration may wait for the API server)
BARRIER_TIMEOUT = 30.0  # a kernel_info reply queues behind the execute in flight (~2 s)
SILENCE = 30.0  # nothing at all arrives while an execute runs: the connection is dead
IDLE_GRACE = 10.0  # reply in, status idle not yet: iopub and shell are separate streams
CLOSE_TIMEOUT = 2.0  # our close until the websocket's last frame (the server's close)


def work_code(tag: str, lines: int, pause: float) -> str:
    return (f"_kk_soak_ran.append({tag!r})\n"
            f"for _i in range({lines}):\n"
            f"    print({tag!r}, _i, flush=True)\n"
            f"    time.sleep({pause})\n")


class Disconnected(Exception):
    """The websocket is gone (closed by the server, a failed send, or silent too long)."""


class ClientFailed(RuntimeError):
    """The client cannot go on (no websocket within its budget, the wrong subprotocol)."""


@dataclass
class Closed:
    """The end of one websocket's frames, in its queue."""

    conn: list[WebSocketClientConnection]  # filled in once the upgrade completed


@dataclass
class Attempt:
    """One execute_request on the wire (a re-send is a new attempt of the same execute)."""

    msg_id: str
    execute: Execute
    replies: int = 0
    reply_status: str = ""
    replied_at: float | None = None
    input_seen: bool = False
    idle: bool = False
    resent: bool = False  # found never to have reached the kernel, and sent again
    given_up_at: float | None = None  # reached the kernel, but no reply by the barrier's
    partial: str = ""  # an unfinished stdout line


@dataclass
class Execute:
    index: int
    tag: str
    kind: str  # setup, work or report
    code: str
    attempts: list[Attempt] = field(default_factory=list)
    received: collections.Counter[int] = field(default_factory=collections.Counter)
    text: list[str] = field(default_factory=list)  # raw stdout, for the report
    abandoned: bool = False  # reached the kernel (execute_input) but no reply by the barrier
    timed_out: bool = False


@dataclass
class ClientCounts:
    """One client's figures; the soak sums them."""

    index: int
    protocol: str
    kernel_id: str
    executes_sent: int = 0
    answered: int = 0
    answered_twice: int = 0
    answered_with_error: int = 0
    resent: int = 0
    resent_answered: int = 0
    late_replies: int = 0  # a reply after the barrier's, which should have come before it
    unanswered: int = 0
    executed_twice: int = 0
    idle_missing: int = 0
    lines_produced: int = 0
    lines_received: int = 0
    lines_missing: int = 0
    lines_duplicated: int = 0
    lines_out_of_order: int = 0
    unexpected_output: int = 0
    journal_notices: int = 0
    disconnects: int = 0
    reconnects: int = 0
    max_reconnect_s: float = 0.0
    max_websocket_open_s: float = 0.0
    refused: dict[str, int] = field(default_factory=dict)
    close_codes: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    error: str | None = None


class SoakClient:
    def __init__(self, index: int, base_url: str, token: str, *, protocol: str | None,
                 lines: int, line_pause: float, exec_timeout: float, reconnect_budget: float,
                 log: Callable[[str], object]) -> None:
        self.index = index
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.protocol = protocol  # V1, or None for the legacy JSON protocol
        self.lines, self.line_pause = lines, line_pause
        self.exec_timeout, self.reconnect_budget = exec_timeout, reconnect_budget
        self.log = log
        self.session_id = uuid.uuid4().hex
        self.kernel_id = ""
        self.executes: list[Execute] = []
        self.attempts: dict[str, Attempt] = {}
        self.barriers: dict[str, bool] = {}
        self.conn: WebSocketClientConnection | None = None
        self.inbox: asyncio.Queue[str | bytes | Closed] = asyncio.Queue()
        self.last_frame = 0.0
        self.newest_line = (-1, -1)  # (execute index, line number) of the latest line seen
        self.out_of_order = 0
        self.unexpected = 0
        self.examples: list[str] = []
        self.notices: list[str] = []
        self.disconnects = 0
        self.reconnect_s: list[float] = []
        # Where each stream message came from, to tell a message written twice (one msg_id)
        # from a line printed twice: msg_id -> (websocket number, seconds after it opened).
        self.opened = 0
        self.opened_at = time.monotonic()
        self.stream_ids: collections.OrderedDict[str, tuple[int, float]] = (
            collections.OrderedDict())
        self.open_s: list[float] = []
        self.refused: collections.Counter[str] = collections.Counter()
        self.close_codes: collections.Counter[str] = collections.Counter()
        self.kernel_record: dict[str, int] | None = None
        self.error: str | None = None

    @property
    def name(self) -> str:
        return f"client {self.index} ({'v1' if self.protocol else 'legacy'})"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    # ------------------------------------------------------------------ phases

    async def prepare(self) -> None:
        """A kernel of its own, a websocket, and the kernel's record of what it ran."""
        resp = await AsyncHTTPClient().fetch(HTTPRequest(
            f"{self.base_url}/api/kernels", method="POST", body=json.dumps({"name": "python3"}),
            headers={**self._headers(), "Content-Type": "application/json"},
            request_timeout=180), raise_error=False)
        if resp.code != 201:
            raise ClientFailed(f"{self.name}: POST /api/kernels -> {resp.code}: "
                               f"{(resp.body or b'')[:300]!r}")
        self.kernel_id = json.loads(resp.body)["id"]
        await self._connect(time.monotonic() + self.reconnect_budget)
        setup = await self.execute("setup", SETUP_CODE)
        if not setup.attempts[-1].replies:
            raise ClientFailed(f"{self.name}: the setup cell was not answered")

    async def work(self, until: float, cap: int) -> None:
        """Execute cells back to back until `until` (monotonic) or `cap` cells."""
        done = 0
        while time.monotonic() < until and done < cap:
            await self.execute("work")
            done += 1

    async def report(self) -> None:
        """The kernel's own record: how often it ran each tag."""
        ex = await self.execute("report", REPORT_CODE)
        text = "".join(ex.text).strip().splitlines()
        if ex.attempts[-1].replies and text:
            try:
                self.kernel_record = {str(k): int(v) for k, v in json.loads(text[-1]).items()}
            except ValueError:
                self.error = f"the kernel's record is not JSON: {text[-1][:200]!r}"
        else:
            self.error = "the kernel's record of what it ran never came back"

    async def close(self) -> None:
        await self._drop_connection()

    async def shutdown_kernel(self) -> None:
        if self.kernel_id:
            await AsyncHTTPClient().fetch(HTTPRequest(
                f"{self.base_url}/api/kernels/{self.kernel_id}", method="DELETE",
                headers=self._headers(), request_timeout=60), raise_error=False)

    # ------------------------------------------------------------------ one execute

    async def execute(self, kind: str, code: str | None = None) -> Execute:
        index = len(self.executes)
        tag = f"c{self.index}e{index}"
        ex = Execute(index, tag, kind, code or work_code(tag, self.lines, self.line_pause))
        self.executes.append(ex)
        deadline = time.monotonic() + self.exec_timeout
        try:
            await self._send_attempt(ex)
        except Disconnected as exc:
            await self._recover(ex, exc)
        while not self._finished(ex):
            now = time.monotonic()
            if now > deadline:
                ex.timed_out = True
                self.log(f"{self.name}: {kind} {tag} not finished after {self.exec_timeout:.0f}s")
                break
            try:
                msg = await self._next(min(1.0, deadline - now))
                if msg is None and time.monotonic() - self.last_frame > SILENCE:
                    raise Disconnected(f"nothing received for {SILENCE:.0f}s")
            except Disconnected as exc:
                await self._recover(ex, exc)
                continue
            if msg is not None:
                self._handle(msg)
        return ex

    def _finished(self, ex: Execute) -> bool:
        if ex.abandoned:
            return True
        last = ex.attempts[-1] if ex.attempts else None
        if last is None or last.replied_at is None:
            return False
        return last.idle or time.monotonic() - last.replied_at > IDLE_GRACE

    async def _send_attempt(self, ex: Execute) -> None:
        msg = new_msg("execute_request", execute_content(ex.code), self.session_id)
        attempt = Attempt(msg["header"]["msg_id"], ex)
        ex.attempts.append(attempt)
        self.attempts[attempt.msg_id] = attempt
        await self._send(msg)

    # ------------------------------------------------------------------ failover

    async def _recover(self, ex: Execute | None, why: Disconnected) -> None:
        """Reconnect (same session_id), pass the barrier, re-send what never reached the kernel."""
        t0 = time.monotonic()
        budget_end = t0 + self.reconnect_budget
        self.disconnects += 1
        self.log(f"{self.name}: websocket lost ({why}); reconnecting")
        while True:
            if time.monotonic() > budget_end:
                raise ClientFailed(f"{self.name}: not back within {self.reconnect_budget:.0f}s "
                                   f"(last: {why})")
            await self._drop_connection()
            await self._connect(budget_end)
            try:
                await self._barrier(budget_end)
                if ex is not None:
                    await self._resend_if_lost(ex)
            except Disconnected as exc:
                self.disconnects += 1
                self.log(f"{self.name}: lost again during the barrier ({exc})")
                why = exc
                continue
            break
        took = time.monotonic() - t0
        self.reconnect_s.append(took)
        self.log(f"{self.name}: back after {took:.2f}s")

    async def _barrier(self, budget_end: float) -> None:
        msg = new_msg("kernel_info_request", {}, self.session_id)
        barrier = msg["header"]["msg_id"]
        self.barriers[barrier] = False
        await self._send(msg)
        deadline = min(budget_end, time.monotonic() + BARRIER_TIMEOUT)
        while not self.barriers[barrier]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Disconnected(f"the barrier was not answered in {BARRIER_TIMEOUT:.0f}s")
            got = await self._next(min(1.0, remaining))
            if got is not None:
                self._handle(got)

    async def _resend_if_lost(self, ex: Execute) -> None:
        last = ex.attempts[-1] if ex.attempts else None
        if last is None or last.replies:
            return
        if last.input_seen:
            # It ran (or runs) in the kernel, yet its reply did not come before the barrier's.
            ex.abandoned, last.given_up_at = True, time.monotonic()
            self.log(f"{self.name}: {ex.tag} reached the kernel but its reply is lost")
            return
        last.resent = True
        self.log(f"{self.name}: {ex.tag} never reached the kernel; sending it again")
        await self._send_attempt(ex)

    # ------------------------------------------------------------------ the websocket

    def _channels_url(self) -> str:
        ws = "ws" + self.base_url[len("http"):]
        return f"{ws}/api/kernels/{self.kernel_id}/channels?session_id={self.session_id}"

    async def _connect(self, budget_end: float) -> None:
        delay = BACKOFF_FIRST
        t0 = time.monotonic()
        while True:
            inbox: asyncio.Queue[str | bytes | Closed] = asyncio.Queue()
            holder: list[WebSocketClientConnection] = []

            def deliver(frame: str | bytes | None, inbox: asyncio.Queue[str | bytes | Closed]
                        = inbox, holder: list[WebSocketClientConnection] = holder) -> None:
                inbox.put_nowait(Closed(holder) if frame is None else frame)

            request = HTTPRequest(self._channels_url(), headers=self._headers(),
                                  connect_timeout=5, request_timeout=CONNECT_TIMEOUT)
            try:
                conn = await asyncio.wait_for(
                    websocket_connect(request, on_message_callback=deliver,
                                      subprotocols=[self.protocol] if self.protocol else None,
                                      max_message_size=64 * 1024 * 1024),
                    CONNECT_TIMEOUT + 5)
                self.opened += 1
                self.opened_at = time.monotonic()
                break
            except Exception as exc:  # noqa: BLE001 - any refusal is retried, bounded
                what = _describe(exc)
                self.refused[what] += 1
                if time.monotonic() + delay > budget_end:
                    raise ClientFailed(f"{self.name}: no websocket within "
                                       f"{self.reconnect_budget:.0f}s; last: {what}") from exc
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)
        holder.append(conn)
        if (conn.selected_subprotocol or None) != self.protocol:
            conn.close()
            raise ClientFailed(f"{self.name}: offered {self.protocol or 'no subprotocol'}, "
                               f"the gateway selected {conn.selected_subprotocol or 'none'}")
        self.conn, self.inbox = conn, inbox
        self.last_frame = time.monotonic()
        self.open_s.append(time.monotonic() - t0)

    async def _drop_connection(self) -> None:
        """Close the websocket (if still open) and handle every frame it delivered first: a
        frame the server wrote before the close counts as received, in order."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        conn.close()
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(self.inbox.get(), remaining)
            except TimeoutError:
                break
            if isinstance(item, Closed):
                break
            decoded = self._decode(item)
            if decoded is not None:
                self._handle(decoded)

    async def _send(self, msg: dict[str, Any]) -> None:
        conn = self.conn
        if conn is None:
            raise Disconnected("no websocket")
        try:
            if self.protocol == V1:
                await conn.write_message(_encode_v1(msg), binary=True)
            else:
                await conn.write_message(json.dumps(msg))
        except (WebSocketClosedError, StreamClosedError) as exc:
            raise Disconnected(f"send failed: {exc!r}") from exc

    async def _next(self, timeout: float) -> dict[str, Any] | None:
        """The next message, None after `timeout`; raises Disconnected at the websocket's end."""
        if self.conn is None:
            raise Disconnected("no websocket")
        try:
            item = await asyncio.wait_for(self.inbox.get(), max(0.01, timeout))
        except TimeoutError:
            return None
        if isinstance(item, Closed):
            code = item.conn[0].close_code if item.conn else None
            reason = item.conn[0].close_reason if item.conn else None
            self.close_codes[str(code)] += 1
            self.conn = None
            raise Disconnected(f"closed {code} {reason or ''}".strip())
        self.last_frame = time.monotonic()
        return self._decode(item)

    def _decode(self, frame: str | bytes) -> dict[str, Any] | None:
        try:
            if isinstance(frame, str):
                return dict(json.loads(frame))
            if self.protocol == V1:
                return _decode_v1(frame)
            return _decode_legacy_binary(frame)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._unexpected(f"malformed frame: {exc!r}")
            return None

    # ------------------------------------------------------------------ what arrives

    def _handle(self, msg: dict[str, Any]) -> None:
        channel = msg.get("channel")
        mtype = (msg.get("header") or {}).get("msg_type") or msg.get("msg_type")
        parent = (msg.get("parent_header") or {}).get("msg_id")
        content = msg.get("content") or {}
        if channel == "iopub" and mtype == "stream":
            self._on_stream(parent, content, str((msg.get("header") or {}).get("msg_id", "")))
            return
        if parent in self.barriers:
            if channel == "shell" and mtype == "kernel_info_reply":
                self.barriers[parent] = True
            return
        attempt = self.attempts.get(parent) if parent else None
        if attempt is None:
            return
        if channel == "shell" and mtype == "execute_reply":
            attempt.replies += 1
            attempt.reply_status = str(content.get("status"))
            attempt.replied_at = attempt.replied_at or time.monotonic()
            if attempt.replies == 2:
                self._example(f"{attempt.execute.tag}: a second execute_reply")
            if attempt.given_up_at is not None and attempt.replies == 1:
                late = time.monotonic() - attempt.given_up_at
                self._example(f"{attempt.execute.tag}: its execute_reply came {late:.2f}s "
                              "after the barrier's reply")
        elif channel == "iopub" and mtype == "execute_input":
            attempt.input_seen = True
        elif (channel == "iopub" and mtype == "status"
              and content.get("execution_state") == "idle"):
            attempt.idle = True
            if attempt.partial:
                self._unexpected(f"{attempt.execute.tag}: unfinished line {attempt.partial!r}")
                attempt.partial = ""

    def _on_stream(self, parent: str | None, content: dict[str, Any], msg_id: str = "") -> None:
        text, name = str(content.get("text", "")), content.get("name")
        where = (self.opened, time.monotonic() - self.opened_at)
        first = self.stream_ids.get(msg_id)
        if first is not None:
            self._example(f"stream message {msg_id} written twice: on websocket #{first[0]} "
                          f"{first[1]:.3f}s after it opened, again on #{where[0]} "
                          f"{where[1]:.3f}s after it opened")
        elif msg_id:
            self.stream_ids[msg_id] = where
            while len(self.stream_ids) > 4096:
                self.stream_ids.popitem(last=False)
        if name == "stderr" and text.startswith(NOTICE_PREFIX):
            self.notices.append(text.strip())
            self.log(f"{self.name}: {text.strip()}")
            return
        attempt = self.attempts.get(parent) if parent else None
        if attempt is None or name != "stdout":
            self._unexpected(f"{name} for {parent}: {text[:120]!r}")
            return
        ex = attempt.execute
        if ex.kind != "work":
            ex.text.append(text)
            return
        *complete, attempt.partial = (attempt.partial + text).split("\n")
        for line in complete:
            self._on_line(ex, line)

    def _on_line(self, ex: Execute, line: str) -> None:
        m = LINE.fullmatch(line)
        if m is None or m[1] != ex.tag or int(m[2]) >= self.lines:
            self._unexpected(f"{ex.tag}: line {line[:120]!r}")
            return
        number = int(m[2])
        ex.received[number] += 1
        if ex.received[number] > 1:
            self._example(f"{ex.tag}: line {number} received {ex.received[number]} times")
            return
        position = (ex.index, number)
        if position < self.newest_line:
            self.out_of_order += 1
            self._example(f"{ex.tag}: line {number} after {self.newest_line}")
        else:
            self.newest_line = position

    def _unexpected(self, what: str) -> None:
        self.unexpected += 1
        self._example(what)

    def _example(self, what: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(what)

    # ------------------------------------------------------------------ the figures

    def counts(self) -> ClientCounts:
        c = ClientCounts(self.index, "v1" if self.protocol else "legacy", self.kernel_id)
        record = self.kernel_record or {}
        never_ran, examples = 0, list(self.examples)
        for ex in self.executes:
            if ex.kind != "work":
                continue
            for a in ex.attempts:
                c.executes_sent += 1
                c.answered += a.replies >= 1
                c.answered_twice += a.replies >= 2
                c.answered_with_error += a.replies >= 1 and a.reply_status != "ok"
                c.resent += a.resent
                c.resent_answered += a.resent and a.replies >= 1
                c.late_replies += a.given_up_at is not None and a.replies >= 1
                c.unanswered += not a.resent and a.replies == 0
                if not a.resent and a.replies == 0:
                    examples.append(f"{ex.tag}: unanswered (its execute_input "
                                    f"{'seen' if a.input_seen else 'not seen'})")
                c.idle_missing += a.replies >= 1 and not a.idle
            runs = record.get(ex.tag, 0)
            if self.kernel_record is None:
                # Without the kernel's word, an answered execute is the best evidence of a run.
                runs = int(any(a.replies for a in ex.attempts))
            c.executed_twice += runs > 1
            c.lines_produced += runs * self.lines
            c.lines_received += sum(ex.received.values())
            c.lines_duplicated += sum(n - 1 for n in ex.received.values() if n > 1)
            if runs:
                lost = [i for i in range(self.lines) if i not in ex.received]
                c.lines_missing += len(lost)
                if lost:
                    examples.append(f"{ex.tag}: {len(lost)} lines missing, from line {lost[0]}")
            elif ex.received:
                never_ran += 1
                examples.append(f"{ex.tag}: {len(ex.received)} lines of a cell the kernel "
                                "never ran")
        c.lines_out_of_order = self.out_of_order
        c.unexpected_output = self.unexpected + never_ran
        c.journal_notices = len(self.notices)
        c.disconnects = self.disconnects
        c.reconnects = len(self.reconnect_s)
        c.max_reconnect_s = max(self.reconnect_s, default=0.0)
        c.max_websocket_open_s = max(self.open_s[1:], default=0.0)
        c.refused = dict(self.refused)
        c.close_codes = dict(self.close_codes)
        c.examples = examples[:10]
        c.error = self.error
        return c


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return f"HTTP {code}"
    return type(exc).__name__
