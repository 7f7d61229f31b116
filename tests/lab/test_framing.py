"""kernelkeeper.lab.framing against jupyter_server's and jupyter_client's own serializers (the
formats' reference implementations): what one side encodes, the other decodes. No cluster."""

from __future__ import annotations

import json

from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from kernelkeeper.lab import framing
from kernelkeeper.lab.framing import LEGACY, V1

SESSION = Session(session="s-1", username="alice")


def _msg(msg_type: str = "execute_request", content: dict | None = None) -> dict:
    msg = SESSION.msg(msg_type, content if content is not None else {"code": "print('é')"})
    return json.loads(json.dumps(msg, default=str))  # dates as the browser sends them


def _legacy_text(msg: dict, channel: str) -> str:
    return json.dumps({**msg, "channel": channel, "buffers": []})


def _parts_as_dicts(frame: framing.Frame) -> list[dict]:
    return [json.loads(p) for p in frame.parts]


def test_legacy_text_to_v1_is_what_jupyter_server_reads():
    msg = _msg()
    frame = framing.decode(_legacy_text(msg, "shell"), LEGACY)
    payload, binary = framing.encode(frame, V1)
    assert binary
    channel, parts = deserialize_msg_from_ws_v1(payload)
    assert channel == "shell"
    assert [json.loads(p) for p in parts[:4]] == [msg["header"], msg["parent_header"],
                                                  msg["metadata"], msg["content"]]
    assert frame.msg_id == msg["header"]["msg_id"] and frame.msg_type == "execute_request"


def test_v1_from_jupyter_server_to_legacy_text_and_back():
    msg = _msg("stream", {"name": "stdout", "text": "line 1\n"})
    packed = [json.dumps(msg[k]).encode() for k in
              ("header", "parent_header", "metadata", "content")]
    v1 = serialize_msg_to_ws_v1(packed, "iopub")
    frame = framing.decode(v1, V1)
    text, binary = framing.encode(frame, LEGACY)
    assert not binary and isinstance(text, str)
    legacy = json.loads(text)
    assert legacy["channel"] == "iopub" and legacy["buffers"] == []
    assert legacy["msg_type"] == "stream" and legacy["msg_id"] == msg["header"]["msg_id"]
    assert (legacy["header"], legacy["content"]) == (msg["header"], msg["content"])
    # The same format on both sides: the payload is forwarded as it came.
    assert framing.encode(frame, V1) == (v1, True)


def test_buffers_cross_between_v1_and_legacy_binary():
    msg = _msg("comm_msg", {"comm_id": "c", "data": {}})
    buffers = [b"\x00\x01binary", b"more"]
    legacy = serialize_binary_message({**msg, "channel": "shell", "buffers": buffers})
    frame = framing.decode(legacy, LEGACY)
    assert frame.channel == "shell" and frame.buffers == buffers
    v1, _ = framing.encode(frame, V1)
    channel, parts = deserialize_msg_from_ws_v1(v1)
    assert channel == "shell" and parts[4:] == buffers
    back, binary = framing.encode(framing.decode(v1, V1), LEGACY)
    assert binary
    decoded = deserialize_binary_message(back)
    assert decoded["buffers"] == buffers and decoded["channel"] == "shell"
    assert decoded["content"] == msg["content"]


def test_a_legacy_message_without_a_channel_is_shell():
    msg = _msg()
    assert framing.decode(json.dumps(msg), LEGACY).channel == "shell"


def test_malformed_payloads_are_refused():
    for payload, protocol in ((b"\x01", V1), ("[1, 2]", LEGACY), ("{", LEGACY),
                              (b"\x00\x00\x00\x05", LEGACY)):
        try:
            framing.decode(payload, protocol)
        except framing.MalformedFrame:
            continue
        raise AssertionError(f"{payload!r} accepted")
