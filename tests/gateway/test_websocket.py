"""The websocket bridge, driven by a direct websocket client in both protocols."""

from __future__ import annotations

import time

import pytest

from tests.gateway.client import V1, KernelWS, http
from tests.helpers import wait_until

ECHO_TARGET = """
def _echo(comm, open_msg):
    @comm.on_msg
    def _on(msg):
        comm.send(data={"n": len(msg["buffers"])},
                  buffers=[bytes(b)[::-1] for b in msg["buffers"]])
get_ipython().kernel.comm_manager.register_target("echo", _echo)
"""


@pytest.fixture
def kernel(gateways, kk_namespace):
    gw = gateways.start(kk_namespace)
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"})
    assert status == 201, model
    yield gw, model["id"]
    http("DELETE", f"{gw.url}/api/kernels/{model['id']}")


@pytest.mark.parametrize("protocol", [None, V1])
def test_execute_and_binary_buffers(kernel, protocol):
    gw, kid = kernel
    ws = KernelWS(gw.ws_url, kid, protocol=protocol)
    assert ws.protocol == (protocol or "")
    info = ws.request("kernel_info_request", {})
    assert info["content"]["status"] == "ok"
    reply, out, iopub = ws.execute("for i in range(3): print(i)")
    assert reply["content"]["status"] == "ok"
    assert out == "0\n1\n2\n"
    assert [m["msg_type"] for m in iopub][0] == "status"

    # Buffers from the kernel (comm_open with a buffer) and to the kernel (comm_msg).
    reply, _, iopub = ws.execute("from ipykernel.comm import Comm\n"
                                 "c = Comm(target_name='client', data={'x': 1}, "
                                 "buffers=[b'\\x00\\x01binary'])")
    opens = [m for m in iopub if m["msg_type"] == "comm_open"]
    assert opens and opens[0]["buffers"] == [b"\x00\x01binary"]
    ws.execute(ECHO_TARGET)
    ws.send("shell", "comm_open", {"comm_id": "c1", "target_name": "echo", "data": {}})
    ws.send("shell", "comm_msg", {"comm_id": "c1", "data": {}},
            buffers=[b"abc", bytes(range(256))])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ch, msg, bufs = ws.recv(30)
        if ch == "iopub" and msg["msg_type"] == "comm_msg":
            assert msg["content"]["data"] == {"n": 2}
            assert bufs == [b"cba", bytes(range(256))[::-1]]
            break
    else:
        pytest.fail("no echo")
    ws.close()


def test_channel_less_message_goes_to_shell(kernel):
    gw, kid = kernel
    ws = KernelWS(gw.ws_url, kid)
    msg = ws.session.msg("kernel_info_request", {})
    msg["header"]["date"] = time.time()  # GatewayKernelClient sends float dates
    import json
    ws.ws.send(json.dumps(msg, default=str))
    while True:
        ch, reply, _ = ws.recv(30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"] and ch != "iopub":
            assert ch == "shell" and reply["msg_type"] == "kernel_info_reply"
            break
    ws.close()


def test_stdin_reaches_the_right_session(kernel):
    gw, kid = kernel
    a, b = KernelWS(gw.ws_url, kid), KernelWS(gw.ws_url, kid)
    msg_id = a.send("shell", "execute_request",
                    {"code": "print('got', input('q?'))", "silent": False,
                     "store_history": False, "user_expressions": {}, "allow_stdin": True})
    while True:
        ch, msg, _ = a.recv(30)
        if ch == "stdin":
            assert msg["msg_type"] == "input_request"
            break
    a.send("stdin", "input_reply", {"value": "hello"})
    _, out, _ = a.collect(msg_id)
    assert out == "q?got hello\n" or out.endswith("got hello\n")
    # b saw the output on iopub but never the input_request.
    seen = []
    b.ws.settimeout(2)
    try:
        while True:
            seen.append(b.recv(2)[0])
    except Exception:  # noqa: BLE001 - timeout ends the drain
        pass
    assert "stdin" not in seen and "iopub" in seen
    a.close()
    b.close()


@pytest.mark.parametrize("protocol", [None, V1])
def test_reconnect_replays_missed_output_in_order(kernel, protocol):
    gw, kid = kernel
    ws = KernelWS(gw.ws_url, kid, protocol=protocol, session_id="sess-replay")
    ws.execute("import time")
    msg_id = ws.send("shell", "execute_request",
                     {"code": "for i in range(20):\n    print(i, flush=True)\n    time.sleep(0.1)",
                      "silent": False, "store_history": False, "user_expressions": {},
                      "allow_stdin": False})
    # Read until output starts, then drop the socket mid-stream.
    while True:
        ch, msg, _ = ws.recv(30)
        if msg["msg_type"] == "stream":
            first = msg["content"]["text"]
            break
    ws.close()
    time.sleep(3)  # the kernel finishes while nobody is connected
    again = KernelWS(gw.ws_url, kid, protocol=protocol, session_id="sess-replay")
    reply, out, _ = again.collect(msg_id, timeout=30)
    assert reply["content"]["status"] == "ok"
    numbers = [int(x) for x in (first + out).split()]
    assert numbers[-1] == 19 and numbers == list(range(numbers[0], 20)), numbers
    assert numbers[0] <= 1
    again.close()


def test_same_session_replaces_stale_connection(kernel):
    gw, kid = kernel
    old = KernelWS(gw.ws_url, kid, session_id="dup")
    new = KernelWS(gw.ws_url, kid, session_id="dup")
    with pytest.raises(Exception):  # noqa: B017 - closed by the gateway
        for _ in range(50):
            old.recv(10)
    reply, out, _ = new.execute("print('still here')")
    assert out == "still here\n"
    new.close()


def test_kernel_deleted_ends_open_socket_with_dead_status(kernel):
    gw, kid = kernel
    ws = KernelWS(gw.ws_url, kid)
    ws.execute("pass")
    assert http("DELETE", f"{gw.url}/api/kernels/{kid}")[0] == 204
    states = []
    with pytest.raises(ConnectionError):
        for _ in range(100):
            ch, msg, _ = ws.recv(30)
            if msg["msg_type"] == "status":
                states.append(msg["content"]["execution_state"])
    assert "dead" in states


def test_crash_restart_is_relayed_as_restarting(kernel):
    gw, kid = kernel
    ws = KernelWS(gw.ws_url, kid)
    ws.execute("crashed_state = 1")
    ws.send("shell", "execute_request", {"code": "import os; os._exit(1)", "silent": False,
                                         "store_history": False, "user_expressions": {},
                                         "allow_stdin": False})
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, "no status: restarting"
        ch, msg, _ = ws.recv(90)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "restarting":
            break
    # The same socket keeps working with the restarted kernel (in place: same pod).
    deadline = time.monotonic() + 90
    while True:
        try:
            reply, _, _ = ws.execute("crashed_state", timeout=10)
            break
        except TimeoutError:
            assert time.monotonic() < deadline
    assert reply["content"]["ename"] == "NameError"
    ws.close()


def test_client_shutdown_request_ends_with_dead_and_404(kernel):
    gw, kid = kernel
    ws = KernelWS(gw.ws_url, kid)
    ws.execute("pass")
    ws.send("control", "shutdown_request", {"restart": False})
    seen = []
    with pytest.raises(ConnectionError):  # the gateway closes the socket, it never hangs
        for _ in range(200):
            ch, msg, _ = ws.recv(90)
            seen.append((ch, msg["msg_type"], msg["content"].get("execution_state")))
    assert ("control", "shutdown_reply", None) in seen
    assert ("iopub", "status", "dead") in seen
    wait_until(lambda: http("GET", f"{gw.url}/api/kernels/{kid}")[0] == 404, 60,
               "the kernel gone from the REST API", interval=0.5)
