"""Pods with their own loopback IPs: an httpGet readiness probe, two servers on one port."""

from __future__ import annotations

import ipaddress
import time

from tests.node.helpers import (
    PY,
    create_pod,
    get_pod,
    http_get,
    pod_manifest,
    wait_event,
    wait_ready,
)

SERVER = """
import http.server, os
name = os.environ["POD_NAME"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((os.environ["POD_IP"], 8080), H).serve_forever()
"""

DOWNWARD = [
    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
]
PROBE = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}


def _server(name: str) -> dict:
    return pod_manifest(name, [{
        "name": "web", "image": "python:3.11", "command": [PY, "-c", SERVER], "env": DOWNWARD,
        "ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": PROBE}])


def test_http_server_pod_becomes_ready_through_http_probe(core, ns, node):
    manifest = pod_manifest("web", [{
        "name": "web", "image": "python:3.11",
        "command": [PY, "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
        "env": DOWNWARD[:1],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}])
    create_pod(core, ns, manifest)
    pod = wait_ready(core, ns, "web")
    status = pod["status"]
    ip = status["podIP"]
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("127.0.0.0/8")
    assert ip != "127.0.0.1"
    assert status["podIPs"] == [{"ip": ip}]
    assert status["hostIP"] == "127.0.0.1"
    assert pod["spec"]["nodeName"] == node.name  # bound by the real kube-scheduler
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True",
        "Ready": "True"}
    cs = status["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert "running" in cs["state"] and cs["image"] == "python:3.11"
    code, body = http_get(f"http://{ip}:8080/")
    assert code == 200 and "Directory listing" in body


def test_two_pods_listen_on_the_same_port_on_different_ips(core, ns):
    for name in ("web-a", "web-b"):
        create_pod(core, ns, _server(name))
    a = wait_ready(core, ns, "web-a")["status"]["podIP"]
    b = wait_ready(core, ns, "web-b")["status"]["podIP"]
    assert a != b
    assert http_get(f"http://{a}:8080/") == (200, "web-a")
    assert http_get(f"http://{b}:8080/") == (200, "web-b")


def test_status_is_written_only_when_it_changes(core, ns):
    """Probes keep succeeding every second, yet a settled pod's object does not change."""
    create_pod(core, ns, _server("steady"))
    wait_ready(core, ns, "steady")
    wait_event(core, ns, "steady", "Started", "Started container web")
    time.sleep(1.5)  # let the last transition's write land
    before = get_pod(core, ns, "steady")["metadata"]["resourceVersion"]
    time.sleep(4)  # four probe periods
    assert get_pod(core, ns, "steady")["metadata"]["resourceVersion"] == before
