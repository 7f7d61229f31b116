"""Run ipykernel in the Pod and keep it running: restart in place, or end on a plain shutdown.

Restart versus shutdown: ipykernel exits with status 0 for both ``shutdown_request`` flavours,
but first publishes the ``shutdown_reply`` (with ``restart``) on iopub under a topic ending in
``.shutdown``. The supervisor stays subscribed to iopub, so it sees which one it was no matter
whether the request came over control or shell. An exit without a plain-shutdown reply is a
crash (including a lost reply): the kernel is restarted, which is the safe side to err on.

Readiness means a client can execute now: the kernel answered ``kernel_info`` on control *and*
its iopub status reached the journal (so nothing it publishes from then on goes unrecorded);
afterwards the heartbeat keeps it true.

The kernel binds loopback ports only: the launcher's relays (relay.py) own the Pod's kernel
ports, and its journal service (journal_service.py) records what the kernel sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session

from kernelkeeper import procstat
from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract
from kernelkeeper.kernel.activity import ExecutionTracker
from kernelkeeper.kernel.config import LauncherConfig, kernel_command, kernel_env
from kernelkeeper.kernel.journal import Journal
from kernelkeeper.kernel.journal_service import JournalService
from kernelkeeper.kernel.relay import Relay
from kernelkeeper.kernel.report_server import serve as serve_reports

log = logging.getLogger("kernelkeeper.kernel")

# Outcomes of one kernel process.
SHUTDOWN = "shutdown"
RESTART = "restart"
CRASH = "crash"
STOPPED = "stopped"


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the launcher dies, so no kernel outlives its Pod."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


MAX_START_WINDOWS = 10
DELIM = b"<IDS|MSG>"


def _cpu_ticks(pid: int) -> int | None:
    stat = procstat.read(pid)
    return stat.cpu_ticks if stat else None


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Supervisor:
    def __init__(
        self,
        cfg: LauncherConfig,
        runtime_dir: Path,
        *,
        environ: Mapping[str, str],
        ready_timeout: float = 60.0,
        hb_interval: float = 2.0,
        hb_failures: int = 3,
        shutdown_grace: float = 3.0,
        stable_after: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.cfg = cfg
        self.runtime_dir = runtime_dir
        self.environ = dict(environ)
        self.ready_timeout = ready_timeout
        self.hb_interval = hb_interval
        self.hb_failures = hb_failures
        self.shutdown_grace = shutdown_grace
        self._reaped = False
        self.stable_after = stable_after
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.session = Session(key=cfg.key.encode(), signature_scheme="hmac-sha256",
                               username="kernelkeeper-launcher")
        self.ctx = zmq.asyncio.Context()
        self.ready = False
        self.state = "starting"
        self.restarts = 0
        self.pid: int | None = None
        self.started_at: str | None = None
        self.last_restart: dict[str, Any] | None = None
        self._stop = asyncio.Event()
        self._shutdown_reply: dict[str, Any] | None = None
        self._shutdown_seen = asyncio.Event()
        self._iopub_alive = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self.execution = ExecutionTracker()
        self.journal = Journal(cfg.journal_max_messages, cfg.journal_max_bytes)
        # The kernel listens on loopback only; the relays own the Pod's ports (relay.py).
        self.kernel_ip = "127.0.0.1"
        self.kernel_ports = {ch: _free_loopback_port() for ch in crd.CHANNELS}

    # ------------------------------------------------------------------ public

    def status(self) -> dict[str, Any]:
        return {
            "kernelId": self.cfg.kernel_id,
            "ready": self.ready,
            "state": self.state,
            "restarts": self.restarts,
            "pid": self.pid,
            "startedAt": self.started_at,
            "lastRestart": self.last_restart,
            **self.execution.status(),
            "journal": self.journal.stats(),
        }

    def request_stop(self) -> None:
        self._stop.set()

    def _kernel_address(self, channel: str) -> str:
        return f"tcp://{self.kernel_ip}:{self.kernel_ports[channel]}"

    async def run(self) -> int:
        conn_file = self.cfg.write_connection_file(self.runtime_dir, self.kernel_ip,
                                                   self.kernel_ports)
        cmd = kernel_command(self.cfg.argv, conn_file)
        env = kernel_env(self.environ)
        service = JournalService(
            self.journal, self.session, self.ctx, kernel_iopub=self._kernel_address("iopub"),
            public=f"tcp://{self.cfg.ip}:{self.cfg.journal_port}", on_iopub=self.on_iopub,
            curve=self.cfg.curve)
        relay = Relay()
        try:
            relay.start(self.cfg.ip, self.cfg.ports, self.kernel_ip, self.kernel_ports,
                        service.copies_address, self.cfg.curve)
        except BaseException:
            service.close()
            raise
        try:
            reports = await serve_reports(self.cfg.ip, self.cfg.report_port, self.journal,
                                          self.cfg.key.encode())
        except BaseException:
            relay.stop()
            service.close()
            raise
        watcher = asyncio.create_task(service.run())
        crash_streak = 0
        try:
            while not self._stop.is_set():
                self._shutdown_reply = None
                self._shutdown_seen.clear()
                self._iopub_alive.clear()
                self.execution.restarted()
                began = time.monotonic()
                outcome, detail = await self._run_once(cmd, env)
                if outcome in (STOPPED, SHUTDOWN):
                    self.state = "stopped"
                    log.info("kernel %s ended: %s", self.cfg.kernel_id, detail)
                    return contract.EXIT_SHUTDOWN if outcome == SHUTDOWN else contract.EXIT_STOPPED
                if outcome == RESTART:
                    crash_streak = 0
                    self._count_restart("requested", detail)
                    continue
                if time.monotonic() - began > self.stable_after:
                    crash_streak = 0
                crash_streak += 1
                if crash_streak > self.cfg.max_crash_restarts:
                    self.state = "failed"
                    log.error("kernel %s crashed %d times in a row (%s); giving up",
                              self.cfg.kernel_id, crash_streak, detail)
                    return contract.EXIT_GAVE_UP
                delay = min(self.backoff_max, self.backoff_base * 2 ** (crash_streak - 1))
                self._count_restart("crashed", f"{detail}; restarting in {delay:.1f}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            self.state = "stopped"
            return contract.EXIT_STOPPED
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            reports.close()
            relay.stop()
            service.close()
            conn_file.unlink(missing_ok=True)
            self.ctx.destroy(linger=0)

    # ------------------------------------------------------------------ one kernel process

    def _count_restart(self, why: str, detail: str) -> None:
        self.restarts += 1
        self.state = "restarting"
        self.last_restart = {"reason": why, "detail": detail, "at": crd.format_time(micro=True)}
        log.warning("kernel %s restarting in place (%s: %s); restarts=%d",
                    self.cfg.kernel_id, why, detail, self.restarts)

    async def _run_once(self, cmd: list[str], env: dict[str, str]) -> tuple[str, str]:
        self.ready = False
        self.state = "starting"
        # Its own process group, as jupyter_client does it: an interrupt (SIGINT to the group)
        # then reaches the processes user code started, and a restart can reap them.
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, preexec_fn=_die_with_parent,
                                                    start_new_session=True)
        self._proc, self.pid = proc, proc.pid
        log.info("kernel %s started: pid %d, %s", self.cfg.kernel_id, proc.pid, " ".join(cmd))
        health = asyncio.create_task(self._health(proc))
        reaper = asyncio.create_task(self._reap_after_shutdown(proc))
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (health, reaper, stopping):
                task.cancel()
            for task in (health, reaper):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.ready = False
        if not exited.done():
            await self._terminate(proc)
            return STOPPED, "the launcher was asked to stop"
        rc = exited.result()
        _kill_group(proc.pid)  # whatever the old kernel left behind must not outlive it
        if rc == 0 and self._shutdown_reply is None:
            # The reply is published just before exit; give the subscriber a moment to read it.
            deadline = time.monotonic() + 1.0
            while self._shutdown_reply is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        reply = self._shutdown_reply
        # Killed by the reaper after it replied: the client's request decides, not the signal.
        if reply is not None and (rc == 0 or self._reaped):
            if reply.get("restart"):
                return RESTART, "shutdown_request with restart=true"
            return SHUTDOWN, "shutdown_request without restart"
        return CRASH, f"kernel process exited with status {rc}"

    async def _reap_after_shutdown(self, proc: asyncio.subprocess.Process) -> None:
        """A kernel that replied to shutdown_request but does not exit is killed, as
        jupyter_client does after its shutdown_wait_time.

        ipykernel can hang in its own close: seen in kernel Pods, the control thread blocked
        sending a warning to an iopub thread that had already stopped, after an interrupt and
        a restart. Without this the restart never completed and the client waited it out.
        """
        self._reaped = False
        await self._shutdown_seen.wait()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), self.shutdown_grace)
        except TimeoutError:
            log.warning("kernel %s replied to shutdown but did not exit within %.0fs; killing it",
                        self.cfg.kernel_id, self.shutdown_grace)
            self._reaped = True
            _kill_group(proc.pid)

    async def _terminate(self, proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            pass
        _kill_group(proc.pid)
        await proc.wait()

    # ------------------------------------------------------------------ readiness

    async def _health(self, proc: asyncio.subprocess.Process) -> None:
        if not await self._wait_until_answers(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return
        self.ready, self.state = True, "ready"
        self.started_at = crd.format_time(micro=True)
        log.info("kernel %s ready on %s", self.cfg.kernel_id, self.cfg.ip)
        await self._heartbeat()

    async def _wait_until_answers(self, pid: int) -> bool:
        """True once kernel_info is answered. A kernel that has not answered within the ready
        timeout but used CPU meanwhile is slow, not hung: 200 kernels starting at once on 2
        cores take minutes, and killing them only restarted the same work (hundreds of
        restarts in the bench). Only a whole window without CPU time counts as hung, and
        MAX_START_WINDOWS bounds the wait."""
        used = _cpu_ticks(pid)
        for _ in range(MAX_START_WINDOWS):
            if await self._wait_kernel_info():
                return True
            now = _cpu_ticks(pid)
            if now is None or used is None or now <= used:
                log.error("kernel %s did not answer and used no CPU for %.0fs; killing it",
                          self.cfg.kernel_id, self.ready_timeout)
                return False
            log.warning("kernel %s has not answered after %.0fs but is still working "
                        "(%d CPU ticks); waiting", self.cfg.kernel_id, self.ready_timeout,
                        now - used)
            used = now
        log.error("kernel %s did not answer within %.0fs; killing it", self.cfg.kernel_id,
                  MAX_START_WINDOWS * self.ready_timeout)
        return False

    async def _wait_kernel_info(self) -> bool:
        addr = self._kernel_address("control")
        deadline = time.monotonic() + self.ready_timeout
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(addr)
        try:
            answered = False
            while time.monotonic() < deadline:
                if not answered:
                    msg = self.session.msg("kernel_info_request", {})
                    await sock.send_multipart(self.session.serialize(msg))
                    if await sock.poll(1000):
                        frames = await sock.recv_multipart()
                        _, parts = self.session.feed_identities(frames)
                        reply = self.session.deserialize(parts)
                        answered = reply["msg_type"] == "kernel_info_reply"
                        # Each request makes the kernel publish a status; one of them reaching
                        # us proves iopub subscribers are connected as well.
                if answered:
                    try:
                        await asyncio.wait_for(self._iopub_alive.wait(), 0.5)
                        return True
                    except TimeoutError:
                        answered = False  # nudge again, like jupyter_client does
            return False
        finally:
            sock.close(linger=0)

    async def _heartbeat(self) -> None:
        addr = self._kernel_address("hb")
        failures = 0
        sock = None
        try:
            while True:
                if sock is None:
                    sock = self.ctx.socket(zmq.REQ)
                    sock.linger = 0
                    sock.connect(addr)
                await sock.send(b"ping")
                if await sock.poll(int(self.hb_interval * 1000)):
                    await sock.recv()
                    failures = 0
                    if not self.ready:
                        log.info("kernel %s answers its heartbeat again", self.cfg.kernel_id)
                    self.ready, self.state = True, "ready"
                    await asyncio.sleep(self.hb_interval)
                    continue
                # A REQ socket without a reply is stuck: start over with a fresh one.
                sock.close(linger=0)
                sock = None
                failures += 1
                if failures >= self.hb_failures and self.ready:
                    log.warning("kernel %s missed %d heartbeats", self.cfg.kernel_id, failures)
                    self.ready, self.state = False, "unresponsive"
        finally:
            if sock is not None:
                sock.close(linger=0)

    def on_iopub(self, frames: list[bytes]) -> None:
        """One iopub message: liveness, execution state, and the shutdown reply."""
        self._iopub_alive.set()
        try:
            idx = frames.index(DELIM)
            header, parent, content = (json.loads(frames[idx + n]) for n in (2, 3, 5))
        except (ValueError, IndexError):
            return
        msg_type = str(header.get("msg_type", ""))
        self.execution.observe(msg_type, parent or {}, content)
        if msg_type == "shutdown_reply":
            # Only a verified reply may end the kernel: a forged one would stop it for good.
            try:
                _, parts = self.session.feed_identities(frames)
                msg = self.session.deserialize(parts)
            except Exception as exc:
                log.warning("ignoring unverifiable shutdown message: %s", exc)
                return
            self._shutdown_reply = dict(msg["content"])
            self._shutdown_seen.set()
