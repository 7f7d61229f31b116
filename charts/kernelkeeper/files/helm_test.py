"""`helm test` for kernelkeeper: a kernel through the gateway Service, end to end.

Starts a python3 kernel with the gateway token, executes `1+1` over the kernel's websocket (the
legacy JSON protocol), expects `2`, and deletes the kernel. Runs in the kernelkeeper image with
its own packages only (tornado's websocket client). Exit status 0 means the test passed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

URL = os.environ["GATEWAY_URL"].rstrip("/")
TOKEN = os.environ["GATEWAY_TOKEN"]
# Right after an install the Service may have no endpoint yet (in active-passive mode, until
# the Lease holder has labelled its Pod), and a kernel Pod takes a few seconds to start.
SERVICE_TIMEOUT = 120.0
EXECUTE_TIMEOUT = 60.0


def say(message: str) -> None:
    print(f"[helm test] {message}", flush=True)


def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{URL}{path}", data=data, method=method, headers={
        "Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=SERVICE_TIMEOUT) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    return status, json.loads(payload) if payload else None


def call_when_served(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """`call`, retried while nothing answers or the answer is 503 (a standby, a rollout)."""
    deadline = time.monotonic() + SERVICE_TIMEOUT
    while True:
        try:
            status, payload = call(method, path, body)
            if status != 503:
                return status, payload
            reason: object = payload
        except OSError as exc:
            reason = exc
        if time.monotonic() > deadline:
            raise SystemExit(f"{method} {path}: no gateway served it in {SERVICE_TIMEOUT:g}s "
                             f"(last: {reason})")
        time.sleep(1)


def execute_request(session: str, code: str) -> dict[str, Any]:
    return {
        "header": {"msg_id": uuid.uuid4().hex, "session": session, "username": "helm-test",
                   "msg_type": "execute_request", "version": "5.3",
                   "date": datetime.now(UTC).isoformat()},
        "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }


async def execute(kernel_id: str, code: str) -> str:
    """Run `code` on the kernel; return its execute_result's text/plain."""
    session = uuid.uuid4().hex
    ws_url = URL.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels?session_id={session}"
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {TOKEN}"},
                                               request_timeout=EXECUTE_TIMEOUT))
    try:
        request = execute_request(session, code)
        await conn.write_message(json.dumps(request))
        msg_id = request["header"]["msg_id"]
        result: str | None = None
        replied = False
        while result is None or not replied:
            raw = await conn.read_message()
            if raw is None:
                raise SystemExit(f"the websocket closed ({conn.close_code} {conn.close_reason})")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "execute_result":
                result = msg["content"]["data"]["text/plain"]
            elif kind == "error":
                raise SystemExit(f"{code!r} raised {msg['content']['ename']}")
            elif kind == "execute_reply":
                if msg["content"]["status"] != "ok":
                    raise SystemExit(f"execute_reply: {msg['content']}")
                replied = True
        return result
    finally:
        conn.close()


def main() -> int:
    say(f"starting a python3 kernel through {URL}")
    status, model = call_when_served("POST", "/api/kernels", {"name": "python3"})
    if status != 201:
        say(f"POST /api/kernels answered {status}: {model}")
        return 1
    kernel_id = model["id"]
    say(f"kernel {kernel_id} started; executing 1+1")
    try:
        answer = asyncio.run(asyncio.wait_for(execute(kernel_id, "1+1"), EXECUTE_TIMEOUT))
    finally:
        deleted, body = call_when_served("DELETE", f"/api/kernels/{kernel_id}")
        say(f"DELETE /api/kernels/{kernel_id}: {deleted}")
    if answer != "2":
        say(f"1+1 gave {answer!r}, not '2'")
        return 1
    if deleted != 204:
        say(f"the kernel was not deleted: {deleted} {body}")
        return 1
    say("1+1 = 2: the gateway Service, the operator and a kernel Pod work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
