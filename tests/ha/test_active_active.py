"""active-active behind nginx: replica loss and rolling restarts are invisible to clients.

Each test prints the client-visible interruption it measured (run with -s to see it)."""

from __future__ import annotations

import signal
import threading
import time

from tests.gateway.client import KernelWS, http
from tests.ha.conftest import wait_until, websockets_open


def _start_session(js) -> str:
    status, session = http("POST", f"{js.url}/api/sessions",
                           {"path": "ha.ipynb", "name": "ha.ipynb", "type": "notebook",
                            "kernel": {"name": "python3"}}, token=js.token)
    assert status == 201, session
    return session["kernel"]["id"]


def _serving(fleet):
    """The live replicas holding a websocket (the one nginx routed the kernel to)."""
    return [g for g in fleet.replicas if g.alive() and websockets_open(g) > 0]


def test_sigkill_of_the_serving_replica_needs_no_manual_step(fleet, jupyter_servers):
    f = fleet(2)
    js = jupyter_servers(f.url)
    kid = _start_session(js)
    ws = KernelWS(js.ws_url, kid, token=js.token)
    try:
        reply, out, _ = ws.execute("x = 41\nprint('defined')")
        assert reply["content"]["status"] == "ok" and out.strip() == "defined"
        serving = _serving(f)
        assert len(serving) == 1, "nginx should pin the kernel to one replica"
        victim = serving[0]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        t0 = time.monotonic()
        # Nobody reconnects by hand: jupyter_server's gateway client notices the lost
        # websocket and reconnects through nginx, which skips the dead replica; the survivor
        # hydrates the kernel. jupyter_server drops messages sent during its own back-off
        # (it writes them to the dead socket), so the user's next execute is the one after it
        # has reconnected, which is what this waits for.
        reconnected = wait_until(lambda: bool(_serving(f)), 60, "jupyter_server reconnected")
        assert victim not in _serving(f)
        reply, out, _ = ws.execute("print(x + 1)", timeout=60)
        took = time.monotonic() - t0
        print(f"\n[ha] SIGKILL of the serving replica: jupyter_server reconnected after "
              f"{reconnected:.2f}s, next execute answered {took:.2f}s after the kill")
        assert reply["content"]["status"] == "ok"
        assert out.strip() == "42", "the kernel (and its variables) must survive"
    finally:
        ws.close()


class Ticker(threading.Thread):
    """Executes an idempotent statement every 100 ms through nginx, retrying like a client."""

    def __init__(self, fleet, kid: str) -> None:
        super().__init__(daemon=True)
        self.fleet, self.kid = fleet, kid
        self.stop = threading.Event()
        self.answered: list[int] = []
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
            code = f"seen.add({i})\nlen(seen)"
            try:
                reply, _, iopub = ws.execute(code, timeout=10)
                assert reply["content"]["status"] == "ok", reply["content"]
                now = time.monotonic()
                self.gaps.append(now - last_ok)
                last_ok = now
                self.answered.append(i)
                i += 1
                time.sleep(0.1)
            except Exception as exc:  # noqa: BLE001 - the same request is retried
                self.errors.append(f"execute {i}: {exc!r}")
                ws.close()
                self.reconnects += 1
                ws = self._connect(ws.session_id)
        ws.close()


def test_rolling_restart_answers_every_execute(fleet):
    f = fleet(2)
    status, model = http("POST", f"{f.url}/api/kernels", {"name": "python3"})
    assert status == 201, model
    kid = model["id"]
    ws = KernelWS(f.ws_url, kid)
    assert ws.execute("seen = set()")[0]["content"]["status"] == "ok"
    ws.close()

    ticker = Ticker(f, kid)
    ticker.start()
    wait_until(lambda: len(ticker.answered) >= 10, 60, "ticker running")
    for gw in list(f.replicas):
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0, gw.log_text()[-2000:]
        f.restart(gw)
        count = len(ticker.answered)
        wait_until(lambda c=count: len(ticker.answered) >= c + 10, 120, "executes after restart")
    ticker.stop.set()
    ticker.join(30)

    n = len(ticker.answered)
    assert ticker.answered == list(range(n)), "every execute is answered, in order"
    ws = KernelWS(f.ws_url, kid)
    try:
        _, out, _ = ws.execute("print(len(seen), min(seen), max(seen))")
    finally:
        ws.close()
    assert out.split() == [str(n), "0", str(n - 1)], "no kernel lost, no state lost"
    print(f"\n[ha] rolling restart of 2 replicas: {n} executes answered, longest gap "
          f"{max(ticker.gaps):.2f}s, {ticker.reconnects} client reconnects")
