"""Nothing lost: a streaming cell's output survives the death of the replica serving it.

The kernel Pod's launcher journals what the kernel sends; a client that comes back with its
session_id, to any replica, gets what it was not sent, in order, once. Each test reads the
numbered lines a real kernel prints and checks all of them arrived exactly once and in order,
followed by the execute_reply and `idle`.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable

import pytest
import websocket

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract
from tests.gateway.client import V1, KernelWS, http, start_kernel
from tests.ha.conftest import Fleet, websockets_open
from tests.helpers import get_session, metric, wait_ready, wait_until

PROTOCOLS = [pytest.param(None, id="legacy"), pytest.param(V1, id="v1")]
RECONNECT_ERRORS = (ConnectionError, OSError, websocket.WebSocketException, TimeoutError)


def streaming_cell(lines: int, every: float) -> str:
    return (f"import time\nfor i in range({lines}):\n"
            f"    print(f'line {{i}}', flush=True)\n    time.sleep({every})")


class Stream:
    """One execute's output as a client sees it, across reconnects with one session_id."""

    def __init__(self, connect: Callable[[], KernelWS]) -> None:
        self.connect = connect
        self.ws = connect()
        self.session_id = self.ws.session_id
        self.text = ""
        self.states: list[str] = []
        self.reply: dict | None = None
        self.reconnects = 0
        self.notices: list[str] = []
        self.events: list[str] = []  # reconnects and their causes, for failure messages

    @property
    def lines(self) -> list[int]:
        return [int(line.split()[1]) for line in self.text.splitlines()
                if line.startswith("line ")]

    def execute(self, code: str) -> str:
        return self.ws.send("shell", "execute_request",
                            {"code": code, "silent": False, "store_history": False,
                             "user_expressions": {}, "allow_stdin": False,
                             "stop_on_error": True})

    def reconnect(self, deadline: float, cause: Exception) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} lost: {cause!r}"[:200])
        self.ws.close()
        while True:
            try:
                self.ws = self.connect()
                self.reconnects += 1
                self.events.append(f"{time.strftime('%H:%M:%S')} reconnected")
                return
            except RECONNECT_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise
                self.events.append(f"refused: {exc!r}"[:120])
                time.sleep(0.1)

    def follow(self, msg_id: str, timeout: float = 120,
               until: Callable[[Stream], bool] | None = None) -> None:
        """Read until the execute is answered and idle (or `until` holds), reconnecting
        whenever the websocket drops."""
        deadline = time.monotonic() + timeout
        while not (self.reply and "idle" in self.states):
            if until is not None and until(self):
                return
            assert time.monotonic() < deadline, f"not done: {self.summary()}"
            try:
                # Short reads: the gateway's pings would otherwise keep one read waiting.
                channel, msg, _ = self.ws.recv(timeout=min(5.0, max(0.1, deadline -
                                                                    time.monotonic())))
            except websocket.WebSocketTimeoutException:
                continue
            except RECONNECT_ERRORS as exc:
                self.reconnect(deadline, exc)
                continue
            if msg["parent_header"].get("msg_id") != msg_id and msg["msg_type"] != "stream":
                continue
            if msg["msg_type"] == "stream":
                text = msg["content"]["text"]
                if text.startswith("[kernelkeeper]"):
                    self.notices.append(text)
                elif msg["parent_header"].get("msg_id") == msg_id:
                    self.text += text
            elif msg["msg_type"] == "status":
                self.states.append(msg["content"]["execution_state"])
            elif channel == "shell" and msg["msg_type"] == "execute_reply":
                assert self.reply is None, "the execute_reply arrived twice"
                self.reply = msg

    def summary(self) -> str:
        lines = self.lines
        return (f"{len(lines)} lines (first {lines[:3]}, last {lines[-3:]}), states "
                f"{self.states[-4:]}, reply {bool(self.reply)}, {self.reconnects} reconnects "
                f"{self.events[-6:]}")

    def assert_complete(self, expected: int) -> None:
        assert self.reply is not None and self.reply["content"]["status"] == "ok"
        assert self.lines == list(range(expected)), (
            f"every line once and in order; {self.summary()}; "
            f"missing {sorted(set(range(expected)) - set(self.lines))[:10]}")
        assert self.states[-1] == "idle", self.states[-5:]


def _serving(fleet: Fleet) -> list:
    return [g for g in fleet.replicas if g.alive() and websockets_open(g) > 0]


def _kill_serving(fleet: Fleet) -> None:
    serving = _serving(fleet)
    assert len(serving) == 1, "nginx pins the kernel's websocket to one replica"
    serving[0].proc.send_signal(signal.SIGKILL)
    serving[0].proc.wait(10)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_active_active_sigkill_mid_stream_loses_no_line(fleet, protocol):
    f = fleet(2)
    kid = start_kernel(f.url)
    session = uuid.uuid4().hex
    stream = Stream(lambda: KernelWS(f.ws_url, kid, protocol=protocol, session_id=session))
    msg_id = stream.execute(streaming_cell(40, 0.1))
    stream.follow(msg_id, until=lambda s: len(s.lines) >= 8)
    _kill_serving(f)
    stream.follow(msg_id)
    print(f"\n[nothing-lost] {protocol or 'legacy'}: {stream.summary()}")
    assert stream.reconnects >= 1
    stream.assert_complete(40)
    assert "busy" in stream.states


def test_jupyter_server_gateway_client_loses_no_line_across_sigkill(fleet, jupyter_servers):
    """jupyter_server's own gateway hop reconnects with the browser's session_id, so the
    journal's replay covers what the kernel printed while that hop was down."""
    f = fleet(2)
    js = jupyter_servers(f.url)
    status, model = http("POST", f"{js.url}/api/kernels", {"name": "python3"}, token=js.token)
    assert status == 201, model
    stream = Stream(lambda: KernelWS(js.ws_url, model["id"], token=js.token))
    msg_id = stream.execute(streaming_cell(40, 0.1))
    stream.follow(msg_id, until=lambda s: len(s.lines) >= 8)
    _kill_serving(f)
    stream.follow(msg_id)
    print(f"\n[nothing-lost] through jupyter_server: {stream.summary()}")
    stream.assert_complete(40)


@pytest.mark.timeout(300)
def test_active_passive_takeover_after_sigkill_loses_no_line(fleet):
    f = fleet(2, "active-passive", KERNELKEEPER_GATEWAY_LEASE_DURATION="6",
              KERNELKEEPER_GATEWAY_RENEW_DEADLINE="4", KERNELKEEPER_GATEWAY_RETRY_PERIOD="1")
    wait_until(lambda: len(f.active()) == 1, 60, "one Lease holder")
    kid = start_kernel(f.url)
    session = uuid.uuid4().hex
    stream = Stream(lambda: KernelWS(f.ws_url, kid, protocol=V1, session_id=session))
    # Long enough to outlast the Lease's expiry: most lines are printed while nobody serves.
    msg_id = stream.execute(streaming_cell(60, 0.2))
    stream.follow(msg_id, until=lambda s: len(s.lines) >= 5)
    (holder,) = f.active()
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(10)
    stream.follow(msg_id, timeout=180)
    print(f"\n[nothing-lost] active-passive takeover: {stream.summary()}")
    assert stream.reconnects >= 1
    stream.assert_complete(60)


def test_a_client_away_30s_gets_the_whole_stream_from_another_replica(fleet):
    f = fleet(2)
    kid = start_kernel(f.url)
    session = uuid.uuid4().hex
    first = Stream(lambda: KernelWS(f.ws_url, kid, session_id=session))
    msg_id = first.execute(streaming_cell(160, 0.25))  # 40 s of output
    first.follow(msg_id, until=lambda s: len(s.lines) >= 4)
    (serving,) = _serving(f)
    other = next(g for g in f.replicas if g is not serving)
    first.ws.close()
    time.sleep(30)
    back = Stream(lambda: KernelWS(other.ws_url, kid, session_id=session))
    back.text, back.states = first.text, first.states
    back.follow(msg_id)
    print(f"\n[nothing-lost] away 30 s, back on another replica: {back.summary()}")
    assert websockets_open(other) >= 1
    back.assert_complete(160)


def test_journal_overflow_says_what_was_lost_and_the_kernel_carries_on(fleet, cluster,
                                                                       kk_namespace):
    f = fleet(1)
    kid = crd.new_kernel_id()
    manifest = crd.kernel_session(kid, namespace=kk_namespace, kernel_spec="python3")
    manifest["spec"]["journal"] = {"maxMessages": 10}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_ready(cluster, kk_namespace, kid)
    session = uuid.uuid4().hex
    away = Stream(lambda: KernelWS(f.ws_url, kid, session_id=session))
    msg_id = away.execute(streaming_cell(60, 0.05))
    away.follow(msg_id, until=lambda s: len(s.lines) >= 2)
    away.ws.close()
    time.sleep(6)  # the cell finishes meanwhile: ~60 messages into a journal of 10
    back = Stream(lambda: KernelWS(f.ws_url, kid, session_id=session))
    back.text, back.states = away.text, away.states
    back.follow(msg_id)
    print(f"\n[nothing-lost] journal of 10 after a long absence: notices {back.notices}; "
          f"{back.summary()}")
    assert len(back.notices) == 1 and "were lost" in back.notices[0], back.notices
    assert int(back.notices[0].split()[1]) > 0
    got = back.lines
    assert got == sorted(set(got)), "what did arrive came once and in order"
    assert got[-1] == 59 and len(got) < 60
    reply, out, _ = back.ws.execute("print(6 * 7)")
    assert reply["content"]["status"] == "ok" and out.strip() == "42"
    back.ws.close()
    # The launcher's metrics show the journal at its bound and what it evicted.
    pod_ip = get_session(cluster, kk_namespace, kid)["status"]["podIP"]
    launcher = f"http://{pod_ip}:{contract.HEALTH_PORT}"
    assert metric(launcher, "_journal_max_messages") == 10
    assert metric(launcher, "_journal_messages") <= 10
    assert metric(launcher, "_journal_evicted_messages_total") >= 50
