"""The websocket wire formats (gateway/wire.py): round trips of both protocols, agreement with
jupyter_server's own codecs (an independent implementation of the same formats), and
malformed client frames rejected with MalformedFrame."""

from __future__ import annotations

import json
import struct

import pytest
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from kernelkeeper.gateway.wire import (
    V1_PROTOCOL,
    KernelMessage,
    MalformedFrame,
    decode_client,
    encode_for,
    legacy_binary,
    legacy_json,
    legacy_parse,
    v1_frame,
    v1_parse,
)

SESSION = Session(key=b"wire-test-key", username="wire-test")


def _kernel_msg(channel: str = "iopub", msg_type: str = "stream",
                content: dict[str, object] | None = None,
                buffers: list[bytes] | None = None) -> KernelMessage:
    msg = SESSION.msg(msg_type, content if content is not None else {"name": "stdout",
                                                                     "text": "hi\n"},
                      parent={"msg_id": "parent-1", "msg_type": "execute_request"})
    pack = SESSION.pack
    parts = [pack(msg["header"]), pack(msg["parent_header"]), pack(msg["metadata"]),
             pack(msg["content"])]
    return KernelMessage(channel, parts, buffers or [])


# ---------------------------------------------------------------------- v1


@pytest.mark.parametrize("buffers", [[], [b"\x00\x01binary", b"", bytes(range(256))]])
def test_v1_round_trip(buffers):
    msg = _kernel_msg(buffers=buffers)
    channel, parts, got_buffers = v1_parse(v1_frame(msg))
    assert channel == "iopub"
    assert parts == msg.parts
    assert got_buffers == buffers


def test_v1_agrees_with_jupyter_server():
    msg = _kernel_msg(channel="shell", msg_type="execute_reply", content={"status": "ok"},
                      buffers=[b"abc"])
    channel, parts = deserialize_msg_from_ws_v1(v1_frame(msg))
    assert channel == "shell" and parts == [*msg.parts, b"abc"]
    # What jupyter_server's client side sends (no buffers), as the gateway decodes it.
    sent = SESSION.msg("kernel_info_request", {})
    frame = serialize_msg_to_ws_v1(sent, "control", SESSION.pack)
    decoded = decode_client(frame, V1_PROTOCOL, SESSION.pack)
    assert decoded.channel == "control" and decoded.buffers == []
    assert json.loads(decoded.parts[0])["msg_id"] == sent["header"]["msg_id"]
    # v1 relays the header unparsed, so it never counts as housekeeping.
    assert decoded.msg_type == "" and not decoded.is_housekeeping()


def test_v1_empty_parts_read_as_empty_objects():
    frame = serialize_msg_to_ws_v1([b'{"msg_id":"m"}', b"", b"", b"{}"], "shell")
    _, parts, _ = v1_parse(frame)
    assert parts == [b'{"msg_id":"m"}', b"{}", b"{}", b"{}"]


# ---------------------------------------------------------------------- legacy


def test_legacy_json_carries_every_field():
    msg = _kernel_msg()
    obj = json.loads(legacy_json(msg))
    assert obj["channel"] == "iopub" and obj["buffers"] == []
    assert obj["msg_id"] == msg.header["msg_id"] and obj["msg_type"] == "stream"
    assert obj["header"] == json.loads(msg.parts[0])
    assert obj["parent_header"]["msg_id"] == "parent-1"
    assert obj["content"] == {"name": "stdout", "text": "hi\n"}
    parsed, buffers = legacy_parse(legacy_json(msg).decode())
    assert parsed == obj and buffers == []


def test_legacy_binary_round_trip_and_agrees_with_jupyter_server():
    buffers = [b"\x00\x01binary", bytes(range(256))]
    msg = _kernel_msg(msg_type="comm_msg", content={"comm_id": "c1", "data": {}},
                      buffers=buffers)
    frame = legacy_binary(msg)
    parsed, got = legacy_parse(frame)
    assert got == buffers and "buffers" not in parsed
    assert parsed["content"] == {"comm_id": "c1", "data": {}} and parsed["channel"] == "iopub"
    theirs = deserialize_binary_message(frame)
    assert theirs["buffers"] == buffers and theirs["msg_id"] == msg.header["msg_id"]
    # And a binary frame as jupyter_server builds it reaches the kernel with its buffers.
    sent = SESSION.msg("comm_msg", {"comm_id": "c1", "data": {}})
    sent["channel"], sent["buffers"] = "shell", [b"abc"]
    decoded = decode_client(serialize_binary_message(sent), "", SESSION.pack)
    assert decoded.channel == "shell" and decoded.buffers == [b"abc"]
    assert json.loads(decoded.parts[3]) == {"comm_id": "c1", "data": {}}


def test_legacy_client_message_defaults_and_housekeeping():
    sent = SESSION.msg("kernel_info_request", {})
    text = json.dumps(sent, default=str)  # no "channel": GatewayKernelClient's shell traffic
    for protocol in ("", V1_PROTOCOL):  # a text frame is legacy JSON under either protocol
        decoded = decode_client(text, protocol, SESSION.pack)
        assert decoded.channel == "shell" and decoded.msg_type == "kernel_info_request"
        assert decoded.is_housekeeping()
        assert json.loads(decoded.parts[1]) == {} and json.loads(decoded.parts[2]) == {}
    execute = SESSION.msg("execute_request", {"code": "1"})
    execute["channel"] = "shell"
    decoded = decode_client(json.dumps(execute, default=str), "", SESSION.pack)
    assert decoded.msg_type == "execute_request" and not decoded.is_housekeeping()


# ---------------------------------------------------------------------- both


def test_encode_for_picks_the_format_and_encodes_once():
    plain, with_buffers = _kernel_msg(), _kernel_msg(buffers=[b"x"])
    payload, binary = encode_for(plain, "")
    assert not binary and json.loads(payload)["msg_type"] == "stream"
    assert encode_for(plain, "")[0] is payload  # cached for the next client
    payload, binary = encode_for(with_buffers, "")
    assert binary and legacy_parse(payload)[1] == [b"x"]
    payload, binary = encode_for(plain, V1_PROTOCOL)
    assert binary and v1_parse(payload)[0] == "iopub"


def _v1_header(count: int, offsets: list[int]) -> bytes:
    return struct.pack(f"<{len(offsets) + 1}Q", count, *offsets)


@pytest.mark.parametrize("frame", [
    b"",
    b"\x01\x02",
    _v1_header(5, [48, 48, 48, 48, 48]),  # too few parts for channel + four JSON parts
    _v1_header(1000, [56] * 6),  # more offsets than the frame holds
    _v1_header(6, [56, 58, 58, 58, 58, 58]) + b"\xff\xfe",  # a channel that is not UTF-8
], ids=["empty", "short", "too-few-parts", "count-beyond-frame", "bad-channel"])
def test_malformed_v1_frames_are_rejected(frame):
    with pytest.raises(MalformedFrame):
        decode_client(frame, V1_PROTOCOL, SESSION.pack)


@pytest.mark.parametrize("frame", [
    "{not json",
    "[1, 2]",
    '"a string"',
    '{"header": "not an object"}',
    '{"header": {}, "channel": ["shell"]}',
    b"",
    b"\x00\x00\x00\x00",  # no JSON part
    struct.pack(">I", 3) + b"\x00" * 4,  # more parts than the frame holds
    struct.pack(">2I", 1, 8) + b"\xff",  # JSON that is not UTF-8
], ids=["bad-json", "array", "string", "header-string", "channel-list", "empty-binary",
        "no-json-part", "count-beyond-frame", "bad-utf8"])
def test_malformed_legacy_frames_are_rejected(frame):
    with pytest.raises(MalformedFrame):
        decode_client(frame, "", SESSION.pack)


def test_malformed_frame_is_a_value_error():
    # Callers that predate MalformedFrame catch ValueError.
    assert issubclass(MalformedFrame, ValueError)
