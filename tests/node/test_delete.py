"""Deletion as a kubelet does it: SIGTERM the process group, grace, SIGKILL, remove the Pod."""

from __future__ import annotations

from tests.node.helpers import (
    container,
    create_pod,
    get_pod,
    pid_alive,
    pod_manifest,
    wait_for,
    wait_ready,
)

TERM_RECORDER = """
import os, signal, sys, time, pathlib
out = pathlib.Path(os.environ["OUT"])
(out / "pid").write_text(str(os.getpid()))
def term(sig, frame):
    (out / "signal").write_text("SIGTERM")
    if os.environ.get("IGNORE_TERM"):
        return
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(0.1)
"""


def _recorder(name, out, *, ignore_term=False, grace=5):
    env = [{"name": "OUT", "value": str(out)}]
    if ignore_term:
        env.append({"name": "IGNORE_TERM", "value": "1"})
    return pod_manifest(name, [container("c", TERM_RECORDER, env=env)],
                        terminationGracePeriodSeconds=grace)


def _running_pid(core, ns, name, out):
    wait_ready(core, ns, name)
    return int(wait_for(lambda: (out / "pid").exists() and (out / "pid").read_text(), 30,
                        what="pid file"))


def test_kubectl_delete_sends_sigterm_and_removes_the_pod(cluster, core, ns, node, tmp_path):
    pod = create_pod(core, ns, _recorder("victim", tmp_path))
    pid = _running_pid(core, ns, "victim", tmp_path)
    assert pid_alive(pid)
    cluster.kubectl("delete", "pod", "victim", "-n", ns, "--wait=true", timeout=90)
    assert (tmp_path / "signal").read_text() == "SIGTERM"
    wait_for(lambda: not pid_alive(pid), 30, what="the process to be gone")
    assert get_pod(core, ns, "victim") is None
    wait_for(lambda: node.record(pod["metadata"]["uid"]) is None, 30,
             what="the node to forget the pod")


def test_sigterm_ignored_means_sigkill_after_the_grace_period(cluster, core, ns, tmp_path):
    create_pod(core, ns, _recorder("stubborn", tmp_path, ignore_term=True, grace=2))
    pid = _running_pid(core, ns, "stubborn", tmp_path)
    cluster.kubectl("delete", "pod", "stubborn", "-n", ns, "--wait=true", timeout=90)
    assert (tmp_path / "signal").read_text() == "SIGTERM"
    assert not pid_alive(pid)
    assert get_pod(core, ns, "stubborn") is None


def test_pod_force_deleted_elsewhere_is_killed(cluster, core, ns, tmp_path):
    create_pod(core, ns, _recorder("forced", tmp_path))
    pid = _running_pid(core, ns, "forced", tmp_path)
    cluster.kubectl("delete", "pod", "forced", "-n", ns, "--grace-period=0", "--force")
    assert get_pod(core, ns, "forced") is None
    wait_for(lambda: not pid_alive(pid), 30, what="the force-deleted pod's process to die")


def test_child_processes_of_a_container_are_killed_with_it(cluster, core, ns, tmp_path):
    script = f"""
import subprocess, sys, time, pathlib
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pathlib.Path({str(tmp_path / 'child')!r}).write_text(str(child.pid))
time.sleep(600)
"""
    create_pod(core, ns, pod_manifest("family", [container("c", script)],
                                      terminationGracePeriodSeconds=2))
    wait_ready(core, ns, "family")
    child = int(wait_for(lambda: (tmp_path / "child").exists() and
                         (tmp_path / "child").read_text(), 30, what="child pid"))
    assert pid_alive(child)
    cluster.kubectl("delete", "pod", "family", "-n", ns, "--wait=true", timeout=90)
    wait_for(lambda: not pid_alive(child), 30, what="the container's child process to die")
