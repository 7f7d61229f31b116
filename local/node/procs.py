"""Host processes for containers: start, watch and kill, for children and adopted ones alike.

Every container runs in its own session (so its process group id is its pid) and is named by
(pid, start time in clock ticks): a pid alone may be recycled after the node restarts.
Exits are noticed through a pidfd registered with the event loop, so hundreds of pods need no
thread each; where pidfds are unavailable the node falls back to polling /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernelkeeper.local.processes import pid_running, start_ticks

POLL_INTERVAL = 1.0


def alive(pid: int, ticks: int | None) -> bool:
    """True only while `pid` still names the process started at `ticks` and is not a zombie.

    Without a start time the pid cannot be told apart from a recycled one: not alive.
    """
    return pid > 1 and ticks is not None and pid_running(pid, ticks)


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False if no process is left in it."""
    if pgid <= 1:
        # killpg(0) is our own group and killpg(1) is kill(-1), every process: never.
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


@dataclass
class Exit:
    code: int | None  # None: the process was not our child, its exit code is unknown
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """The kubelet's convention: 128 + signal for a killed process; 137 when unknown."""
        if self.signal:
            return 128 + self.signal
        return 137 if self.code is None else self.code


class Process:
    """A container process: our child (Popen) or one adopted after a node restart."""

    def __init__(self, pid: int, ticks: int | None, popen: subprocess.Popen[bytes] | None = None):
        self.pid = pid
        self.ticks = ticks
        self.popen = popen

    @classmethod
    def spawn(cls, argv: list[str], *, env: dict[str, str], cwd: str, log: Path,
              nice: int = 0, before_exec: Callable[[], None] | None = None) -> Process:
        """Start a container process in a session of its own, at the given niceness, after
        `before_exec` ran in the child (joining the pod's cgroup)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        nice_bin = shutil.which("nice") if nice > 0 else None
        # nice(1) execs the command, so the pid is the container's and its children inherit
        # the weight from their first instruction on.
        full = [nice_bin, "-n", str(nice), *argv] if nice_bin else argv
        with log.open("ab") as out:
            popen = subprocess.Popen(full, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True,
                                     preexec_fn=before_exec)
        if nice > 0 and not nice_bin:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, popen.pid, nice)
        return cls(popen.pid, start_ticks(popen.pid), popen)

    @property
    def adopted(self) -> bool:
        return self.popen is None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return alive(self.pid, self.ticks)

    def _exit(self) -> Exit:
        if self.popen is not None:
            rc = self.popen.wait()
            return Exit(None, -rc) if rc < 0 else Exit(rc)
        return Exit(None)

    async def wait(self) -> Exit:
        """Wait for the process to end without a thread: pidfd if possible, else /proc polls."""
        loop = asyncio.get_running_loop()
        fd = None
        with contextlib.suppress(OSError, AttributeError):
            fd = os.pidfd_open(self.pid)
        if fd is not None and self.alive():
            done: asyncio.Future[None] = loop.create_future()

            def _ready() -> None:
                if not done.done():
                    done.set_result(None)

            loop.add_reader(fd, _ready)
            try:
                # The pid may have been recycled between alive() and pidfd_open().
                if self.alive():
                    await done
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        else:
            if fd is not None:
                os.close(fd)
            while self.alive():
                await asyncio.sleep(POLL_INTERVAL)
        if self.popen is None:
            # Not our child: wait until the pid no longer names the process.
            while alive(self.pid, self.ticks):
                await asyncio.sleep(0.05)
        return self._exit()

    def signal(self, sig: int) -> None:
        """Signal the container's process group (the whole container) while its leader lives.

        Once the leader is gone its pid (the group id) may be recycled, so a group is only
        signalled while the leader provably exists: unreaped child, or pid + start time match.
        Stray members left behind are killed by kill_leftovers() right when the leader exits.
        """
        if self.popen is not None:
            if self.popen.returncode is not None or self.popen.poll() is not None:
                return
        elif not alive(self.pid, self.ticks):
            return
        signal_group(self.pid, sig)

    def kill_leftovers(self) -> None:
        """After the leader exits, stray members of its group die with it, as in a container."""
        signal_group(self.pid, signal.SIGKILL)
