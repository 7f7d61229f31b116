"""The two kernel websocket wire formats, as pure functions between payloads and Frames.

- legacy JSON: a text frame holding the whole message as one JSON object (with "channel"), or,
  when the message has binary buffers, a binary frame: u32be count, u32be offsets, the JSON
  object without "buffers", then the buffers;
- v1.kernel.websocket.jupyter.org: u64le count, u64le offsets, then channel | header |
  parent_header | metadata | content | buffers... as raw bytes.

A Frame keeps the four JSON parts as bytes, so a v1 message relayed between two v1 sockets is
never re-encoded, and it remembers the payload it was decoded from, so a message relayed
between two sockets speaking the same format is forwarded as it came. Nothing here does I/O.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

V1 = "v1.kernel.websocket.jupyter.org"
LEGACY = ""


class MalformedFrame(ValueError):
    """A payload that is not a kernel message in the format it claims to be."""


@dataclass
class Frame:
    """One kernel message on one channel: JSON parts as bytes, plus binary buffers."""

    channel: str
    parts: list[bytes]  # header, parent_header, metadata, content (JSON bytes)
    buffers: list[bytes] = field(default_factory=list)
    # The payload this frame was decoded from and its format, forwarded as is when the other
    # side speaks the same format.
    source: tuple[str, str | bytes] | None = field(default=None, repr=False)
    _header: dict[str, Any] | None = field(default=None, repr=False)
    _parent: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = _object(self.parts[0])
        return self._header

    @property
    def parent(self) -> dict[str, Any]:
        if self._parent is None:
            self._parent = _object(self.parts[1])
        return self._parent

    @property
    def msg_id(self) -> str:
        return str(self.header.get("msg_id", ""))

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))

    @property
    def parent_id(self) -> str:
        return str(self.parent.get("msg_id", ""))

    def content(self) -> dict[str, Any]:
        return _object(self.parts[3])

    def size(self) -> int:
        return sum(map(len, self.parts)) + sum(map(len, self.buffers))


def _object(part: bytes) -> dict[str, Any]:
    try:
        value = json.loads(part) if part else {}
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise MalformedFrame(f"a message part is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedFrame(f"a message part is a JSON object, not {type(value).__name__}")
    return value


def _dumps(value: Any) -> bytes:
    # default=str: a legacy message decoded by someone else may carry datetimes; on the wire
    # they are ISO strings either way.
    return json.dumps(value, default=str, ensure_ascii=False).encode()


def make(channel: str, header: dict[str, Any], parent: dict[str, Any],
         content: dict[str, Any], metadata: dict[str, Any] | None = None) -> Frame:
    """A frame built here (a request or a reply this extension makes itself)."""
    return Frame(channel, [_dumps(header), _dumps(parent), _dumps(metadata or {}),
                           _dumps(content)], _header=header, _parent=parent)


# ---------------------------------------------------------------------- decode


def decode(payload: str | bytes, protocol: str) -> Frame:
    """The frame in a websocket payload of `protocol` (V1 or LEGACY). Raises MalformedFrame."""
    if protocol == V1 and isinstance(payload, bytes):
        frame = _decode_v1(payload)
    else:
        frame = _decode_legacy(payload)
    frame.source = (protocol, payload)
    return frame


def _decode_v1(data: bytes) -> Frame:
    try:
        (count,) = struct.unpack_from("<Q", data, 0)
        if count < 6 or 8 * (count + 1) > len(data):
            raise MalformedFrame("a v1 frame has at least 6 offsets")
        offsets = struct.unpack_from(f"<{count}Q", data, 8)
        parts = [data[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
        channel = parts[0].decode()
        for part in parts[1:5]:
            # JSON is UTF-8; checked now because a legacy peer gets these parts as text.
            part.decode()
    except (struct.error, UnicodeDecodeError) as exc:
        raise MalformedFrame(f"bad v1 frame: {exc}") from None
    return Frame(channel, [p or b"{}" for p in parts[1:5]], parts[5:])


def _decode_legacy(data: str | bytes) -> Frame:
    try:
        if isinstance(data, str):
            msg, buffers = json.loads(data), []
        else:
            (count,) = struct.unpack_from(">I", data, 0)
            if count < 1 or 4 * (count + 1) > len(data):
                raise MalformedFrame("bad legacy binary frame")
            offsets = [*struct.unpack_from(f">{count}I", data, 4), len(data)]
            parts = [data[offsets[i]:offsets[i + 1]] for i in range(count)]
            msg, buffers = json.loads(parts[0]), parts[1:]
    # json and utf-8 errors are ValueErrors; nesting past the recursion limit is not.
    except (struct.error, ValueError, RecursionError) as exc:
        raise MalformedFrame(f"bad legacy frame: {exc}") from None
    if not isinstance(msg, dict):
        raise MalformedFrame(f"a legacy message is a JSON object, not {type(msg).__name__}")
    header, parent = msg.get("header") or {}, msg.get("parent_header") or {}
    if not isinstance(header, dict) or not isinstance(parent, dict):
        raise MalformedFrame("a legacy message needs an object header and parent_header")
    # A message without a channel is a shell request (jupyter_server's own kernel client
    # sends them so).
    channel = msg.get("channel") or "shell"
    if not isinstance(channel, str):
        raise MalformedFrame("a legacy message's channel is a string")
    try:
        parts = [_dumps(header), _dumps(parent), _dumps(msg.get("metadata") or {}),
                 _dumps(msg.get("content") or {})]
    except (ValueError, RecursionError) as exc:  # parsed just below the limit, deeper now
        raise MalformedFrame(f"cannot serialize the message: {exc}") from None
    return Frame(channel, parts, buffers, _header=header, _parent=parent)


# ---------------------------------------------------------------------- encode


def encode(frame: Frame, protocol: str) -> tuple[str | bytes, bool]:
    """(payload, binary) of `frame` in `protocol`."""
    if frame.source is not None and frame.source[0] == protocol:
        payload = frame.source[1]
        return payload, isinstance(payload, bytes)
    if protocol == V1:
        return _encode_v1(frame), True
    if frame.buffers:
        return _encode_legacy_binary(frame), True
    return _legacy_json(frame, with_buffers=True).decode(), False


def _encode_v1(frame: Frame) -> bytes:
    parts = [frame.channel.encode(), *frame.parts, *frame.buffers]
    count = len(parts) + 1
    offsets, pos = [], 8 * (count + 1)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    offsets.append(pos)
    return b"".join([struct.pack(f"<{count + 1}Q", count, *offsets), *parts])


def _legacy_json(frame: Frame, *, with_buffers: bool) -> bytes:
    """The legacy JSON object, assembled from the raw parts without re-encoding them; the
    top-level msg_id and msg_type are what jupyter_server's own serializer adds."""
    header = frame.header
    return b'{"header":%s,"msg_id":%s,"msg_type":%s,"parent_header":%s,"metadata":%s,' \
           b'"content":%s,%s"channel":%s}' % (
               frame.parts[0], _dumps(header.get("msg_id")), _dumps(header.get("msg_type")),
               frame.parts[1], frame.parts[2], frame.parts[3],
               b'"buffers":[],' if with_buffers else b"", _dumps(frame.channel))


def _encode_legacy_binary(frame: Frame) -> bytes:
    parts = [_legacy_json(frame, with_buffers=False), *frame.buffers]
    offsets, pos = [], 4 * (len(parts) + 1)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    return b"".join([struct.pack(f">{len(parts) + 1}I", len(parts), *offsets), *parts])
