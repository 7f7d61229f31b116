"""Any replica serves any kernel: hydration from the KernelSession, activity reports, SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from tests.gateway.client import KernelWS, http


def _status(cluster, ns: str, kid: str) -> dict:
    out = cluster.kubectl("get", "ks", "-n", ns, kid, "-o", "json").stdout
    return json.loads(out).get("status") or {}


def test_kernel_started_on_a_is_served_by_fresh_b_on_every_route(gateways, kk_namespace):
    a = gateways.start(kk_namespace, replica_id="gw-a")
    status, model = http("POST", f"{a.url}/api/kernels", {"name": "python3"})
    assert status == 201, model
    kid = model["id"]
    ws_a = KernelWS(a.ws_url, kid)
    ws_a.execute("x = 41")
    ws_a.close()

    b = gateways.start(kk_namespace, replica_id="gw-b")  # never saw the kernel
    status, got = http("GET", f"{b.url}/api/kernels/{kid}")
    assert status == 200 and got["id"] == kid and got["name"] == "python3"
    assert kid in [m["id"] for m in http("GET", f"{b.url}/api/kernels")[1]]

    ws_b = KernelWS(b.ws_url, kid)
    reply, out, _ = ws_b.execute("x += 1; print(x)")
    assert out == "42\n"
    # interrupt through B stops a long sleep started through B
    msg_id = ws_b.send("shell", "execute_request",
                       {"code": "import time; time.sleep(600)", "silent": False,
                        "store_history": False, "user_expressions": {}, "allow_stdin": False})
    while True:
        ch, msg, _ = ws_b.recv(30)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy" and \
                msg["parent_header"].get("msg_id") == msg_id:
            break
    time.sleep(0.5)
    c = gateways.start(kk_namespace, replica_id="gw-c")  # interrupt via a third fresh replica
    assert http("POST", f"{c.url}/api/kernels/{kid}/interrupt", {})[0] == 204
    reply, _, _ = ws_b.collect(msg_id, timeout=30)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    ws_b.close()

    d = gateways.start(kk_namespace, replica_id="gw-d")  # restart via a fresh replica
    status, restarted = http("POST", f"{d.url}/api/kernels/{kid}/restart", {})
    assert status == 200 and restarted["id"] == kid
    ws_d = KernelWS(d.ws_url, kid)
    reply, _, _ = ws_d.execute("x")
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "NameError"
    ws_d.close()

    e = gateways.start(kk_namespace, replica_id="gw-e")  # delete via a fresh replica
    assert http("DELETE", f"{e.url}/api/kernels/{kid}")[0] == 204
    for gw in (a, b):
        deadline = time.monotonic() + 30
        while http("GET", f"{gw.url}/api/kernels/{kid}")[0] != 404:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_activity_is_reported_per_replica(gateways, kk_namespace, cluster):
    env = {"KERNELKEEPER_GATEWAY_ACTIVITY_INTERVAL": "1",
           "KERNELKEEPER_GATEWAY_HEARTBEAT_INTERVAL": "2"}
    a = gateways.start(kk_namespace, replica_id="gw-act-a", env=env)
    b = gateways.start(kk_namespace, replica_id="gw-act-b", env=env)
    status, model = http("POST", f"{a.url}/api/kernels", {"name": "python3"})
    assert status == 201
    kid = model["id"]
    ws_a, ws_b = KernelWS(a.ws_url, kid), KernelWS(b.ws_url, kid)
    ws_b.execute("1 + 1")
    deadline = time.monotonic() + 30
    while True:
        replicas = (_status(cluster, kk_namespace, kid).get("activity") or {}).get("replicas") or {}
        if replicas.get("gw-act-a", {}).get("connections") == 1 and \
                replicas.get("gw-act-b", {}).get("connections") == 1:
            break
        assert time.monotonic() < deadline, replicas
        time.sleep(0.5)
    act = _status(cluster, kk_namespace, kid)["activity"]
    assert act["replicas"]["gw-act-b"]["executionState"] == "idle"
    assert act["lastActivity"] and act["executionState"]
    # Both replicas count in the model's connections.
    assert http("GET", f"{a.url}/api/kernels/{kid}")[1]["connections"] == 2
    # The heartbeat keeps moving while connections exist, with no traffic at all.
    first = act["replicas"]["gw-act-a"]["heartbeat"]
    deadline = time.monotonic() + 30
    while _status(cluster, kk_namespace, kid)["activity"]["replicas"]["gw-act-a"]["heartbeat"] \
            == first:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    ws_b.close()
    deadline = time.monotonic() + 30
    while _status(cluster, kk_namespace, kid)["activity"]["replicas"]["gw-act-b"]["connections"]:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    ws_a.close()
    http("DELETE", f"{a.url}/api/kernels/{kid}")


def test_sigterm_keeps_the_kernel_running(gateways, kk_namespace):
    a = gateways.start(kk_namespace, replica_id="gw-term-a")
    b = gateways.start(kk_namespace, replica_id="gw-term-b")
    status, model = http("POST", f"{a.url}/api/kernels", {"name": "python3"})
    assert status == 201
    kid = model["id"]
    ws = KernelWS(a.ws_url, kid, session_id="moving")
    ws.execute("state = 'kept'")
    started = time.monotonic()
    assert a.terminate(30) == 0
    # The open websocket was closed with a code that tells clients to reconnect.
    with pytest.raises(ConnectionError) as exc:
        for _ in range(100):
            ws.recv(10)
    assert str(exc.value).split()[1] in ("03e9", "03f4"), exc.value  # 1001 or 1012
    assert time.monotonic() - started < 30
    assert "kernels keep running" in a.log_text()
    ws2 = KernelWS(b.ws_url, kid, session_id="moving")
    reply, out, _ = ws2.execute("print(state)")
    assert out == "kept\n"
    ws2.close()
    assert http("DELETE", f"{b.url}/api/kernels/{kid}")[0] == 204


def test_sigterm_answers_a_kernel_start_already_under_way(gateways, kk_namespace, cluster):
    """A rollout stops a replica while a POST /api/kernels waits for its Pod: the client gets
    its 201 (the replica finishes the request before it exits), not a dropped connection."""
    a = gateways.start(kk_namespace, replica_id="gw-a")
    answer: dict[str, tuple[int, object]] = {}

    def start() -> None:
        try:
            answer["start"] = http("POST", f"{a.url}/api/kernels", {"name": "python3"})
        except OSError as exc:  # what the client saw before: the connection dropped
            answer["start"] = (0, repr(exc))

    post = threading.Thread(target=start)
    post.start()
    deadline = time.monotonic() + 60
    while not cluster.kubectl("get", "ks", "-n", kk_namespace, "-o", "name").stdout.strip():
        assert time.monotonic() < deadline and post.is_alive(), answer
        time.sleep(0.05)
    assert post.is_alive(), f"the start was answered before the replica was stopped: {answer}"
    a.proc.send_signal(signal.SIGTERM)
    post.join(60)
    status, model = answer["start"]
    assert status == 201, model
    assert a.proc.wait(30) == 0
    b = gateways.start(kk_namespace, replica_id="gw-b")
    ws = KernelWS(b.ws_url, model["id"])  # type: ignore[index]
    assert ws.execute("print(6 * 7)")[1] == "42\n"
    ws.close()
