"""Compatibility through a real client: jupyter_server 2.x with --gateway-url, driven over its
REST and websocket API the way JupyterLab drives it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.jupyter import start_jupyter_server, stop_jupyter_server
from tests.gateway.client import KernelWS, http


@pytest.fixture(params=["gateway-process", "gateway-pods"])
def jupyter_server(request, gateways, kk_namespace, tmp_path) -> Iterator[tuple[str, str, object]]:
    """jupyter_server in front of one gateway host process, or of the chart's two gateway Pods
    (active-active) through their Service, where each request may reach either replica."""
    if request.param == "gateway-pods":
        gw = request.getfixturevalue("gateway_pods")("active-active")
        gw_token = gw.token
    else:
        gw_token = uuid.uuid4().hex
        gw = gateways.start(kk_namespace, token=gw_token)
    server = start_jupyter_server(gw.url, gw_token, tmp_path / "js")
    try:
        yield server.url, server.token, gw
    finally:
        stop_jupyter_server(server)


def _wait_busy(ws: KernelWS, msg_id: str) -> None:
    while True:
        _, msg, _ = ws.recv(30)
        if msg["msg_type"] == "status" and msg["parent_header"].get("msg_id") == msg_id and \
                msg["content"]["execution_state"] == "busy":
            return


def test_jupyterlab_flow_through_jupyter_server(jupyter_server):
    url, token, gw = jupyter_server
    ws_url = url.replace("http", "ws")

    # 1. kernel specs, as the launcher lists them
    status, specs = http("GET", f"{url}/api/kernelspecs", token=token)
    assert status == 200, specs
    assert "python3" in specs["kernelspecs"]

    # 2. a notebook session starts a kernel on the gateway
    status, session = http("POST", f"{url}/api/sessions",
                           {"path": "nb.ipynb", "name": "nb.ipynb", "type": "notebook",
                            "kernel": {"name": "python3"}}, token=token)
    assert status == 201, session
    kid = session["kernel"]["id"]
    status, gw_model = http("GET", f"{gw.url}/api/kernels/{kid}", token=gw.token)
    assert status == 200 and gw_model["id"] == kid
    status, listed = http("GET", f"{url}/api/kernels", token=token)
    assert status == 200 and [k["id"] for k in listed] == [kid]

    # 3. JupyterLab's websocket. JupyterLab offers v1 and jupyter_server (gateway mode) selects
    # none; websocket-client refuses that answer where a browser falls back to legacy, so this
    # client asks for legacy directly: the frames on the wire are the same.
    client_id = uuid.uuid4().hex
    ws = KernelWS(ws_url, kid, session_id=client_id, token=token)
    info = ws.request("kernel_info_request", {})
    assert info["content"]["status"] == "ok"
    reply, out, _ = ws.execute("x = 6 * 7\nprint('hello', x)")
    assert reply["content"]["status"] == "ok" and out == "hello 42\n"

    # 4. interrupt a running time.sleep(600)
    msg_id = ws.send("shell", "execute_request",
                     {"code": "import time; time.sleep(600)", "silent": False,
                      "store_history": True, "user_expressions": {}, "allow_stdin": False})
    _wait_busy(ws, msg_id)
    status, _ = http("POST", f"{url}/api/kernels/{kid}/interrupt", {}, token=token)
    assert status == 204
    reply, _, _ = ws.collect(msg_id, timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    reply, out, _ = ws.execute("print(x)")
    assert out == "42\n"  # interrupted, not restarted

    # 5. restart: state cleared; JupyterLab reconnects its websocket afterwards
    status, restarted = http("POST", f"{url}/api/kernels/{kid}/restart", {}, token=token)
    assert status == 200, restarted
    ws.close()
    ws = KernelWS(ws_url, kid, session_id=client_id, token=token)
    assert ws.request("kernel_info_request", {})["content"]["status"] == "ok"
    reply, _, _ = ws.execute("x")
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "NameError"
    reply, out, _ = ws.execute("print('alive after restart')")
    assert out == "alive after restart\n"
    ws.close()

    # 6. shut down: the session goes, and so does the kernel on the gateway
    status, _ = http("DELETE", f"{url}/api/sessions/{session['id']}", token=token)
    assert status == 204
    deadline = time.monotonic() + 30
    while http("GET", f"{gw.url}/api/kernels/{kid}", token=gw.token)[0] != 404:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    status, listed = http("GET", f"{url}/api/kernels", token=token)
    assert status == 200 and listed == []
