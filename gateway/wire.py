"""The websocket wire formats, as pure functions between frames and kernel messages.

Two protocols reach /api/kernels/{id}/channels:

- legacy JSON: a text frame holding the whole message as one JSON object (with a "channel"
  key), or, when there are binary buffers, a binary frame: u32be count, u32be offsets, the
  JSON object without "buffers", then the buffers;
- v1.kernel.websocket.jupyter.org (chosen when the client offers it): u64le count, u64le
  offsets, then channel | header | parent_header | metadata | content | buffers... as raw
  bytes, so the gateway relays the kernel's JSON parts without parsing them.

Messages from the kernel are KernelMessages: the four JSON parts exactly as the kernel
signed them, so re-framing never re-encodes JSON. Nothing here does I/O or knows about
Tornado or ZMQ.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
# Client messages whose traffic says nothing about the user's work: they keep no kernel alive.
HOUSEKEEPING = ("kernel_info_request", "comm_info_request")


class MalformedFrame(ValueError):
    """A client frame that is not a message in the protocol it claims to be."""


class KernelMessage:
    """A signed-and-verified kernel message as raw JSON parts plus binary buffers."""

    __slots__ = ("channel", "parts", "buffers", "_header", "_parent", "_content", "cache",
                 "local")

    def __init__(self, channel: str, parts: list[bytes], buffers: list[bytes], *,
                 local: bool = False) -> None:
        self.channel = channel
        self.local = local  # made by this gateway (not by the kernel, so not in its journal)
        self.parts = parts  # header, parent_header, metadata, content (JSON bytes)
        self.buffers = buffers
        self._header: dict[str, Any] | None = None
        self._parent: dict[str, Any] | None = None
        self._content: dict[str, Any] | None = None
        self.cache: dict[str, tuple[bytes, bool]] = {}  # encodings by wire format

    @property
    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = json.loads(self.parts[0])
        return self._header

    @property
    def parent(self) -> dict[str, Any]:
        if self._parent is None:
            self._parent = json.loads(self.parts[1]) or {}
        return self._parent

    @property
    def content(self) -> dict[str, Any]:
        if self._content is None:
            self._content = json.loads(self.parts[3])
        return self._content

    @property
    def msg_id(self) -> str:
        return str(self.header.get("msg_id", ""))

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))

    def size(self) -> int:
        return sum(len(p) for p in self.parts) + sum(len(b) for b in self.buffers)


@dataclass(frozen=True)
class ClientMessage:
    """A client's frame, ready to be signed and sent on `channel`."""

    channel: str
    parts: list[bytes]  # header, parent_header, metadata, content (JSON bytes)
    buffers: list[bytes]
    # "" when the protocol relays the header unparsed (v1): unknown, so never housekeeping.
    msg_type: str

    def is_housekeeping(self) -> bool:
        return self.msg_type in HOUSEKEEPING


# ---------------------------------------------------------------------- v1


def v1_frame(msg: KernelMessage) -> bytes:
    """u64le count, u64le offsets, then channel|header|parent|metadata|content|buffers."""
    parts = [msg.channel.encode(), *msg.parts, *msg.buffers]
    count = len(parts) + 1
    offsets, pos = [], 8 * (count + 1)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    offsets.append(pos)
    return b"".join([struct.pack(f"<{count + 1}Q", count, *offsets), *parts])


def v1_parse(data: bytes) -> tuple[str, list[bytes], list[bytes]]:
    """(channel, [header, parent, metadata, content], buffers); an empty part reads as {}."""
    try:
        (count,) = struct.unpack_from("<Q", data, 0)
        if count < 6 or 8 * (count + 1) > len(data):
            raise MalformedFrame("bad v1 frame")
        offsets = struct.unpack_from(f"<{count}Q", data, 8)
        parts = [data[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
        return parts[0].decode(), [p or b"{}" for p in parts[1:5]], parts[5:]
    except (struct.error, UnicodeDecodeError) as exc:
        raise MalformedFrame(f"bad v1 frame: {exc}") from None


# ---------------------------------------------------------------------- legacy


def legacy_json(msg: KernelMessage) -> bytes:
    """The legacy JSON object, assembled from the raw parts without re-encoding them."""
    header = msg.header
    return b'{"header":%s,"msg_id":%s,"msg_type":%s,"parent_header":%s,"metadata":%s,' \
           b'"content":%s,"buffers":[],"channel":"%s"}' % (
               msg.parts[0], json.dumps(header.get("msg_id")).encode(),
               json.dumps(header.get("msg_type")).encode(), msg.parts[1], msg.parts[2],
               msg.parts[3], msg.channel.encode())


def legacy_binary(msg: KernelMessage) -> bytes:
    """u32be nbufs, u32be offsets, JSON (without buffers), then the buffers."""
    parts = [legacy_json(msg).replace(b'"buffers":[],', b"", 1), *msg.buffers]
    offsets, pos = [], 4 * (len(parts) + 1)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    return b"".join([struct.pack(f">{len(parts) + 1}I", len(parts), *offsets), *parts])


def legacy_parse(data: str | bytes) -> tuple[dict[str, Any], list[bytes]]:
    """(the message object, its buffers) from a text or binary legacy frame."""
    try:
        if isinstance(data, str):
            msg, buffers = json.loads(data), []
        else:
            (nbufs,) = struct.unpack_from(">I", data, 0)
            if nbufs < 1 or 4 * (nbufs + 1) > len(data):
                raise MalformedFrame("bad binary frame")
            offsets = [*struct.unpack_from(f">{nbufs}I", data, 4), len(data)]
            parts = [data[offsets[i]:offsets[i + 1]] for i in range(nbufs)]
            msg, buffers = json.loads(parts[0]), parts[1:]
    # json and utf-8 errors are ValueErrors; JSON nested deeper than the interpreter's
    # recursion limit is a RecursionError.
    except (struct.error, ValueError, RecursionError) as exc:
        raise MalformedFrame(f"bad legacy frame: {exc}") from None
    if not isinstance(msg, dict):
        raise MalformedFrame(f"a legacy message is a JSON object, not {type(msg).__name__}")
    return msg, buffers


# ---------------------------------------------------------------------- both directions


def decode_client(data: str | bytes, protocol: str,
                  pack: Callable[[Any], bytes]) -> ClientMessage:
    """A client frame as the parts to sign. `pack` serializes a legacy message's dicts the
    way the kernel's Session does (dates included). Raises MalformedFrame."""
    if isinstance(data, bytes) and protocol == V1_PROTOCOL:
        channel, parts, buffers = v1_parse(data)
        return ClientMessage(channel, parts, buffers, "")
    msg, buffers = legacy_parse(data)
    # jupyter_server's GatewayKernelClient sends shell messages without a channel.
    channel = msg.pop("channel", None) or "shell"
    header = msg.get("header") or {}
    if not isinstance(channel, str) or not isinstance(header, dict):
        raise MalformedFrame("a legacy message needs a string channel and an object header")
    try:
        parts = [pack(header), pack(msg.get("parent_header") or {}),
                 pack(msg.get("metadata") or {}), pack(msg.get("content") or {})]
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedFrame(f"cannot serialize the message: {exc}") from None
    return ClientMessage(channel, parts, buffers, str(header.get("msg_type", "")))


def encode_for(msg: KernelMessage, protocol: str) -> tuple[bytes, bool]:
    """(payload, binary) for a client speaking `protocol`; cached on the message so a fan-out
    to many clients encodes once."""
    key = protocol or ("legacy-bin" if msg.buffers else "legacy")
    hit = msg.cache.get(key)
    if hit is None:
        if protocol == V1_PROTOCOL:
            hit = (v1_frame(msg), True)
        elif msg.buffers:
            hit = (legacy_binary(msg), True)
        else:
            hit = (legacy_json(msg), False)
        msg.cache[key] = hit
    return hit
