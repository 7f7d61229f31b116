"""Workload controllers drive the node: a Deployment's ReplicaSet gets real processes."""

from __future__ import annotations

import json

from kubernetes import client

from tests.node.helpers import PY, condition, pid_alive, wait_for

SLEEPER = "import time\nwhile True: time.sleep(1)"


def _running(core, ns, node) -> dict[str, int]:
    """uid -> pid of each Ready pod of the deployment whose process is alive."""
    resp = core.list_namespaced_pod(ns, label_selector="app=sleeper", _preload_content=False)
    out = {}
    for pod in json.loads(resp.data)["items"]:
        if pod["metadata"].get("deletionTimestamp") or condition(pod, "Ready") != "True":
            continue
        rec = node.record(pod["metadata"]["uid"]) or {}
        pid = ((rec.get("containers") or {}).get("main") or {}).get("pid")
        if pid and pid_alive(pid):
            out[pod["metadata"]["uid"]] = pid
    return out


def test_deployment_replicas_run_as_processes_and_get_replaced(cluster, core, ns, node):
    apps = client.AppsV1Api(cluster.api_client())
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sleeper"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "sleeper"}},
            "template": {
                "metadata": {"labels": {"app": "sleeper"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [
                    {"name": "main", "image": "python:3.11", "command": [PY, "-c", SLEEPER]}]},
            },
        },
    })
    first = wait_for(lambda: (r := _running(core, ns, node)) and len(r) == 2 and r, 90,
                     what="two running replicas")
    assert len(set(first.values())) == 2
    victim_uid, victim_pid = next(iter(first.items()))
    victim = next(p for p in json.loads(core.list_namespaced_pod(
        ns, label_selector="app=sleeper", _preload_content=False).data)["items"]
        if p["metadata"]["uid"] == victim_uid)
    core.delete_namespaced_pod(victim["metadata"]["name"], ns)

    def replaced() -> dict[str, int] | None:
        r = _running(core, ns, node)
        return r if len(r) == 2 and victim_uid not in r else None

    after = wait_for(replaced, 90, what="a replacement replica")
    assert not pid_alive(victim_pid)
    survivor = set(first) - {victim_uid}
    assert survivor <= set(after)  # the other replica was left alone
    wait_for(lambda: (apps.read_namespaced_deployment_status("sleeper", ns).status
                      .available_replicas == 2), 60, what="deployment available")
