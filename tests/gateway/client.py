"""A small websocket kernel client for tests, written from the protocol description (not from
the gateway's code): legacy JSON (text, or binary with buffers) and v1.kernel.websocket.jupyter.org."""

from __future__ import annotations

import json
import struct
import time
import urllib.request
import uuid
from typing import Any

import websocket
from jupyter_client.session import Session, json_default

V1 = "v1.kernel.websocket.jupyter.org"


def http(method: str, url: str, body: Any = None, *, token: str = "", raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, method=method, data=data)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"token {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload


def reachable(url: str, timeout: float = 3) -> bool:
    """Something answers HTTP at `url` (any status): a Service has a live endpoint."""
    try:
        urllib.request.urlopen(f"{url}/healthz", timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=json_default).encode()


class KernelWS:
    def __init__(self, ws_base: str, kernel_id: str, *, protocol: str | None = None,
                 session_id: str | None = None, token: str = "", timeout: float = 60) -> None:
        self.session_id = session_id or uuid.uuid4().hex
        self.session = Session(session=self.session_id, username="test")
        url = f"{ws_base}/api/kernels/{kernel_id}/channels?session_id={self.session_id}"
        headers = [f"Authorization: token {token}"] if token else []
        self.ws = websocket.create_connection(
            url, timeout=timeout, header=headers, subprotocols=[protocol] if protocol else None,
            enable_multithread=True, skip_utf8_validation=True)
        self.protocol = self.ws.getsubprotocol() or ""
        self.pending: list[tuple[str, dict[str, Any], list[bytes]]] = []

    # ------------------------------------------------------------------ framing

    def send(self, channel: str, msg_type: str, content: dict[str, Any],
             buffers: list[bytes] | None = None) -> str:
        msg = self.session.msg(msg_type, content)
        buffers = buffers or []
        if self.protocol == V1:
            parts = [channel.encode(), _dumps(msg["header"]), _dumps(msg["parent_header"]),
                     _dumps(msg["metadata"]), _dumps(msg["content"]), *buffers]
            offsets, pos = [], 8 * (len(parts) + 2)
            for p in parts:
                offsets.append(pos)
                pos += len(p)
            offsets.append(pos)
            frame = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)
            self.ws.send_binary(frame)
        elif buffers:
            body = dict(msg, channel=channel)
            parts = [_dumps(body), *buffers]
            offsets, pos = [], 4 * (len(parts) + 1)
            for p in parts:
                offsets.append(pos)
                pos += len(p)
            self.ws.send_binary(struct.pack(f">{len(parts) + 1}I", len(parts), *offsets)
                                + b"".join(parts))
        else:
            self.ws.send(_dumps(dict(msg, channel=channel, buffers=[])).decode())
        return msg["header"]["msg_id"]

    def recv(self, timeout: float = 60) -> tuple[str, dict[str, Any], list[bytes]]:
        if self.pending:
            return self.pending.pop(0)
        self.ws.settimeout(timeout)
        opcode, data = self.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionError(f"closed: {data[:2].hex()} {data[2:]!r}")
        if self.protocol == V1:
            (n,) = struct.unpack_from("<Q", data, 0)
            offs = struct.unpack_from(f"<{n}Q", data, 8)
            parts = [data[offs[i]:offs[i + 1]] for i in range(n - 1)]
            msg = {"header": json.loads(parts[1]), "parent_header": json.loads(parts[2]),
                   "metadata": json.loads(parts[3]), "content": json.loads(parts[4])}
            msg["msg_type"] = msg["header"]["msg_type"]
            return parts[0].decode(), msg, parts[5:]
        if opcode == websocket.ABNF.OPCODE_BINARY:
            (n,) = struct.unpack_from(">I", data, 0)
            offs = [*struct.unpack_from(f">{n}I", data, 4), len(data)]
            parts = [data[offs[i]:offs[i + 1]] for i in range(n)]
            msg = json.loads(parts[0])
            return msg["channel"], msg, parts[1:]
        msg = json.loads(data)
        return msg["channel"], msg, []

    # ------------------------------------------------------------------ helpers

    def request(self, msg_type: str, content: dict[str, Any], channel: str = "shell",
                timeout: float = 60) -> dict[str, Any]:
        msg_id = self.send(channel, msg_type, content)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ch, msg, _ = self.recv(deadline - time.monotonic())
            if ch == channel and msg["parent_header"].get("msg_id") == msg_id:
                return msg
        raise TimeoutError(msg_type)

    def execute(self, code: str, timeout: float = 60) -> tuple[dict[str, Any], str, list[dict]]:
        """Run code; return (execute_reply, stdout text, all iopub messages for it)."""
        msg_id = self.send("shell", "execute_request",
                           {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        return self.collect(msg_id, timeout)

    def collect(self, msg_id: str, timeout: float = 60) -> tuple[dict[str, Any], str, list[dict]]:
        reply, idle, out, iopub = None, False, [], []
        deadline = time.monotonic() + timeout
        while not (reply and idle):
            ch, msg, bufs = self.recv(max(0.1, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError("execute")
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if ch == "shell" and msg["msg_type"] == "execute_reply":
                reply = msg
            elif ch == "iopub":
                iopub.append(dict(msg, buffers=bufs))
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
        return reply, "".join(out), iopub

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
