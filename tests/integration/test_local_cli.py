"""`kernelkeeper local` driven as a user would: up --detach, status --json, kubectl, down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kernelkeeper.local import build
from kernelkeeper.local.processes import pid_running
from tests.helpers import kk_local


def test_local_up_status_kubectl_down(tmp_path):
    state = tmp_path / "env"
    down = kk_local("down", state=state)
    assert down.returncode == 1 and "nothing to stop" in down.stderr
    assert "Traceback" not in down.stderr

    up = kk_local("up", "--detach", "--control-plane-only", state=state)
    try:
        assert up.returncode == 0, up.stderr
        assert "export KUBECONFIG=" in up.stdout

        st = kk_local("status", "--json", state=state)
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)
        comps = status["components"]
        assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} <= set(comps)
        for c in comps.values():
            assert c["running"] and c["pid"] > 0 and Path(c["log"]).is_file()
        assert comps["kube-apiserver"]["ports"]["secure"] > 0

        kubectl = subprocess.run(
            [str(build.binary("kubectl")), "--kubeconfig", status["kubeconfig"], "get", "ks", "-A"],
            capture_output=True, text=True, timeout=60, check=False)
        assert kubectl.returncode == 0, kubectl.stderr
        assert "No resources found" in kubectl.stderr

        again = kk_local("up", "--detach", "--control-plane-only", state=state)
        assert again.returncode == 1 and "already up" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        stopped = kk_local("down", state=state)
    assert stopped.returncode == 0, stopped.stderr
    pids = [c["pid"] for c in comps.values()]
    for name in comps:
        assert f"stopped {name}" in stopped.stderr or f"killed {name}" in stopped.stderr
    assert [p for p in pids if pid_running(p)] == []
    assert kk_local("status", "--json", state=state).returncode == 1
