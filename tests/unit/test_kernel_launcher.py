"""The in-pod launcher as a plain subprocess around real ipykernel (no cluster needed)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract, supervisor
from tests.helpers import connect_kernel, execute, http_status, launcher_status, wait_until

PYTHON_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    ip: str
    key: str
    log: Path

    def status(self) -> dict | None:
        try:
            return launcher_status(self.ip, timeout=2)
        except OSError:
            return None

    def healthz(self) -> int:
        return http_status(f"http://{self.ip}:{contract.HEALTH_PORT}{contract.HEALTH_PATH}", 2)

    def wait(self, check, timeout: float = 60, what: str = "state") -> dict:
        last: list[dict | None] = [None]

        def reached() -> dict | None:
            last[0] = st = self.status()
            if st is not None and check(st):
                return st
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            return None

        return wait_until(reached, timeout, f"launcher {what}", interval=0.1,
                          detail=lambda: f"last status {last[0]}\n{self.log.read_text()[-3000:]}")

    def client(self) -> BlockingKernelClient:
        return connect_kernel({
            "ip": self.ip, "key": self.key, "transport": "tcp",
            "signature_scheme": crd.SIGNATURE_SCHEME,
            **{f"{ch}_port": port for ch, port in crd.DEFAULT_PORTS.items()},
        })


def _env(ip: str, key: str, argv: list[str], **extra: str) -> dict[str, str]:
    return {**os.environ, contract.ENV_KERNEL_ID: str(uuid.uuid4()), contract.ENV_POD_IP: ip,
            contract.ENV_KEY: key, contract.ENV_ARGV: json.dumps(argv), **extra}


@pytest.fixture
def launch(tmp_path) -> Iterator:
    started: list[Launched] = []

    def start(argv: list[str] = PYTHON_ARGV, **extra: str) -> Launched:
        # A loopback address of its own for each launcher, so tests never share ports.
        ip = f"127.200.{random.randint(0, 255)}.{random.randint(1, 254)}"
        key = uuid.uuid4().hex
        log = tmp_path / f"launcher-{len(started)}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "kernelkeeper.kernel"],
                                    env=_env(ip, key, argv, **extra), stdout=out,
                                    stderr=subprocess.STDOUT)
        started.append(Launched(proc, ip, key, log))
        return started[-1]

    yield start
    for launched in started:
        if launched.proc.poll() is None:
            launched.proc.kill()
            launched.proc.wait(10)


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_serves_kernel_and_health(launch):
    kernel = launch()
    st = kernel.wait(lambda s: s["ready"], what="ready")
    assert st["restarts"] == 0 and st["state"] == "ready" and st["pid"]
    assert kernel.healthz() == 200
    kc = kernel.client()
    try:
        assert execute(kc, "1+1")["result"] == "2"
        # The kernel sees the pod environment but not the launcher's settings or the key.
        env = execute(kc, "import os; sorted(k for k in os.environ if k.startswith('KERNEL'))")
        assert "KERNELKEEPER_KEY" not in env["result"] and "KERNEL_ID" in env["result"]
        st = kernel.status()
        assert st["executionState"] == "idle" and st["lastActivity"]
        assert st["journal"]["messages"] > 0 and st["journal"]["maxMessages"] == 10000
        with urllib.request.urlopen(f"http://{kernel.ip}:{contract.HEALTH_PORT}"
                                    f"{contract.METRICS_PATH}", timeout=5) as resp:
            text = resp.read().decode()
        assert "kernelkeeper_kernel_journal_max_messages 10000" in text
        assert "# TYPE kernelkeeper_kernel_journal_evicted_messages_total counter" in text
    finally:
        kc.stop_channels()


def test_restart_request_restarts_in_place_and_clears_state(launch):
    kernel = launch()
    first = kernel.wait(lambda s: s["ready"], what="ready")
    kc = kernel.client()
    try:
        execute(kc, "y = 'kept?'")
        kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": True}))
        assert kc.control_channel.get_msg(timeout=30)["content"]["restart"] is True
        st = kernel.wait(lambda s: s["ready"] and s["restarts"] == 1, what="restarted")
        assert st["pid"] != first["pid"]
        assert st["lastRestart"]["reason"] == "requested"
        kc.wait_for_ready(timeout=60)
        assert execute(kc, "y")["ename"] == "NameError"
        assert kernel.proc.poll() is None
    finally:
        kc.stop_channels()
    assert "restarting in place (requested" in kernel.log.read_text()


def test_shutdown_request_over_shell_also_detected(launch):
    """ipykernel accepts shutdown_request on shell too; iopub tells us which kind it was."""
    kernel = launch()
    kernel.wait(lambda s: s["ready"], what="ready")
    kc = kernel.client()
    try:
        kc.shell_channel.send(kc.session.msg("shutdown_request", {"restart": True}))
        kernel.wait(lambda s: s["ready"] and s["restarts"] == 1, what="restarted")
        assert kernel.status()["lastRestart"]["reason"] == "requested"
    finally:
        kc.stop_channels()


def test_crash_restarts_with_backoff_until_ready(launch):
    kernel = launch()
    first = kernel.wait(lambda s: s["ready"], what="ready")
    os.kill(first["pid"], signal.SIGKILL)
    st = kernel.wait(lambda s: s["ready"] and s["restarts"] == 1, what="restarted after crash")
    assert st["lastRestart"]["reason"] == "crashed" and "-9" in st["lastRestart"]["detail"]
    kc = kernel.client()
    try:
        assert execute(kc, "3*3")["result"] == "9"
    finally:
        kc.stop_channels()


def test_plain_shutdown_ends_launcher_with_zero(launch):
    kernel = launch()
    kernel.wait(lambda s: s["ready"], what="ready")
    kc = kernel.client()
    try:
        kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": False}))
        kc.control_channel.get_msg(timeout=30)
    finally:
        kc.stop_channels()
    assert kernel.proc.wait(30) == contract.EXIT_SHUTDOWN


def test_sigterm_stops_kernel_and_launcher(launch):
    kernel = launch()
    st = kernel.wait(lambda s: s["ready"], what="ready")
    kernel.proc.send_signal(signal.SIGTERM)
    assert kernel.proc.wait(30) == contract.EXIT_STOPPED
    wait_until(lambda: _gone(st["pid"]), 10, "the kernel process gone", interval=0.1)


def test_kernel_that_keeps_crashing_gives_up(launch):
    kernel = launch(["python", "-c", "raise SystemExit(7)"],
                    **{contract.ENV_MAX_RESTARTS: "2"})
    assert kernel.proc.wait(60) == contract.EXIT_GAVE_UP
    text = kernel.log.read_text()
    assert text.count("restarting in place (crashed") == 2 and "giving up" in text


def test_missing_config_exits_with_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNELKEEPER_")}
    out = subprocess.run([sys.executable, "-m", "kernelkeeper.kernel"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == contract.EXIT_BAD_CONFIG
    assert "KERNELKEEPER_POD_IP" in out.stderr and "KERNELKEEPER_KEY" in out.stderr


def test_input_request_reaches_the_asking_client_through_the_relays(launch):
    """ipykernel sends input_request on stdin to the route of the shell request: the relays
    must present one routing id on both, as a direct client does."""
    kernel = launch()
    kernel.wait(lambda s: s["ready"], what="ready")
    kc = kernel.client()
    try:
        msg_id = kc.execute("print('got', input('q?'))", allow_stdin=True)
        request = kc.get_stdin_msg(timeout=30)
        assert request["msg_type"] == "input_request"
        assert request["parent_header"]["msg_id"] == msg_id
        kc.input("hello")
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()


def test_interrupt_request_reaches_kernel_and_its_children(launch, tmp_path):
    kernel = launch()
    kernel.wait(lambda s: s["ready"], what="ready")
    kc = kernel.client()
    try:
        # A child process in the kernel's process group gets the interrupt too.
        code = ("import subprocess, time; "
                "p = subprocess.Popen(['sleep', '300']); time.sleep(120)")
        msg_id = kc.execute(code)
        while True:  # wait until the code runs, so the interrupt has something to hit
            msg = kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "execute_input" and msg["parent_header"]["msg_id"] == msg_id:
                break
        time.sleep(1)
        kc.control_channel.send(kc.session.msg("interrupt_request", {}))
        assert kc.control_channel.get_msg(timeout=30)["content"]["status"] == "ok"
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert execute(kc, "p.wait(timeout=10)")["result"] == "-2"  # SIGINT
        # ...and after a crash, the restart reaps what the old kernel left behind.
        left = int(execute(kc, "q = subprocess.Popen(['sleep', '300']); q.pid")["result"])
        os.kill(kernel.status()["pid"], signal.SIGKILL)
        kernel.wait(lambda s: s["ready"] and s["restarts"] == 1, what="restarted")
        wait_until(lambda: _gone(left), 10, "the old kernel's child reaped", interval=0.1)
    finally:
        kc.stop_channels()


def test_a_slow_start_is_waited_for_while_the_kernel_works(launch):
    """Not answering within the ready timeout while using CPU is a slow start (a busy node),
    not a hang: the launcher waits, up to MAX_START_WINDOWS timeouts."""
    kernel = launch(["python", "-c", "while True: pass"],
                    **{contract.ENV_READY_TIMEOUT: "1", contract.ENV_MAX_RESTARTS: "0"})
    assert kernel.proc.wait(90) == contract.EXIT_GAVE_UP
    text = kernel.log.read_text()
    assert text.count("but is still working") == supervisor.MAX_START_WINDOWS
    assert "did not answer within 10s; killing it" in text


def test_a_kernel_that_hangs_without_cpu_is_killed_after_one_timeout(launch):
    kernel = launch(["python", "-c", "import time; time.sleep(600)"],
                    **{contract.ENV_READY_TIMEOUT: "1", contract.ENV_MAX_RESTARTS: "0"})
    assert kernel.proc.wait(90) == contract.EXIT_GAVE_UP
    text = kernel.log.read_text()
    assert text.count("still working") <= 1  # the interpreter's own start is work
    assert "did not answer and used no CPU for 1s; killing it" in text


# A real ipykernel that replies to shutdown_request and then never exits (as ipykernel's own
# close was seen to hang in kernel Pods): it sleeps in an exit hook.
HANGS_ON_EXIT = ["python", "-c",
                 "import atexit, sys, time; atexit.register(time.sleep, 600); "
                 "from ipykernel import kernelapp; kernelapp.launch_new_instance()",
                 "-f", "{connection_file}"]


def test_a_kernel_that_hangs_after_its_shutdown_reply_is_killed_and_restarted(launch):
    kernel = launch(HANGS_ON_EXIT)
    first = kernel.wait(lambda s: s["ready"], what="ready")
    kc = kernel.client()
    try:
        t0 = time.monotonic()
        kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": True}))
        assert kc.control_channel.get_msg(timeout=30)["content"]["restart"] is True
        st = kernel.wait(lambda s: s["ready"] and s["restarts"] == 1, timeout=60,
                         what="restarted after the hang")
        took = time.monotonic() - t0
        assert st["pid"] != first["pid"]
        # A restart the client asked for, not a crash, even though the process was killed.
        assert st["lastRestart"]["reason"] == "requested"
        assert took < 30, took
    finally:
        kc.stop_channels()
    assert "replied to shutdown but did not exit" in kernel.log.read_text()
