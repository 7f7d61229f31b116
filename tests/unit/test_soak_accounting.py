"""The chaos soak's client counts what it must: lines split across stream messages are put back
together, and a line missing, doubled or reordered, a reply after the barrier's, or a re-sent
execute answered anyway, each shows in its own count (so the soak can fail).

The messages are hand-made, as a gateway would deliver them; no gateway or kernel runs here.
"""

from __future__ import annotations

from typing import Any

from bench.soak_client import Attempt, Execute, SoakClient

LINES = 3


def _client() -> SoakClient:
    return SoakClient(0, "http://127.0.0.1:9", "", protocol=None, lines=LINES, line_pause=0,
                      exec_timeout=1, reconnect_budget=1, log=lambda _msg: None)


def _execute(client: SoakClient, *msg_ids: str) -> Execute:
    index = len(client.executes)
    ex = Execute(index, f"c0e{index}", "work", "")
    for msg_id in msg_ids:
        attempt = Attempt(msg_id, ex)
        ex.attempts.append(attempt)
        client.attempts[msg_id] = attempt
    client.executes.append(ex)
    return ex


def _msg(channel: str, msg_type: str, parent: str, **content: Any) -> dict[str, Any]:
    return {"channel": channel, "header": {"msg_type": msg_type},
            "parent_header": {"msg_id": parent}, "content": content}


def _stdout(parent: str, text: str) -> dict[str, Any]:
    return _msg("iopub", "stream", parent, name="stdout", text=text)


def _answer(client: SoakClient, parent: str) -> None:
    client._handle(_msg("shell", "execute_reply", parent, status="ok"))
    client._handle(_msg("iopub", "status", parent, execution_state="idle"))


def test_lines_split_across_messages_count_once_each() -> None:
    client = _client()
    _execute(client, "m0")
    client._handle(_msg("iopub", "execute_input", "m0"))
    for text in ("c0e0 0\nc0", "e0 1\n", "c0e0 2\n"):
        client._handle(_stdout("m0", text))
    _answer(client, "m0")
    client.kernel_record = {"c0e0": 1}
    c = client.counts()
    assert (c.executes_sent, c.answered, c.unanswered) == (1, 1, 0)
    assert (c.lines_produced, c.lines_received, c.lines_missing) == (3, 3, 0)
    assert (c.lines_duplicated, c.lines_out_of_order, c.unexpected_output) == (0, 0, 0)


def test_missing_duplicated_and_reordered_lines_are_counted() -> None:
    client = _client()
    _execute(client, "m0")
    _execute(client, "m1")
    client._handle(_stdout("m0", "c0e0 0\nc0e0 0\n"))  # line 1 and 2 never come
    _answer(client, "m0")
    client._handle(_stdout("m1", "c0e1 1\nc0e1 0\nc0e1 2\n"))
    client._handle(_stdout("m1", "c0e1 2\n"))
    _answer(client, "m1")
    client.kernel_record = {"c0e0": 1, "c0e1": 1}
    c = client.counts()
    assert c.lines_missing == 2
    assert c.lines_duplicated == 2
    assert c.lines_out_of_order == 1
    assert c.lines_received == 6 and c.lines_produced == 6


def test_a_line_of_another_cell_or_an_unfinished_line_is_unexpected() -> None:
    client = _client()
    _execute(client, "m0")
    client._handle(_stdout("m0", "c0e7 0\nc0e0 0\nc0e0 1\nc0e0 2\nc0e0"))
    _answer(client, "m0")
    client.kernel_record = {"c0e0": 1}
    assert client.counts().unexpected_output == 2


def test_unanswered_and_twice_answered_executes() -> None:
    client = _client()
    _execute(client, "m0")
    _execute(client, "m1")
    client._handle(_msg("iopub", "execute_input", "m0"))
    _answer(client, "m1")
    client._handle(_msg("shell", "execute_reply", "m1", status="ok"))
    client.kernel_record = {"c0e0": 1, "c0e1": 1}
    c = client.counts()
    assert (c.executes_sent, c.answered, c.unanswered, c.answered_twice) == (2, 1, 1, 1)
    assert c.lines_missing == 2 * LINES


def test_resent_execute_answered_anyway_and_a_cell_run_twice() -> None:
    client = _client()
    ex = _execute(client, "m0", "m1")
    ex.attempts[0].resent = True  # no reply, no execute_input by the barrier: sent again
    _answer(client, "m1")
    client._handle(_msg("shell", "execute_reply", "m0", status="ok"))
    client.kernel_record = {"c0e0": 2}
    c = client.counts()
    assert (c.resent, c.resent_answered, c.unanswered, c.executed_twice) == (1, 1, 0, 1)


def test_a_reply_after_the_barriers_is_counted() -> None:
    client = _client()
    ex = _execute(client, "m0")
    client._handle(_msg("iopub", "execute_input", "m0"))
    ex.attempts[0].given_up_at = 0.0  # the barrier's reply came first
    _answer(client, "m0")
    client.kernel_record = {"c0e0": 1}
    c = client.counts()
    assert (c.answered, c.late_replies) == (1, 1)


def test_the_journals_overflow_notice_is_counted_not_taken_for_output() -> None:
    client = _client()
    _execute(client, "m0")
    client._handle(_msg("iopub", "stream", "", name="stderr",
                        text="[kernelkeeper] 12 messages were lost\n"))
    client.kernel_record = {}
    c = client.counts()
    assert (c.journal_notices, c.unexpected_output) == (1, 0)
