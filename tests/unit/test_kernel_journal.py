"""The kernel Pod's journal as a data structure: cursors, replay, bounds and what they drop."""

from __future__ import annotations

import pytest

from kernelkeeper.kernel.journal import IDENTITY_SEPARATOR, Journal, session_of


def _out(journal: Journal, n: int, prefix: str = "o", size: int = 10) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for msg_id in ids:
        journal.append("iopub", None, msg_id, [b"x" * size])
    return ids


def _ids(replay) -> list[str]:
    return [e.msg_id for e in replay.entries]


def test_identity_names_its_session_and_gateway_sockets_have_none():
    assert session_of(b"abc" + IDENTITY_SEPARATOR + b"replica1") == "abc"
    assert session_of(b"kernelkeeper-gw-123") is None


def test_a_new_session_starts_at_the_present():
    j = Journal(100, 10_000)
    _out(j, 3)
    first = j.replay("s1")
    assert not first.known and first.entries == []
    later = _out(j, 2, "n")
    again = j.replay("s1")
    assert again.known and _ids(again) == later and again.dropped == 0


def test_replay_is_what_was_not_sent_and_moves_the_cursor():
    j = Journal(100, 10_000)
    j.open("s1")
    ids = _out(j, 5)
    j.sent("s1", ids[:2])
    assert _ids(j.replay("s1")) == ids[2:]
    assert j.replay("s1").entries == []  # replayed once, not twice


def test_replies_go_to_their_session_only_and_interleave_by_arrival():
    j = Journal(100, 10_000)
    j.open("a")
    j.open("b")
    j.append("iopub", None, "busy", [b"1"])
    j.append("shell", "a", "reply-a", [b"2"])
    j.append("shell", "b", "reply-b", [b"3"])
    j.append("iopub", None, "idle", [b"4"])
    assert _ids(j.replay("a")) == ["busy", "reply-a", "idle"]
    assert _ids(j.replay("b")) == ["busy", "reply-b", "idle"]


def test_a_reported_id_the_journal_has_not_seen_yet_moves_the_cursor_when_it_arrives():
    j = Journal(100, 10_000)
    j.open("s1")
    j.sent("s1", ["early"])  # the gateway's path won the race
    j.append("iopub", None, "early", [b"x"])
    j.append("iopub", None, "next", [b"x"])
    assert _ids(j.replay("s1")) == ["next"]


def test_bounds_by_count_and_bytes_evict_the_oldest_and_count_the_loss():
    j = Journal(4, 10_000)
    j.open("s1")
    ids = _out(j, 10)
    replay = j.replay("s1")
    assert _ids(replay) == ids[-4:] and replay.dropped_iopub == 6
    assert j.stats()["evictedMessages"] == 6 and j.stats()["messages"] == 4

    by_bytes = Journal(1000, 35)
    by_bytes.open("s1")
    ids = _out(by_bytes, 10, size=10)
    replay = by_bytes.replay("s1")
    assert _ids(replay) == ids[-3:] and replay.dropped_iopub == 7
    assert by_bytes.stats()["bytes"] <= 35


def test_lost_replies_are_counted_per_session():
    j = Journal(2, 10_000)
    j.open("a")
    j.append("shell", "a", "r1", [b"x"])
    j.append("shell", "a", "r2", [b"x"])
    j.append("iopub", None, "o1", [b"x"])
    j.append("iopub", None, "o2", [b"x"])
    replay = j.replay("a")
    assert _ids(replay) == ["o1", "o2"]
    assert (replay.dropped_iopub, replay.dropped_replies) == (0, 2)


def test_cursors_are_bounded_least_recently_used_first():
    j = Journal(10, 10_000, max_sessions=2)
    for s in ("a", "b", "c"):
        j.open(s)
    assert set(j.cursors) == {"b", "c"}
    assert not j.replay("a").known


def test_a_journal_needs_room():
    with pytest.raises(ValueError):
        Journal(0, 10)


def test_report_lines_verify_with_the_key_only():
    from kernelkeeper.kernel.report_server import parse_line, report_line

    line = report_line(b"k1", "s1", ["a", "b"])
    assert parse_line(b"k1", line) == ("s1", ["a", "b"])
    assert parse_line(b"other", line) is None, "signed with another key"
    sig, _, body = line.partition(b" ")
    assert parse_line(b"k1", sig + b" " + body.replace(b"s1", b"s2")) is None, "altered"
    for garbage in (b"", b"\n", b"nosig\n", sig + b" not json\n"):
        assert parse_line(b"k1", garbage) is None


def test_recent_iopub_is_the_newest_ids_held_oldest_first_replies_excluded():
    j = Journal(5, 10_000)
    j.open("s1")
    ids = _out(j, 4)
    j.append("shell", "s1", "r1", [b"reply"])
    ids += _out(j, 3, "n")
    # Only what the journal still holds, iopub only, oldest first, at most `limit`.
    held = [i for i in ids if i in {e.msg_id for e in j._entries}]
    assert j.recent_iopub(100) == held
    assert j.recent_iopub(2) == ["n1", "n2"]
