"""`stop` ends a component's whole session: nothing it started outlives `local down`."""

from __future__ import annotations

import sys
import textwrap

from kernelkeeper import procstat
from kernelkeeper.local.processes import spawn, stop
from tests.helpers import wait_until

# A leader that exits on SIGTERM and leaves a child behind, as a supervisor did when the signal
# came while it was starting a new child (the child never got the forwarded signal).
LEADER = textwrap.dedent("""
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print(child.pid, flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    time.sleep(300)
""")


def test_stop_kills_what_the_leader_left_in_its_session(tmp_path) -> None:
    log = tmp_path / "leader.log"
    record, proc = spawn("leader", [sys.executable, "-c", LEADER], log)
    wait_until(lambda: log.read_text().strip(), 20, "the leader's child pid logged", interval=0.05)
    child = int(log.read_text().split()[0])
    assert procstat.read(child) is not None
    assert child in procstat.session_members(record.pid)
    line = stop(record)
    proc.wait(5)
    assert "leftover" in line, line
    gone = procstat.read(child)
    assert gone is None or gone.state in ("Z", "X"), f"child {child} outlived stop(): {line}"
    assert procstat.session_members(record.pid) == []


def test_stop_leaves_a_reused_pid_and_its_session_alone(tmp_path) -> None:
    record, proc = spawn("other", [sys.executable, "-c", "import time; time.sleep(60)"],
                         tmp_path / "other.log")
    try:
        # As if our component had died and its pid now named this unrelated session leader.
        record.start_ticks = (record.start_ticks or 0) - 1
        assert "was not running" in stop(record)
        assert proc.poll() is None, "stop() killed a process that was not ours"
    finally:
        proc.kill()
        proc.wait(10)
