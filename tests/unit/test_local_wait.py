"""`wait_until`: the one readiness wait of `local up`, and what its errors tell the reader."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from kernelkeeper.local.processes import free_port, pid_running
from kernelkeeper.local.wait import Pending, http_ok, wait_until


def test_returns_the_result_once_the_condition_holds() -> None:
    calls = iter([Pending("starting"), False, {"status": "up"}])
    assert wait_until(lambda: next(calls), what="x", timeout=5, interval=0.01) == {"status": "up"}


def test_timeout_names_what_was_awaited_and_the_last_state_seen(tmp_path) -> None:
    seen = iter(f"step {i}" for i in range(10_000))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as err:
        wait_until(lambda: Pending(next(seen)), what="the frobnicator", timeout=0.3,
                   interval=0.05, log=tmp_path / "frob.log")
    assert 0.3 <= time.monotonic() - t0 < 2
    msg = str(err.value)
    assert msg.startswith("the frobnicator not ready within 0.3s (last seen: step ")
    assert msg.endswith(f"; see {tmp_path / 'frob.log'}")


def test_an_oserror_is_pending_with_its_message() -> None:
    port = free_port()  # nothing listens there: every connect is refused
    with pytest.raises(TimeoutError, match="Connection refused"):
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what="nobody",
                   timeout=0.2, interval=0.05)


def test_a_process_that_exits_fails_the_wait_at_once() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^the component exited while starting \(last seen: "
                                           r"not yet\)$"):
        wait_until(lambda: Pending("not yet"), what="the component", timeout=30,
                   alive=lambda: pid_running(proc.pid))
    assert time.monotonic() - t0 < 5


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_ok_is_true_on_200_and_pending_with_the_status_otherwise(server: str) -> None:
    assert http_ok(f"{server}/ok") is True
    assert http_ok(f"{server}/busy") == Pending(f"HTTP 503 from {server}/busy")
