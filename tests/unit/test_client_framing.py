"""The notebook-runner client's v1 frames (pure)."""

from __future__ import annotations

import struct

import pytest

from kernelkeeper.client import framing


def test_a_message_round_trips_with_its_buffers():
    msg = {"header": {"msg_id": "m1", "msg_type": "comm_msg"}, "parent_header": {},
           "metadata": {"a": 1}, "content": {"data": "é"}, "buffers": [b"\x00\x01", b"xyz"]}
    channel, back = framing.decode(framing.encode("shell", msg))
    assert channel == "shell"
    assert back["header"] == msg["header"] and back["content"] == {"data": "é"}
    assert back["buffers"] == [b"\x00\x01", b"xyz"]
    assert (back["msg_id"], back["msg_type"]) == ("m1", "comm_msg")


@pytest.mark.parametrize("frame", [
    b"",
    struct.pack("<Q", 2) + b"\x00" * 16,  # too few parts
    struct.pack("<7Q", 6, 56, 40, 60, 61, 62, 63),  # offsets out of order
    struct.pack("<7Q", 6, 56, 57, 58, 59, 60, 999) + b"s{}{}{}",  # past the end
])
def test_garbage_is_a_bad_frame(frame):
    with pytest.raises(framing.BadFrame):
        framing.decode(frame)
