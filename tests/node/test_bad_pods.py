"""Pods the node cannot run get a clear reason and an Event; the node keeps serving others."""

from __future__ import annotations

from tests.node.helpers import (
    PY,
    container,
    container_status,
    create_pod,
    get_pod,
    pod_manifest,
    wait_event,
    wait_for,
    wait_phase,
    wait_ready,
)

SLEEP = "import time; time.sleep(600)"


def _reason_and_message(core, ns, name):
    pod = wait_phase(core, ns, name, "Failed", timeout=60)
    status = pod["status"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    return pod, status.get("reason"), status.get("message", ""), ready


def test_unknown_secret(core, ns):
    c = container("c", SLEEP, env=[{"name": "X", "valueFrom": {
        "secretKeyRef": {"name": "nope", "key": "k"}}}])
    create_pod(core, ns, pod_manifest("nosecret", [c]))

    def waiting_reason():
        st = container_status(get_pod(core, ns, "nosecret") or {})
        return st.get("state", {}).get("waiting")

    waiting = wait_for(lambda: (w := waiting_reason()) and
                       w.get("reason") == "CreateContainerConfigError" and w, 60,
                       what="CreateContainerConfigError")
    assert waiting["message"] == 'secret "nope" not found'
    wait_event(core, ns, "nosecret", "Failed", 'secret "nope" not found')
    assert get_pod(core, ns, "nosecret")["status"]["phase"] == "Pending"


def test_unknown_secret_volume(core, ns, tmp_path):
    c = container("c", SLEEP, volumeMounts=[{"name": "v", "mountPath": str(tmp_path / "m")}])
    create_pod(core, ns, pod_manifest("novolsecret", [c], volumes=[
        {"name": "v", "secret": {"secretName": "missing"}}]))
    wait_event(core, ns, "novolsecret", "FailedMount", 'secret "missing" not found')
    pod = get_pod(core, ns, "novolsecret")
    assert pod["status"]["phase"] == "Pending"
    assert container_status(pod)["state"]["waiting"]["reason"] == "CreateContainerConfigError"


def test_missing_command(core, ns):
    create_pod(core, ns, pod_manifest("nocmd", [{"name": "c", "image": "busybox"}]))
    pod, reason, message, ready = _reason_and_message(core, ns, "nocmd")
    assert reason == "MissingCommand"
    assert "has no command" in message
    assert ready["status"] == "False" and ready["reason"] == "MissingCommand"
    assert container_status(pod)["state"]["terminated"]["reason"] == "MissingCommand"
    wait_event(core, ns, "nocmd", "Failed", "has no command")


def test_unsupported_volume(core, ns, tmp_path):
    c = container("c", SLEEP, volumeMounts=[{"name": "share", "mountPath": str(tmp_path / "m")}])
    create_pod(core, ns, pod_manifest("nfs", [c], volumes=[
        {"name": "share", "nfs": {"server": "nfs.invalid", "path": "/export"}}]))
    _, reason, message, ready = _reason_and_message(core, ns, "nfs")
    assert reason == "UnsupportedVolume"
    assert 'volume "share": nfs volumes are not supported' in message
    assert ready["reason"] == "UnsupportedVolume" and ready["message"] == message
    wait_event(core, ns, "nfs", "Failed", "nfs volumes are not supported")


def test_command_that_does_not_exist(core, ns):
    create_pod(core, ns, pod_manifest("noexec", [{
        "name": "c", "image": "x", "command": ["/nonexistent/kk-binary"]}], restartPolicy="Never"))
    pod = wait_phase(core, ns, "noexec", "Failed")
    term = container_status(pod)["state"]["terminated"]
    assert term["exitCode"] == 128 and term["reason"] == "StartError"
    assert "/nonexistent/kk-binary" in term["message"]


def test_node_keeps_serving_after_bad_pods(core, ns):
    create_pod(core, ns, pod_manifest("bad", [{"name": "c", "image": "busybox"}]))
    create_pod(core, ns, pod_manifest("good", [{"name": "c", "image": "python:3.11",
                                                "command": [PY, "-c", SLEEP]}]))
    wait_phase(core, ns, "bad", "Failed")
    pod = wait_ready(core, ns, "good")
    assert pod["status"]["phase"] == "Running"
