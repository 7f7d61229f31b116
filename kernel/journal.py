"""The kernel Pod's journal: what the kernel sent, kept so that any gateway replica can resume.

Two kinds of message leave a kernel: iopub messages (every client gets them) and replies on
shell, control and stdin (addressed to one client by its ZMQ identity). Either kind is lost
for good when no gateway is connected at the moment it is sent: a PUB socket drops what no
subscriber takes, a ROUTER drops what no peer with that identity takes. The launcher sees both
(it subscribes to iopub and relays the other channels), and keeps the recent ones here.

- iopub entries carry consecutive sequence numbers; replies carry consecutive numbers per
  client session, so a gap in either says exactly how many were evicted.
- Both share one order of arrival, by which a replay interleaves them.
- Bounded by messages and bytes (iopub and replies together); the oldest go first.
- A cursor per client session records the last iopub entry and the last reply the session
  was sent (gateways report it as they write to the client's websocket). A replay is
  everything after the cursor, and the cursor moves to the end of it.

Nothing here does I/O; the launcher's journal service (journal_service.py) feeds it.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass

IOPUB = "iopub"
REPLY_CHANNELS = ("shell", "control", "stdin")
# A client's ZMQ identity is its session id, this separator and a per-replica suffix, so that
# two replicas serving one session never fight over one identity at the kernel's ROUTER.
IDENTITY_SEPARATOR = b"\x00"


def session_of(identity: bytes) -> str | None:
    """The client session an identity belongs to; None for the gateway's own sockets."""
    if IDENTITY_SEPARATOR not in identity:
        return None
    return identity.split(IDENTITY_SEPARATOR, 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class Entry:
    order: int  # arrival order over both kinds
    seq: int  # iopub sequence, or the reply's number within its session
    channel: str
    session: str | None  # None for iopub
    msg_id: str
    frames: list[bytes]  # from the <IDS|MSG> delimiter on, as the kernel signed them
    size: int


@dataclass
class Cursor:
    iopub: int  # last iopub seq sent to this session
    reply: int  # last reply number sent to this session


@dataclass(frozen=True)
class Replay:
    known: bool  # False: a session seen for the first time (nothing to replay)
    entries: list[Entry]
    dropped_iopub: int
    dropped_replies: int

    @property
    def dropped(self) -> int:
        return self.dropped_iopub + self.dropped_replies


class Journal:
    def __init__(self, max_messages: int, max_bytes: int, max_sessions: int = 1024) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("a journal must hold at least one message and one byte")
        self.max_messages, self.max_bytes, self.max_sessions = max_messages, max_bytes, max_sessions
        self._entries: deque[Entry] = deque()
        self._bytes = 0
        self._order = itertools.count(1)
        self.iopub_head = 0  # seq of the newest iopub entry ever (0: none yet)
        self._reply_heads: dict[str, int] = {}
        self._by_msg_id: dict[str, Entry] = {}
        # The oldest number still held, per kind, to count what was evicted.
        self._iopub_oldest = 1
        self._reply_oldest: dict[str, int] = {}
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()
        # msg_ids a gateway reported as sent before the launcher journaled them -> sessions
        self._pending: OrderedDict[str, set[str]] = OrderedDict()
        self.evicted_messages = 0
        self.evicted_bytes = 0

    # ------------------------------------------------------------------ writing

    def append(self, channel: str, session: str | None, msg_id: str,
               frames: list[bytes]) -> Entry:
        if channel == IOPUB:
            self.iopub_head += 1
            seq = self.iopub_head
            session = None
        else:
            if session is None:
                raise ValueError("a reply needs the session it is addressed to")
            seq = self._reply_heads.get(session, 0) + 1
            self._reply_heads[session] = seq
            self._reply_oldest.setdefault(session, seq)
        entry = Entry(next(self._order), seq, channel, session, msg_id, frames,
                      sum(len(f) for f in frames))
        self._entries.append(entry)
        self._bytes += entry.size
        if msg_id:
            self._by_msg_id[msg_id] = entry
        self._evict()
        self._settle(entry)
        return entry

    def _evict(self) -> None:
        while self._entries and (len(self._entries) > self.max_messages or
                                 self._bytes > self.max_bytes):
            old = self._entries.popleft()
            self._bytes -= old.size
            self.evicted_messages += 1
            self.evicted_bytes += old.size
            if self._by_msg_id.get(old.msg_id) is old:
                del self._by_msg_id[old.msg_id]
            if old.session is None:
                self._iopub_oldest = old.seq + 1
            else:
                self._reply_oldest[old.session] = old.seq + 1

    def _settle(self, entry: Entry) -> None:
        """A cursor reported this msg_id before it was journaled (the gateway's path to the
        kernel won the race against the launcher's own): move it now."""
        for session in self._pending.pop(entry.msg_id, ()):
            cursor = self.cursors.get(session)
            if cursor is not None:
                self._advance(cursor, entry)

    # ------------------------------------------------------------------ cursors

    def _cursor(self, session: str) -> Cursor | None:
        cursor = self.cursors.get(session)
        if cursor is not None:
            self.cursors.move_to_end(session)
        return cursor

    def open(self, session: str) -> Cursor:
        """A session's cursor, created at the present for a session never seen."""
        cursor = self._cursor(session)
        if cursor is None:
            cursor = Cursor(self.iopub_head, self._reply_heads.get(session, 0))
            self.cursors[session] = cursor
            while len(self.cursors) > self.max_sessions:
                self.cursors.popitem(last=False)
        return cursor

    def sent(self, session: str, msg_ids: list[str]) -> None:
        """The session's gateway wrote these messages to its websocket."""
        cursor = self.open(session)
        for msg_id in msg_ids:
            entry = self._by_msg_id.get(msg_id)
            if entry is None:
                self._pending.setdefault(msg_id, set()).add(session)
                while len(self._pending) > 4096:  # ids that will never come (evicted, forged)
                    self._pending.popitem(last=False)
                continue
            self._advance(cursor, entry)

    @staticmethod
    def _advance(cursor: Cursor, entry: Entry) -> None:
        if entry.session is None:
            cursor.iopub = max(cursor.iopub, entry.seq)
        else:
            cursor.reply = max(cursor.reply, entry.seq)

    # ------------------------------------------------------------------ reading

    def replay(self, session: str) -> Replay:
        """Everything the session was not sent yet; its cursor moves past it."""
        cursor = self._cursor(session)
        if cursor is None:
            self.open(session)
            return Replay(False, [], 0, 0)
        entries = [e for e in self._entries
                   if (e.session is None and e.seq > cursor.iopub) or
                   (e.session == session and e.seq > cursor.reply)]
        dropped_iopub = max(0, min(self._iopub_oldest, self.iopub_head + 1) - cursor.iopub - 1)
        oldest_reply = self._reply_oldest.get(session, cursor.reply + 1)
        head_reply = self._reply_heads.get(session, 0)
        dropped_replies = max(0, min(oldest_reply, head_reply + 1) - cursor.reply - 1)
        cursor.iopub = self.iopub_head
        cursor.reply = head_reply
        return Replay(True, entries, dropped_iopub, dropped_replies)

    def recent_iopub(self, limit: int) -> list[str]:
        """msg_ids of the newest `limit` iopub entries, oldest first."""
        found: list[str] = []
        for entry in reversed(self._entries):
            if len(found) >= limit:
                break
            if entry.channel == IOPUB and entry.msg_id:
                found.append(entry.msg_id)
        return found[::-1]

    def stats(self) -> dict[str, int]:
        return {
            "messages": len(self._entries),
            "bytes": self._bytes,
            "maxMessages": self.max_messages,
            "maxBytes": self.max_bytes,
            "evictedMessages": self.evicted_messages,
            "evictedBytes": self.evicted_bytes,
            "sessions": len(self.cursors),
            "iopubHead": self.iopub_head,
        }
