"""The node process can die and come back: running pods keep running and are adopted."""

from __future__ import annotations

import os
import signal
import time

from tests.node.helpers import (
    container,
    container_status,
    create_pod,
    get_pod,
    http_get,
    pid_alive,
    pod_manifest,
    wait_for,
    wait_phase,
    wait_ready,
)
from tests.node.test_http_pods import _server

SLEEPER = "import time\nwhile True: time.sleep(1)"


def _pid(node, uid: str, container: str = "c") -> int:
    return int(wait_for(lambda: ((node.record(uid) or {}).get("containers", {})
                                 .get(container, {}).get("pid")), 30, what="recorded pid"))


def test_sigkilled_node_restarts_and_adopts_running_pods(core, ns, node):
    web = create_pod(core, ns, _server("web"))
    web_before = wait_ready(core, ns, "web")
    ip = web_before["status"]["podIP"]
    pid = _pid(node, web["metadata"]["uid"], "web")

    node.kill(signal.SIGKILL)
    # With no node at all, the pod process still serves.
    assert pid_alive(pid)
    assert http_get(f"http://{ip}:8080/") == (200, "web")
    node.start()

    assert node.record(web["metadata"]["uid"])["containers"]["web"]["pid"] == pid
    assert "adopted" in node.log_text()
    # The adopted pod stays Ready with the same IP, process and restart count, and the node
    # still probes it: its Ready condition never flipped.
    pod = wait_ready(core, ns, "web")
    assert pod["status"]["podIP"] == ip
    st = container_status(pod)
    assert st["restartCount"] == 0 and st["containerID"] == f"process://{pid}"
    ready = {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]
    before = {c["type"]: c for c in web_before["status"]["conditions"]}["Ready"]
    assert ready["lastTransitionTime"] == before["lastTransitionTime"]
    assert http_get(f"http://{ip}:8080/") == (200, "web")

    # An adopted process is not the node's child, yet deletion still stops it.
    core.delete_namespaced_pod("web", ns)
    wait_for(lambda: not pid_alive(pid), 60, what="the adopted process to stop")
    wait_for(lambda: get_pod(core, ns, "web") is None, 60, what="the pod to be removed")


def test_process_lost_while_node_was_down_is_restarted_per_policy(core, ns, node):
    always = create_pod(core, ns, pod_manifest("always", [container("c", SLEEPER)]))
    never = create_pod(core, ns, pod_manifest("never", [container("c", SLEEPER)],
                                              restartPolicy="Never"))
    wait_ready(core, ns, "always")
    wait_ready(core, ns, "never")
    pids = {name: _pid(node, pod["metadata"]["uid"])
            for name, pod in (("always", always), ("never", never))}

    node.kill(signal.SIGKILL)
    for pid in pids.values():
        os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in pids.values()), 30, what="pods dead")
    node.start()

    def restarted():
        pod = get_pod(core, ns, "always")
        st = container_status(pod or {})
        return pod if st.get("restartCount") == 1 and st.get("ready") else None

    pod = wait_for(restarted, 60, what="the lost container to be restarted")
    last = container_status(pod)["lastState"]["terminated"]
    assert last["reason"] == "ContainerStatusUnknown" and last["exitCode"] == 137
    new_pid = _pid(node, always["metadata"]["uid"])
    assert new_pid != pids["always"] and pid_alive(new_pid)

    failed = wait_for(lambda: (p := get_pod(core, ns, "never")) and
                      p["status"].get("phase") == "Failed" and p, 60, what="never pod Failed")
    st = container_status(failed)
    assert st["state"]["terminated"]["reason"] == "ContainerStatusUnknown"
    assert st["restartCount"] == 0
    # Never means never: the lost container was not started again.
    assert node.record(never["metadata"]["uid"])["containers"]["c"]["pid"] is None
    assert f"status of {ns}/never rejected" not in node.log_text()


def test_node_shutdown_leaves_pods_running_unless_asked(core, ns, node):
    pod = create_pod(core, ns, pod_manifest("survivor", [container("c", SLEEPER)]))
    wait_ready(core, ns, "survivor")
    uid = pod["metadata"]["uid"]
    pid = _pid(node, uid)

    node.kill(signal.SIGKILL)
    node.start(stop_pods_on_exit=False)
    assert node.kill(signal.SIGTERM) == 0  # a clean exit ...
    assert pid_alive(pid)  # ... that leaves the pod running

    node.start()  # the fixture's default: --stop-pods-on-exit
    assert node.record(uid)["containers"]["c"]["pid"] == pid
    node.kill(signal.SIGTERM)
    assert not pid_alive(pid)  # asked to stop pods: it did
    node.start()
    # The pod stopped by the node's exit comes back under restartPolicy Always.
    def back():
        st = container_status(get_pod(core, ns, "survivor") or {})
        return st.get("ready") and st.get("restartCount") == 1
    wait_for(back, 60, what="the pod to be restarted after the node came back")


def test_pod_deleted_while_node_was_down_is_killed_at_restart(cluster, core, ns, node):
    pod = create_pod(core, ns, pod_manifest("orphan", [container("c", SLEEPER)]))
    wait_ready(core, ns, "orphan")
    pid = _pid(node, pod["metadata"]["uid"])
    node.kill(signal.SIGKILL)
    cluster.kubectl("delete", "pod", "orphan", "-n", ns, "--grace-period=0", "--force")
    assert pid_alive(pid)
    node.start()
    wait_for(lambda: not pid_alive(pid), 30, what="the orphaned process to be killed")
    assert node.record(pod["metadata"]["uid"]) is None


def test_finished_pods_are_left_alone_by_a_restarted_node(core, ns, node):
    create_pod(core, ns, pod_manifest("done", [container("c", "print('ok')")],
                                      restartPolicy="Never"))
    create_pod(core, ns, pod_manifest("nocmd", [{"name": "c", "image": "busybox"}]))
    done = wait_phase(core, ns, "done", "Succeeded")
    failed = wait_phase(core, ns, "nocmd", "Failed")
    time.sleep(1)  # the last status write has landed
    before = {n: get_pod(core, ns, n)["metadata"]["resourceVersion"] for n in ("done", "nocmd")}
    node.restart()
    time.sleep(3)
    after = {n: get_pod(core, ns, n)["metadata"]["resourceVersion"] for n in ("done", "nocmd")}
    assert after == before
    assert get_pod(core, ns, "nocmd")["status"]["reason"] == failed["status"]["reason"]
    assert get_pod(core, ns, "done")["status"]["phase"] == done["status"]["phase"]
    # ... and are still deleted properly.
    core.delete_namespaced_pod("nocmd", ns)
    wait_for(lambda: get_pod(core, ns, "nocmd") is None, 60, what="nocmd removed")
