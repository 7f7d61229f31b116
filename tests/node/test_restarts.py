"""restartPolicy: crash loops with back-off under Always, final phases under Never/OnFailure."""

from __future__ import annotations

from tests.node.helpers import (
    container,
    container_status,
    create_pod,
    get_pod,
    pod_manifest,
    wait_event,
    wait_for,
    wait_phase,
)


def test_crashing_container_restarts_with_growing_restart_count(core, ns):
    create_pod(core, ns, pod_manifest("crash", [container("c", "import sys; sys.exit(3)")],
                                      restartPolicy="Always"))
    seen: list[int] = []

    def restarted_three_times() -> bool:
        st = container_status(get_pod(core, ns, "crash") or {})
        count = st.get("restartCount", 0)
        if not seen or seen[-1] != count:
            seen.append(count)
        return count >= 3

    wait_for(restarted_three_times, 90, interval=0.1, what="three restarts")
    assert seen == sorted(seen), seen  # never goes down
    pod = get_pod(core, ns, "crash")
    st = container_status(pod)
    assert st["lastState"]["terminated"]["exitCode"] == 3
    assert st["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running"  # a crash loop under Always is not terminal
    wait_event(core, ns, "crash", "BackOff", "Back-off restarting failed container c")
    wait_for(lambda: container_status(get_pod(core, ns, "crash")).get("state", {}).get(
        "waiting", {}).get("reason") == "CrashLoopBackOff", 60, interval=0.1,
        what="CrashLoopBackOff")


def test_never_ends_failed_with_the_exit_code(core, ns):
    create_pod(core, ns, pod_manifest("fail", [container("c", "import sys; sys.exit(7)")],
                                      restartPolicy="Never"))
    pod = wait_phase(core, ns, "fail", "Failed", "Succeeded")
    assert pod["status"]["phase"] == "Failed"
    st = container_status(pod)
    assert st["state"]["terminated"]["exitCode"] == 7
    assert st["state"]["terminated"]["reason"] == "Error"
    assert st["restartCount"] == 0 and st["ready"] is False
    ready = {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


def test_never_ends_succeeded_on_exit_zero(core, ns):
    create_pod(core, ns, pod_manifest("ok", [container("c", "print('done')")],
                                      restartPolicy="Never"))
    pod = wait_phase(core, ns, "ok", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded"
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 0


def test_on_failure_restarts_until_success(core, ns, tmp_path):
    marker = tmp_path / "attempts"
    script = (f"import pathlib, sys; p = pathlib.Path({str(marker)!r}); "
              "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
              "sys.exit(0 if n >= 1 else 4)")
    create_pod(core, ns, pod_manifest("retry", [container("c", script)],
                                      restartPolicy="OnFailure"))
    pod = wait_phase(core, ns, "retry", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded"
    st = container_status(pod)
    assert st["restartCount"] == 1
    assert st["state"]["terminated"]["exitCode"] == 0
    assert marker.read_text() == "2"


def test_stderr_and_stdout_go_to_the_container_log(core, ns, node):
    script = "import sys; print('to-stdout', flush=True); print('to-stderr', file=sys.stderr)"
    pod = create_pod(core, ns, pod_manifest("logs", [container("c", script)],
                                            restartPolicy="Never"))
    wait_phase(core, ns, "logs", "Succeeded")
    text = node.container_log(ns, "logs", pod["metadata"]["uid"], "c")
    assert "to-stdout" in text and "to-stderr" in text


def test_kubectl_logs_current_previous_and_tail(cluster, core, ns):
    script = ("import sys, time; print('first line', flush=True); "
              "print('run-marker', flush=True); time.sleep(1); sys.exit(1)")
    c = container("c", script)
    create_pod(core, ns, pod_manifest("talker", [c]))
    wait_for(lambda: container_status(get_pod(core, ns, "talker")).get("restartCount", 0) >= 1,
             60, what="one restart")
    prev = cluster.kubectl("logs", "talker", "-n", ns, "--previous").stdout
    assert prev == "first line\nrun-marker\n"
    wait_for(lambda: "run-marker" in cluster.kubectl("logs", "talker", "-n", ns).stdout, 30,
             what="current logs")
    tail = cluster.kubectl("logs", "talker", "-n", ns, "--previous", "--tail=1").stdout
    assert tail == "run-marker\n"


def test_init_containers_run_in_order_before_the_containers(core, ns, tmp_path):
    trace = tmp_path / "trace"
    step = ("import os, pathlib; p = pathlib.Path(os.environ['TRACE']); "
            "p.write_text((p.read_text() if p.exists() else '') + os.environ['STEP'] + ' ')")
    env = [{"name": "TRACE", "value": str(trace)}]
    manifest = pod_manifest(
        "ordered", [container("main", step + "\nimport time\nwhile True: time.sleep(1)",
                              env=[*env, {"name": "STEP", "value": "main"}])],
        initContainers=[container(f"init{i}", step, env=[*env, {"name": "STEP",
                                                                "value": f"init{i}"}])
                        for i in (1, 2)])
    create_pod(core, ns, manifest)
    pod = wait_for(lambda: (p := get_pod(core, ns, "ordered")) and
                   container_status(p).get("ready") and p, 60, what="main running")
    wait_for(lambda: trace.read_text() == "init1 init2 main ", 30,
             what="the main container's trace after both init containers")
    inits = pod["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["init1", "init2"]
    assert all(s["state"]["terminated"]["exitCode"] == 0 for s in inits)
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Initialized"] == "True"


def test_failing_init_container_under_never_fails_the_pod(core, ns):
    manifest = pod_manifest("badinit", [container("main", "print('never runs')")],
                            restartPolicy="Never",
                            initContainers=[container("init", "import sys; sys.exit(5)")])
    create_pod(core, ns, manifest)
    pod = wait_phase(core, ns, "badinit", "Failed")
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 5
