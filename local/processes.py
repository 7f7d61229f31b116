"""Start, record and stop the local environment's processes.

Each process is recorded (pid, start time from /proc, command, ports, log file) so that `down`
stops exactly what `up` started and never a recycled pid that now belongs to someone else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kernelkeeper import procstat


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_ticks(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot: with the pid, names one process."""
    stat = procstat.read(pid)
    return stat.start_ticks if stat else None


def pid_running(pid: int, start_ticks: int | None = None) -> bool:
    """Alive, not a zombie, and (when given) still the process that started at `start_ticks`."""
    stat = procstat.read(pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return start_ticks is None or stat.start_ticks == start_ticks


@dataclass
class ProcessRecord:
    name: str
    pid: int
    cmd: list[str]
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    start_ticks: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        """True only if the pid still names the very process we started."""
        return pid_running(self.pid, self.start_ticks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(**data)


def spawn(
    name: str,
    cmd: list[str],
    log: Path,
    *,
    ports: dict[str, int] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    detach: bool = False,
) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
    """Start `cmd` with stdout and stderr appended to `log`.

    Every process gets its own session so that a terminal's Ctrl-C reaches only the runner,
    which then stops the components in order; `detach` only changes who waits for it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    record = ProcessRecord(
        name=name,
        pid=proc.pid,
        cmd=list(cmd),
        log=str(log),
        ports=dict(ports or {}),
        start_ticks=start_ticks(proc.pid),
    )
    return record, proc


def stop(record: ProcessRecord, *, timeout: float = 10.0) -> str:
    """SIGTERM, wait, then SIGKILL; then whatever is left of its session. Returns what happened.

    Each component runs in a session of its own (spawn), so the session names everything it
    started: a supervisor's child that was being restarted when the SIGTERM came, and so never
    got it, is found and killed here instead of outliving `down`.
    """
    if not record.alive():
        return _stop_session(record, f"{record.name} (pid {record.pid}) was not running")
    line = _stop_leader(record, timeout)
    return _stop_session(record, line)


def _stop_session(record: ProcessRecord, line: str) -> str:
    leader = procstat.read(record.pid)
    if record.start_ticks is None or (leader is not None and leader.state not in ("Z", "X")
                                      and leader.start_ticks != record.start_ticks):
        # The pid now names another process, so its session is not ours to end.
        return line
    left = procstat.session_members(record.pid)
    if not left:
        return line
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        for pid in left:
            _reap(pid)
        if not procstat.session_members(record.pid):
            break
        time.sleep(0.05)
    return f"{line}; killed {len(left)} leftover process(es) of its session"


def _stop_leader(record: ProcessRecord, timeout: float) -> str:
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.alive():
            return f"stopped {record.name} (pid {record.pid})"
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    for _ in range(100):
        _reap(record.pid)
        if not record.alive():
            break
        time.sleep(0.05)
    return f"killed {record.name} (pid {record.pid}) after {timeout:.0f}s"


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
