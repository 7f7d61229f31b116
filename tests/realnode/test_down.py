"""`local up` with the real node and `local down` leave the machine exactly as they found it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernelkeeper import procstat
from kernelkeeper.local.realnode import layout as L
from tests.fixtures.jupyter import start_jupyter_server, stop_jupyter_server
from tests.gateway.client import KernelWS, http
from tests.realnode.hoststate import host_state, our_processes

pytestmark = [pytest.mark.timeout(900), pytest.mark.own_environment]


def _assert_same(before: dict, after: dict) -> None:
    for key in before:
        assert after[key] == before[key], f"{key} changed across up/down:\n" \
            f"before: {before[key]}\nafter:  {after[key]}"
    assert L.BRIDGE not in str(after["links"])


def test_up_and_down_leave_nothing_behind(tmp_path: Path) -> None:
    before = host_state()
    # What an environment killed before `local down` leaves: its bridge, and no node running.
    subprocess.run(["ip", "link", "add", L.BRIDGE, "type", "bridge"], check=True)
    state = tmp_path / "env"
    cli = [sys.executable, "-m", "kernelkeeper", "local", "--state-dir", str(state)]
    up = subprocess.run([*cli, "up", "--detach", "--deploy", "processes", "--replicas", "2"], capture_output=True,
                        text=True, timeout=600, check=False)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        assert f"earlier node not stopped: removed {L.BRIDGE}" in up.stderr, up.stderr[-4000:]
        status = json.loads(subprocess.run([*cli, "status", "--json"], capture_output=True,
                                           text=True, check=True).stdout)
        url = status["gateway_url"]
        code, model = http("POST", f"{url}/api/kernels", {"name": "python3"}, timeout=180)
        assert code == 201, model
        ws = KernelWS(url.replace("http://", "ws://"), model["id"])
        reply, out, _ = ws.execute("print(6 * 7)")
        ws.close()
        assert out.strip() == "42"
        assert our_processes(state), "nothing of the environment seems to run"
        # Catch a supervisor in the middle of restarting its gateway: the stop must still end it.
        gw = status["components"]["gateway-1"]
        children = [p for p in procstat.session_members(gw["pid"]) if p != gw["pid"]]
        assert children, "the supervised gateway has no child"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.05)  # the supervisor's first back-off is 1 s: it is starting a new child
    finally:
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=300,
                              check=False)
    assert down.returncode == 0, down.stderr[-4000:]
    print(down.stderr)
    left = our_processes(state)
    assert not left, "processes outlived `local down`:\n" + "\n".join(left)
    _assert_same(before, host_state())


def test_make_run_serves_jupyter_server_and_down_leaves_nothing(tmp_path: Path) -> None:
    """What `make run` does (the chart, operator and gateways as Pods), then jupyter_server
    pointed at the printed URL and token runs a cell, then `local down`."""
    before = host_state()
    state = tmp_path / "env"
    cli = [sys.executable, "-m", "kernelkeeper", "local", "--state-dir", str(state)]
    up = subprocess.run([*cli, "up", "--detach", "--availability-mode", "active-active"],
                        capture_output=True, text=True, timeout=600, check=False)
    js = None
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        lines = dict(line.split(": ", 1) for line in up.stdout.splitlines()
                     if line.startswith(("Gateway URL: ", "Gateway token: ")))
        url, token = lines["Gateway URL"], lines["Gateway token"]
        assert f"jupyter lab --gateway-url={url} --GatewayClient.auth_token={token}" in up.stdout
        status = json.loads(subprocess.run([*cli, "status", "--json"], capture_output=True,
                                           text=True, check=True).stdout)
        assert "gateway" not in status["components"], "the gateways must be Pods, not processes"
        js = start_jupyter_server(url, token, tmp_path / "js")
        code, session = http("POST", f"{js.url}/api/sessions",
                             {"path": "nb.ipynb", "name": "nb.ipynb", "type": "notebook",
                              "kernel": {"name": "python3"}}, token=js.token, timeout=180)
        assert code == 201, session
        ws = KernelWS(js.ws_url, session["kernel"]["id"], token=js.token)
        try:
            reply, out, _ = ws.execute("import socket; print('cell ran in', socket.gethostname())")
        finally:
            ws.close()
        assert reply["content"]["status"] == "ok" and out.startswith("cell ran in kernel-"), out
    finally:
        if js is not None:
            stop_jupyter_server(js)
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=300,
                              check=False)
    assert down.returncode == 0, down.stderr[-4000:]
    left = our_processes(state)
    assert not left, "processes outlived `local down`:\n" + "\n".join(left)
    _assert_same(before, host_state())
