"""Probes with the spec's periods and thresholds: tcpSocket, exec, liveness restarts."""

from __future__ import annotations

from tests.node.helpers import (
    container,
    container_status,
    create_pod,
    get_pod,
    pod_manifest,
    wait_event,
    wait_for,
    wait_ready,
)

LISTEN_LATER = """
import os, socket, time
time.sleep(2)
s = socket.socket()
s.bind((os.environ["POD_IP"], 9000))
s.listen()
while True:
    time.sleep(1)
"""
POD_IP = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]


def test_tcp_readiness_flips_ready_when_the_port_opens(core, ns):
    c = container("c", LISTEN_LATER, env=POD_IP,
                  readinessProbe={"tcpSocket": {"port": 9000}, "periodSeconds": 1})
    create_pod(core, ns, pod_manifest("tcp", [c]))
    pod = wait_for(lambda: (p := get_pod(core, ns, "tcp")) and container_status(p).get(
        "state", {}).get("running") and p, 60, what="running")
    assert container_status(pod)["ready"] is False  # not before the port is open
    wait_ready(core, ns, "tcp")
    wait_event(core, ns, "tcp", "Unhealthy", "Readiness probe failed")


def test_exec_readiness_follows_a_file(core, ns, tmp_path):
    flag = tmp_path / "ready"
    c = container("c", "import time\nwhile True: time.sleep(1)",
                  readinessProbe={"exec": {"command": ["test", "-e", str(flag)]},
                                  "periodSeconds": 1, "failureThreshold": 1})
    create_pod(core, ns, pod_manifest("exec", [c]))
    wait_event(core, ns, "exec", "Unhealthy", "Readiness probe failed")
    assert container_status(get_pod(core, ns, "exec"))["ready"] is False
    flag.touch()
    wait_ready(core, ns, "exec")
    flag.unlink()
    wait_for(lambda: container_status(get_pod(core, ns, "exec"))["ready"] is False, 30,
             what="unready after the file went away")


def test_failing_liveness_probe_restarts_the_container(core, ns):
    c = container("c", "import time\nwhile True: time.sleep(1)",
                  livenessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1,
                                 "failureThreshold": 2, "terminationGracePeriodSeconds": 1})
    create_pod(core, ns, pod_manifest("live", [c]))
    wait_for(lambda: container_status(get_pod(core, ns, "live")).get("restartCount", 0) >= 1,
             60, what="a restart after liveness failures")
    wait_event(core, ns, "live", "Killing", "failed liveness probe, will be restarted")
    wait_event(core, ns, "live", "Unhealthy", "Liveness probe failed")


def test_startup_probe_gates_started(core, ns, tmp_path):
    flag = tmp_path / "started"
    c = container("c", "import time\nwhile True: time.sleep(1)",
                  startupProbe={"exec": {"command": ["test", "-e", str(flag)]},
                                "periodSeconds": 1, "failureThreshold": 60})
    create_pod(core, ns, pod_manifest("startup", [c]))
    wait_for(lambda: container_status(get_pod(core, ns, "startup") or {}).get(
        "state", {}).get("running"), 60, what="running")
    st = container_status(get_pod(core, ns, "startup"))
    assert st["started"] is False and st["ready"] is False
    flag.touch()
    pod = wait_ready(core, ns, "startup")
    assert container_status(pod)["started"] is True
