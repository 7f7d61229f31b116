"""Through jupyter_server with kernelkeeper.lab: a gateway replica's death costs the user a
pause, never a lost or repeated cell.

A real jupyter_server (`--gateway-url` at the fleet's nginx) in front of two active-active
replicas, kernels in Pods of the real node. The test client plays the browser: a websocket to
jupyter_server with its own session_id, which never reconnects by itself here. Each test kills
the replica serving the kernel (SIGKILL) at a moment a plain jupyter_server gets wrong, and
checks with the kernel's own record that each execute ran exactly once.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
import websocket

from tests.gateway.client import V1, KernelWS, http
from tests.ha.conftest import Fleet, websockets_open
from tests.ha.test_nothing_lost import Stream, streaming_cell
from tests.helpers import wait_until

CONNECTION_CLASS = "kernelkeeper.lab.connection.KernelkeeperWebsocketConnection"
WITH_LAB = [f"--ServerApp.kernel_websocket_connection_class={CONNECTION_CLASS}"]
# Stock even where a config file enables the extension (lab/jupyter-config).
STOCK = ['--ServerApp.jpserver_extensions={"kernelkeeper.lab": False}']


def start_session(js) -> str:
    status, session = http("POST", f"{js.url}/api/sessions",
                           {"path": "lab.ipynb", "name": "lab.ipynb", "type": "notebook",
                            "kernel": {"name": "python3"}}, token=js.token)
    assert status == 201, session
    return str(session["kernel"]["id"])


def serving(fleet: Fleet) -> list:
    return [g for g in fleet.replicas if g.alive() and websockets_open(g) > 0]


def the_serving_replica(fleet: Fleet):
    (gw,) = serving(fleet)  # nginx pins the kernel (and its websocket) to one replica
    return gw


def kill(gw) -> None:
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)


class Answers:
    """Every message for a set of requests that reaches the browser, counted."""

    def __init__(self, ws: KernelWS) -> None:
        self.ws = ws
        self.replies: dict[str, list[dict]] = {}
        self.stdout: dict[str, str] = {}
        self.idle: set[str] = set()
        self.order: list[str] = []  # msg_ids of execute_replies as they came
        self.done_at: float | None = None  # when the last reply and idle were in
        self.states: list[str] = []  # every execution_state the browser was shown

    def read_until(self, msg_ids: list[str], timeout: float, linger: float = 2.0) -> bool:
        """Read until every request has its reply and idle, then `linger` seconds more (a
        second reply would show up there). False when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self.done_at is None and all(m in self.replies and m in self.idle
                                            for m in msg_ids):
                self.done_at = now
            if (self.done_at is not None and now > self.done_at + linger) or now > deadline:
                return self.done_at is not None
            try:
                channel, msg, _ = self.ws.recv(timeout=0.5)
            except websocket.WebSocketTimeoutException:
                continue
            parent = msg["parent_header"].get("msg_id", "")
            if channel == "shell" and msg["msg_type"].endswith("_reply"):
                self.replies.setdefault(parent, []).append(msg)
                self.order.append(parent)
            elif msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                self.stdout[parent] = self.stdout.get(parent, "") + msg["content"]["text"]
            elif msg["msg_type"] == "status":
                self.states.append(msg["content"]["execution_state"])
                if self.states[-1] == "idle":
                    self.idle.add(parent)


def execute(ws: KernelWS, code: str) -> str:
    return ws.send("shell", "execute_request",
                   {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})


def kernel_record(ws: KernelWS) -> list:
    reply, out, _ = ws.execute("import json; print(json.dumps(ran))", timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    return json.loads(out)


@pytest.mark.parametrize("path", ["lab", "stock"])
def test_an_execute_sent_right_after_sigkill_is_answered_once(fleet, jupyter_servers, path):
    f = fleet(2)
    js = jupyter_servers(f.url, extra=WITH_LAB if path == "lab" else STOCK)
    ws = KernelWS(js.ws_url, start_session(js), token=js.token)
    try:
        reply, _, _ = ws.execute("ran = []\nx = 41")
        assert reply["content"]["status"] == "ok"
        victim = the_serving_replica(f)
        kill(victim)
        t_kill = time.monotonic()
        msg_id = execute(ws, "ran.append('after kill')\nprint(x + 1)")
        sent_after = time.monotonic() - t_kill
        answers = Answers(ws)
        answered = answers.read_until([msg_id], timeout=60 if path == "lab" else 20)
        if path == "stock":
            # jupyter_server's own gateway client writes it into the dead websocket during
            # its reconnect back-off ("Exception writing message to websocket").
            print(f"\n[lab] stock jupyter_server, execute sent {sent_after * 1000:.0f} ms after "
                  f"SIGKILL: {'answered' if answered else 'never answered'} "
                  f"(waited {time.monotonic() - t_kill:.0f}s)")
            ws.execute("pass", timeout=60)  # the stock client has reconnected by now
            assert kernel_record(ws).count("after kill") <= 1
            return
        assert answered and answers.done_at is not None, f"never answered; {answers.replies}"
        print(f"\n[lab] execute sent {sent_after * 1000:.0f} ms after SIGKILL: answered "
              f"{answers.done_at - t_kill:.2f}s after the kill")
        assert sent_after < 0.2
        assert len(answers.replies[msg_id]) == 1, "answered twice"
        assert answers.replies[msg_id][0]["content"]["status"] == "ok"
        assert answers.stdout[msg_id] == "42\n", "the kernel (and x) survived"
        assert kernel_record(ws) == ["after kill"], "it ran exactly once"
        assert set(answers.states) <= {"busy", "idle"}, "the browser never saw it dead"
        assert victim not in serving(f)
    finally:
        ws.close()


def test_an_execute_written_into_a_dying_replica_is_sent_again_once(fleet, jupyter_servers):
    """The replica is frozen (SIGSTOP) when the execute reaches it, so it never forwards it,
    then killed: only the kernel_info barrier after reconnecting can tell it was lost."""
    f = fleet(2)
    js = jupyter_servers(f.url, extra=WITH_LAB)
    ws = KernelWS(js.ws_url, start_session(js), token=js.token)
    try:
        assert ws.execute("ran = []")[0]["content"]["status"] == "ok"
        victim = the_serving_replica(f)
        victim.proc.send_signal(signal.SIGSTOP)
        msg_id = execute(ws, "ran.append('into the dying replica')\nprint('ran')")
        time.sleep(0.5)  # written to the replica's socket; the replica never reads it
        kill(victim)
        answers = Answers(ws)
        assert answers.read_until([msg_id], timeout=60), "never answered"
        assert len(answers.replies[msg_id]) == 1
        assert answers.stdout[msg_id] == "ran\n"
        assert kernel_record(ws) == ["into the dying replica"]
        assert set(answers.states) <= {"busy", "idle"}
        assert "never reached the kernel" in js.log_text()
    finally:
        ws.close()


def test_an_execute_the_dead_replica_forwarded_is_not_run_again(fleet, jupyter_servers):
    """The second execute is in the kernel's queue, behind a running cell, when its replica
    dies: nothing has shown it arrived yet. The barrier waits for both; neither runs twice."""
    f = fleet(2)
    js = jupyter_servers(f.url, extra=WITH_LAB)
    ws = KernelWS(js.ws_url, start_session(js), token=js.token)
    try:
        assert ws.execute("ran = []")[0]["content"]["status"] == "ok"
        victim = the_serving_replica(f)
        running = execute(ws, "import time\nran.append('running')\ntime.sleep(3)")
        queued = execute(ws, "ran.append('queued')\nprint('queued ran')")
        time.sleep(0.5)  # both forwarded; the kernel is busy with the first
        kill(victim)
        answers = Answers(ws)
        assert answers.read_until([running, queued], timeout=60), answers.replies.keys()
        assert [len(answers.replies[m]) for m in (running, queued)] == [1, 1]
        assert answers.order == [running, queued]
        assert kernel_record(ws) == ["running", "queued"]
        assert set(answers.states) <= {"busy", "idle"}
    finally:
        ws.close()


@pytest.mark.timeout(300)
def test_an_execute_sent_as_the_lease_holder_dies_waits_for_the_takeover(fleet,
                                                                         jupyter_servers):
    """Active-passive: until a standby takes the Lease over (seconds), every replica answers
    the hop's upgrade with 503; the execute waits in the backlog meanwhile."""
    f = fleet(2, "active-passive", KERNELKEEPER_GATEWAY_LEASE_DURATION="6",
              KERNELKEEPER_GATEWAY_RENEW_DEADLINE="4", KERNELKEEPER_GATEWAY_RETRY_PERIOD="1")
    wait_until(lambda: len(f.active()) == 1, 60, "one Lease holder")
    js = jupyter_servers(f.url, extra=WITH_LAB)
    ws = KernelWS(js.ws_url, start_session(js), token=js.token)
    try:
        assert ws.execute("ran = []")[0]["content"]["status"] == "ok"
        (holder,) = f.active()
        kill(holder)
        t_kill = time.monotonic()
        msg_id = execute(ws, "ran.append('during the takeover')\nprint('ran')")
        answers = Answers(ws)
        assert answers.read_until([msg_id], timeout=120), "never answered"
        assert answers.done_at is not None
        print(f"\n[lab] active-passive: an execute sent as the holder died was answered "
              f"{answers.done_at - t_kill:.1f}s later, after the takeover")
        assert len(answers.replies[msg_id]) == 1 and answers.stdout[msg_id] == "ran\n"
        assert kernel_record(ws) == ["during the takeover"]
        assert set(answers.states) <= {"busy", "idle"}
        assert "gateway hop not open" in js.log_text(), "it did wait out refusals"
    finally:
        ws.close()


@pytest.mark.parametrize("protocol", [pytest.param(None, id="legacy"), pytest.param(V1, id="v1")])
def test_a_streaming_cell_across_sigkill_shows_every_line_once(fleet, jupyter_servers, protocol):
    f = fleet(2)
    js = jupyter_servers(f.url, extra=WITH_LAB)
    kid = start_session(js)
    stream = Stream(lambda: KernelWS(js.ws_url, kid, token=js.token, protocol=protocol))
    assert stream.ws.protocol == (protocol or "")
    msg_id = stream.execute(streaming_cell(40, 0.1))
    stream.follow(msg_id, until=lambda s: len(s.lines) >= 8)
    kill(the_serving_replica(f))
    stream.follow(msg_id)
    print(f"\n[lab] streaming through jupyter_server + kernelkeeper.lab ({protocol or 'legacy'}"
          f" browser): {stream.summary()}")
    stream.assert_complete(40)
    assert stream.reconnects == 0, "the browser's websocket never dropped"
