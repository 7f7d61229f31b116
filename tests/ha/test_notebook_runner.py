"""Notebook runners through a gateway failover: nbclient and papermill with kernelkeeper's own
kernel manager (kernelkeeper.client.manager.GatewayKernelManager).

A notebook defines a variable, streams numbered lines for a few seconds, then reads the
variable back. While the second cell streams, the replica serving it is SIGKILLed (or, in
active-passive, the Lease holder). The notebook must complete with every line once, in order,
and the variable intact.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import nbformat
import papermill
import pytest
from nbclient import NotebookClient

from kernelkeeper.client.manager import GatewayKernelManager
from tests.ha.conftest import Fleet, websockets_open
from tests.helpers import wait_until

LINES = 40


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("x = 41"),
        nbformat.v4.new_code_cell(f"import time\nfor i in range({LINES}):\n"
                                  "    print(f'line {i}', flush=True)\n    time.sleep(0.1)"),
        nbformat.v4.new_code_cell("print(x + 1)"),
    ]
    return nb


def _stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")


def _lines(cell: nbformat.NotebookNode) -> list[int]:
    return [int(line.split()[1]) for line in _stream_text(cell).splitlines()
            if line.startswith("line ")]


def _kill_when_streaming(fleet: Fleet, nb: nbformat.NotebookNode, pick,
                         killed: list[float]) -> threading.Thread:
    """Once the streaming cell has printed a few lines, SIGKILL the replica `pick` names and
    note how many lines had arrived by then."""
    def run() -> None:
        wait_until(lambda: len(_lines(nb.cells[1])) >= 5, 120, "the cell streaming",
                   interval=0.05)
        victim = pick(fleet)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        killed.append(len(_lines(nb.cells[1])))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _serving(fleet: Fleet):
    (serving,) = [g for g in fleet.replicas if g.alive() and websockets_open(g) > 0]
    return serving


def _holder(fleet: Fleet):
    (holder,) = fleet.active()
    return holder


def _check(nb: nbformat.NotebookNode) -> None:
    got = _lines(nb.cells[1])
    assert got == list(range(LINES)), f"every line once, in order: {got}"
    assert _stream_text(nb.cells[2]).strip() == "42", "the kernel kept its state"
    assert all(o.get("output_type") != "error" for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("mode", ["active-active", "active-passive"])
@pytest.mark.timeout(300)
def test_nbclient_runs_a_notebook_through_a_replica_kill(fleet, mode):
    lease = ({"KERNELKEEPER_GATEWAY_LEASE_DURATION": "6",
              "KERNELKEEPER_GATEWAY_RENEW_DEADLINE": "4",
              "KERNELKEEPER_GATEWAY_RETRY_PERIOD": "1"} if mode == "active-passive" else {})
    f = fleet(2, mode, **lease)
    if mode == "active-passive":
        wait_until(lambda: len(f.active()) == 1, 60, "one Lease holder")
    nb = _notebook()
    km = GatewayKernelManager(kernel_name="python3", gateway_url=f.url)
    killed: list[float] = []
    killer = _kill_when_streaming(f, nb, _serving if mode == "active-active" else _holder,
                                  killed)
    t0 = time.monotonic()
    NotebookClient(nb, km=km, timeout=120, startup_timeout=120).execute()
    killer.join(10)
    assert killed and killed[0] < LINES, f"the kill came mid-cell: {killed}"
    print(f"\n[notebook] nbclient, {mode}: replica killed after line {killed[0]}; notebook "
          f"completed in {time.monotonic() - t0:.1f}s")
    _check(nb)


@pytest.mark.timeout(300)
def test_papermill_runs_a_notebook_through_a_replica_kill(fleet, tmp_path: Path, monkeypatch):
    f = fleet(2)
    monkeypatch.setenv("JUPYTER_GATEWAY_URL", f.url)
    source, output = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(_notebook(), source)
    done = threading.Event()
    seen: list[nbformat.NotebookNode] = []

    def kill_mid_cell() -> None:
        # papermill writes the output notebook as cells progress: read it to see the stream.
        def streaming() -> bool:
            if done.is_set() or not output.exists():
                return done.is_set()
            try:
                nb = nbformat.read(output, as_version=4)
            except Exception:  # noqa: BLE001 - being written right now
                return False
            return len(_lines(nb.cells[1])) >= 5

        wait_until(streaming, 120, "the cell streaming", interval=0.05)
        if not done.is_set():
            victim = _serving(f)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            seen.append(victim)

    killer = threading.Thread(target=kill_mid_cell, daemon=True)
    killer.start()
    try:
        papermill.execute_notebook(
            str(source), str(output), kernel_name="python3", progress_bar=False,
            request_save_on_cell_execute=True, autosave_cell_every=1,
            kernel_manager_class="kernelkeeper.client.manager.GatewayKernelManager")
    finally:
        done.set()
        killer.join(10)
    assert seen, "the replica was killed while the notebook ran"
    _check(nbformat.read(output, as_version=4))
