"""The v1.kernel.websocket.jupyter.org frame, as pure functions between bytes and messages.

A frame is: u64le count of offsets, the offsets (u64le), then channel | header | parent_header |
metadata | content | buffers..., each part raw bytes; the JSON parts are UTF-8 JSON.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from jupyter_client.session import json_default

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
_JSON_PARTS = ("header", "parent_header", "metadata", "content")


class BadFrame(ValueError):
    """A frame that is not a v1 kernel message."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=json_default, separators=(",", ":")).encode()


def encode(channel: str, msg: dict[str, Any]) -> bytes:
    """A jupyter_client message dict (header, parent_header, metadata, content, buffers)."""
    parts = [channel.encode(), *(_dumps(msg.get(k) or {}) for k in _JSON_PARTS),
             *(bytes(b) for b in msg.get("buffers") or [])]
    offsets, pos = [], 8 * (len(parts) + 2)
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    offsets.append(pos)
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def decode(frame: bytes) -> tuple[str, dict[str, Any]]:
    """(channel, message dict with msg_id/msg_type copied up, as jupyter_client has them)."""
    try:
        (count,) = struct.unpack_from("<Q", frame, 0)
        if not 6 <= count <= 1 + 4 + 1024 or 8 * (count + 1) > len(frame):
            raise BadFrame(f"{count} offsets")
        offsets = struct.unpack_from(f"<{count}Q", frame, 8)
        if list(offsets) != sorted(offsets) or offsets[-1] > len(frame):
            raise BadFrame("offsets out of order or past the end")
        parts = [frame[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
        channel = parts[0].decode()
        msg: dict[str, Any] = {k: json.loads(p) for k, p in zip(_JSON_PARTS, parts[1:5],
                                                                  strict=True)}
    except (struct.error, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise BadFrame(str(exc)) from None
    msg["buffers"] = parts[5:]
    header = msg["header"] if isinstance(msg["header"], dict) else {}
    msg["msg_id"] = header.get("msg_id", "")
    msg["msg_type"] = header.get("msg_type", "")
    return channel, msg
