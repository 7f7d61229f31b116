"""Clients of the gateway's API for tests, written from the protocol description (not from the
gateway's code): REST calls, a websocket kernel client speaking legacy JSON (text, or binary with
buffers) and v1.kernel.websocket.jupyter.org, and `Ticker`, a client executing without pause."""

from __future__ import annotations

import collections
import json
import struct
import threading
import time
import urllib.error
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


def start_kernel(url: str, token: str = "", timeout: float = 120) -> str:
    """POST /api/kernels for a python3 kernel; returns its id."""
    status, model = http("POST", f"{url}/api/kernels", {"name": "python3"}, token=token,
                         timeout=timeout)
    assert status == 201, model
    return str(model["id"])


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


class Ticker(threading.Thread):
    """Executes `ran.append(i); print(i)` every 100 ms, for i = 0, 1, ..., retrying like a client.

    The kernel must have run `SETUP` first. Execute i counts as answered only if its reply is ok
    and its output is `i`; any other answer lands in `wrong`. A failed execute (the connection
    went away) is sent again on a new connection with the same session id, so `attempts[i]`
    says how often the kernel may have run it. `check_kernel_record` then compares the
    kernel's own record (`REPORT`'s output) with what the client saw.
    """

    SETUP = "ran = []"
    REPORT = "import collections, json; print(json.dumps(collections.Counter(ran)))"

    def __init__(self, fleet: Any, kid: str) -> None:
        super().__init__(daemon=True)
        self.fleet, self.kid = fleet, kid
        self.stop = threading.Event()
        self.answered: list[int] = []
        self.attempts: collections.Counter[int] = collections.Counter()
        self.wrong: list[str] = []
        self.gaps: list[float] = []
        self.reconnects = 0
        self.errors: list[str] = []

    def _connect(self, session_id: str | None) -> KernelWS:
        while True:
            try:
                return KernelWS(self.fleet.ws_url, self.kid, session_id=session_id, timeout=10,
                                token=getattr(self.fleet, "token", ""))
            except Exception as exc:  # noqa: BLE001 - any failure: retry like a client
                self.errors.append(f"connect: {exc!r}")
                time.sleep(0.2)

    def run(self) -> None:
        ws = self._connect(None)
        last_ok = time.monotonic()
        i = 0
        while not self.stop.is_set():
            self.attempts[i] += 1
            try:
                reply, out, _ = ws.execute(f"ran.append({i})\nprint({i})", timeout=10)
            except Exception as exc:  # noqa: BLE001 - the same request is retried
                self.errors.append(f"execute {i}: {exc!r}")
                ws.close()
                self.reconnects += 1
                ws = self._connect(ws.session_id)
                continue
            if reply["content"]["status"] != "ok" or out != f"{i}\n":
                self.wrong.append(f"execute {i}: {reply['content']['status']} {out!r}")
            else:
                self.answered.append(i)
            now = time.monotonic()
            self.gaps.append(now - last_ok)
            last_ok = now
            i += 1
            time.sleep(0.1)
        ws.close()

    def check_kernel_record(self, report: str) -> None:
        """Every answered execute ran in the kernel, each exactly once unless it had to be sent
        again, and nothing ran that was not sent."""
        ran = {int(i): n for i, n in json.loads(report).items()}
        assert not self.wrong, self.wrong
        missing = [i for i in self.answered if ran.get(i, 0) < 1]
        assert not missing, f"answered but never run in the kernel: {missing}"
        extra = {i: n for i, n in ran.items() if n > self.attempts[i]}
        assert not extra, f"run more often than sent (runs by execute): {extra}"
