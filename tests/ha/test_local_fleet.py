"""`kernelkeeper local up --replicas 2 --availability-mode active-passive`, driven as a user would:
one URL (nginx), one serving replica, and a replica that is killed comes back as a standby."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from kernelkeeper.local.processes import pid_running
from tests.gateway.client import KernelWS, http
from tests.helpers import http_status, kk_local, seconds_until, wait_until


def _child(pid: int) -> int:
    """The supervised component under its supervisor."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.own_environment
def test_local_fleet_active_passive(tmp_path):
    state = tmp_path / "local"
    try:
        up = kk_local("up", "--detach", "--deploy", "processes", "--replicas", "2", "--availability-mode", "active-passive",
                 state=state, timeout=600)
        assert up.returncode == 0, up.stderr[-3000:]
        status = json.loads(kk_local("status", "--json", state=state).stdout)
        url = status["gateway_url"]
        assert f"Gateway URL: {url}" in up.stdout
        comps = status["components"]
        assert {"gateway", "gateway-1", "nginx", "operator", "containerd", "kubelet",
                "kube-proxy"} <= set(comps)
        assert url.endswith(str(comps["nginx"]["ports"]["http"]))

        replicas = {name: f"http://127.0.0.1:{comps[name]['ports']['http']}"
                    for name in ("gateway", "gateway-1")}
        wait_until(lambda: sorted(http_status(f"{u}/readyz") for u in replicas.values())
                   == [200, 503], 60, "one active, one standby")
        active = next(n for n, u in replicas.items() if http_status(f"{u}/readyz") == 200)
        standby = next(n for n in replicas if n != active)

        code, model = http("POST", f"{url}/api/kernels", {"name": "python3"})
        assert code == 201, model
        ws = KernelWS(url.replace("http", "ws", 1), model["id"])
        try:
            assert ws.execute("y = 7")[0]["content"]["status"] == "ok"
        finally:
            ws.close()

        victim = _child(comps[active]["pid"])
        os.kill(victim, signal.SIGKILL)
        took = seconds_until(lambda: http_status(f"{replicas[standby]}/readyz") == 200, 30,
                             "the standby takes over")
        print(f"\n[ha] local fleet: standby serving {took:.2f}s after SIGKILL of the holder")
        # The supervisor brings the killed slot back, as a standby this time.
        wait_until(lambda: http_status(f"{replicas[active]}/healthz") == 200
                   and _child(comps[active]["pid"]) != victim, 60, "the killed replica is back")
        assert http_status(f"{replicas[active]}/readyz") == 503

        ws = KernelWS(url.replace("http", "ws", 1), model["id"])
        try:
            _, out, _ = ws.execute("print(y * 6)")
        finally:
            ws.close()
        assert out.strip() == "42"
    finally:
        down = kk_local("down", state=state)
    assert down.returncode == 0, down.stderr
    time.sleep(0.5)
    assert [name for name, c in comps.items() if pid_running(c["pid"])] == []
