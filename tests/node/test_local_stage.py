"""`kernelkeeper local up --detach` starts the process node; `local status --json` reports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kubernetes import client, config

from tests.node.helpers import PY, condition, pid_alive, pod_manifest, wait_for, wait_ready


def _kk(*args: str, state_dir, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kernelkeeper", "local", "--state-dir",
                           str(state_dir), *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), check=False)


def test_local_up_starts_a_ready_node_and_status_reports_it(tmp_path):
    state = tmp_path / "local"
    pid = None
    try:
        up = _kk("up", "--detach", state_dir=state)
        assert up.returncode == 0, up.stderr
        st = _kk("status", "--json", state_dir=state)
        status = json.loads(st.stdout)
        node = status["components"]["node"]
        assert node["running"] is True
        assert node["node_name"] == "kernelkeeper-local"
        assert pid_alive(node["pid"])

        api = config.new_client_from_config(config_file=status["kubeconfig"])
        core = client.CoreV1Api(api)
        obj = core.read_node("kernelkeeper-local")
        assert {c.type: c.status for c in obj.status.conditions}["Ready"] == "True"
        # A pod runs there, and `local down` stops it with the node.
        core.create_namespaced_pod("default", pod_manifest("hello", [{
            "name": "c", "image": "python:3.11",
            "command": [PY, "-c", "import time\nwhile True: time.sleep(1)"]}]))
        pod = wait_ready(core, "default", "hello")
        assert condition(pod, "Ready") == "True"
        records = list((state / "node" / "pods").glob("*.json"))
        pid = json.loads(records[0].read_text())["containers"]["c"]["pid"]
        assert pid_alive(pid)
    finally:
        down = _kk("down", state_dir=state)
    assert down.returncode == 0, down.stderr
    assert pid is not None
    wait_for(lambda: not pid_alive(pid), 30, what="the pod to stop with the environment")

