"""A kernel's restart and shutdown through jupyter_server with kernelkeeper.lab: a restart keeps
the browser's websocket (the frontend sees `restarting`, then a fresh kernel answers on it);
a shutdown ends it, rather than leaving it open to a kernel that is gone."""

from __future__ import annotations

import time

import websocket

from tests.gateway.client import KernelWS, http
from tests.lab.test_failover import WITH_LAB, start_session


def test_a_restart_keeps_the_browsers_websocket(fleet, jupyter_servers):
    f = fleet(2)
    js = jupyter_servers(f.url, extra=WITH_LAB)
    kid = start_session(js)
    ws = KernelWS(js.ws_url, kid, token=js.token)
    try:
        assert ws.execute("x = 1")[0]["content"]["status"] == "ok"
        status, _ = http("POST", f"{js.url}/api/kernels/{kid}/restart", {}, token=js.token)
        assert status == 200
        reply, out, _ = ws.execute("print('x' in dir())", timeout=120)
        assert reply["content"]["status"] == "ok" and out.strip() == "False", "a new kernel"
    finally:
        ws.close()


def test_a_shutdown_closes_the_browsers_websocket(fleet, jupyter_servers):
    f = fleet(2)
    js = jupyter_servers(f.url, extra=WITH_LAB)
    kid = start_session(js)
    ws = KernelWS(js.ws_url, kid, token=js.token)
    try:
        assert ws.execute("pass")[0]["content"]["status"] == "ok"
        status, _ = http("DELETE", f"{js.url}/api/kernels/{kid}", token=js.token)
        assert status == 204
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the browser's websocket stayed open"
            try:
                ws.recv(timeout=1)
            except websocket.WebSocketTimeoutException:
                continue
            except (ConnectionError, OSError, websocket.WebSocketException):
                break
    finally:
        ws.close()
