"""JupyterLab 4 in a real browser, through jupyter_server with kernelkeeper.lab, in front of two
active-active gateway replicas: the replica serving the notebook's kernel is SIGKILLed twice,
once right before a cell is run and once in the middle of a streaming cell. The user never
sees a dialog or a dead kernel, a cell run within 0.5 s of the kill shows its output, and the
streaming cell shows every line once, in order.

Chromium is Debian's (`make test` installs it); a failing run leaves `failure.png` in the
test's tmp folder.
"""

from __future__ import annotations

import time

import nbformat
import pytest

from tests.ha.test_nothing_lost import streaming_cell
from tests.lab.browser import Lab, lab_args, screenshots_on_failure, start_chromium
from tests.lab.test_failover import WITH_LAB, kill, the_serving_replica

pytestmark = pytest.mark.timeout(600)

STREAM_LINES, STREAM_EVERY = 40, 0.25  # 10 s of output, as a user's progress loop prints it
CELLS = [
    "ran = []\nx = 41",
    "ran.append('after kill')\nprint(x + 1)",
    streaming_cell(STREAM_LINES, STREAM_EVERY),
    "print(ran, x)",
]


def write_notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbformat.write(nb, str(path))


@pytest.fixture
def chromium():
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def test_jupyterlab_runs_through_replica_kills(fleet, jupyter_servers, chromium, tmp_path):
    f = fleet(2)
    js = jupyter_servers(f.url, extra=WITH_LAB + lab_args(tmp_path / "lab-settings"))
    write_notebook(js.root / "failover.ipynb")
    lab = Lab(chromium, tmp_path)
    with screenshots_on_failure(lab):
        lab.open(f"{js.url}/lab/tree/failover.ipynb?token={js.token}", cells=len(CELLS))
        lab.run(0)
        lab.wait(lambda: lab.done(0), 120, "the first cell")

        # A cell run right after the serving replica died (the user's cursor was in it).
        lab.focus(1)
        victim = the_serving_replica(f)
        kill(victim)
        t_kill = time.monotonic()
        lab.shift_enter()
        run_after = time.monotonic() - t_kill
        lab.wait(lambda: lab.output(1).strip() == "42", 90, "the output of the cell run after the kill")
        shown_after = time.monotonic() - t_kill
        print(f"\n[browser] cell run {run_after:.2f}s after SIGKILL of the serving replica; "
              f"its output shown {shown_after:.2f}s after the kill")
        assert run_after < 0.5, f"the cell was run {run_after:.2f}s after the kill, not within 0.5s"
        lab.wait(lambda: lab.done(1), 30, "the cell's execution count")
        f.restart(victim)

        # The serving replica dies 3 s into a cell that prints a line every 0.25 s.
        lab.run(2)
        lab.wait(lambda: "line 11" in lab.output(2), 60, "the streaming cell under way")
        victim = the_serving_replica(f)
        kill(victim)
        t_kill = time.monotonic()
        lab.wait(lambda: lab.done(2), 120, "the streaming cell finished")
        print(f"[browser] streaming cell finished {time.monotonic() - t_kill:.2f}s after "
              "SIGKILL of the serving replica")
        lines = lab.output(2).splitlines()
        assert lines == [f"line {i}" for i in range(STREAM_LINES)], lines

        lab.run(3)
        lab.wait(lambda: lab.done(3), 60, "the last cell")
        assert lab.output(3).strip() == "['after kill'] 41", "the cell ran once, the kernel kept x"
        lab.sample()
        assert lab.dialogs == [], f"the user was shown a dialog: {lab.dialogs}"
        assert set(lab.statuses) <= {"Idle", "Busy"}, f"the status bar showed {lab.statuses}"
