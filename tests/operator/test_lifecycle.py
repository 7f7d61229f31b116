"""A KernelSession's life: Ready, usable, Pod replaced when lost, everything gone on delete."""

from __future__ import annotations

import time

from kernelkeeper.crds import model as crd
from tests.helpers import (
    apply_session,
    container_id,
    container_listed,
    core,
    execute,
    get_session,
    kernel_client,
    launcher_status,
    pods_of,
    session_key,
    wait_ready,
    wait_until,
)


def test_apply_becomes_ready_and_executes(cluster, ns):
    kid = apply_session(cluster, ns, username="alice")
    ks = wait_ready(cluster, ns, kid)
    st = ks["status"]
    assert st["podIP"] and st["connection"]["ip"] == st["podIP"]
    assert {st["connection"][f"{ch}Port"] for ch in crd.CHANNELS} == set(crd.DEFAULT_PORTS.values())
    assert st["keySecretRef"] == {"name": crd.key_secret_name(kid), "key": crd.KEY_SECRET_FIELD}
    assert st["observedGeneration"] == ks["metadata"]["generation"]
    assert st["startedAt"] and st["restarts"] == 0

    pod = core(cluster).read_namespaced_pod(st["podName"], ns)
    owner = pod.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller, owner.block_owner_deletion) == (
        crd.KIND, kid, True, True)
    assert pod.metadata.labels[crd.LABEL_KERNEL_ID] == kid
    assert pod.metadata.labels[crd.LABEL_USERNAME] == "alice"
    assert pod.metadata.labels[crd.LABEL_KERNEL_SPEC] == "python3"
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["KERNEL_ID"].value == kid and env["KERNEL_USERNAME"].value == "alice"
    assert env["KERNELKEEPER_KEY"].value_from.secret_key_ref.name == crd.key_secret_name(kid)
    assert env["KERNELKEEPER_POD_IP"].value_from.field_ref.field_path == "status.podIP"
    assert session_key(cluster, ns, ks) not in str(ks)  # the key lives only in the Secret

    kc = kernel_client(cluster, ns, ks)
    try:
        out = execute(kc, "1+1")
        assert out == {"status": "ok", "result": "2", "ename": None}
        assert execute(kc, "import os; os.environ['KERNEL_ID']")["result"] == repr(kid)
    finally:
        kc.stop_channels()


def test_deleted_pod_is_replaced_with_same_key(cluster, ns):
    kid = apply_session(cluster, ns)
    ks = wait_ready(cluster, ns, kid)
    old_pod, old_ip = ks["status"]["podName"], ks["status"]["podIP"]
    key_before = core(cluster).read_namespaced_secret(crd.key_secret_name(kid), ns).data

    cluster.kubectl("delete", "pod", "-n", ns, old_pod, "--wait=false")
    ks = wait_ready(cluster, ns, kid, timeout=120,
                    extra=lambda k: k["status"].get("podName") != old_pod)
    assert ks["status"]["podIP"] != old_ip
    assert ks["status"]["connection"]["ip"] == ks["status"]["podIP"]
    assert ks["status"]["restarts"] == 1
    assert core(cluster).read_namespaced_secret(crd.key_secret_name(kid), ns).data == key_before
    kc = kernel_client(cluster, ns, ks)
    try:
        assert execute(kc, "6*7")["result"] == "42"
    finally:
        kc.stop_channels()


def test_delete_session_removes_pod_secret_and_process(cluster, ns):
    kid = apply_session(cluster, ns)
    ks = wait_ready(cluster, ns, kid)
    assert launcher_status(ks["status"]["podIP"])["pid"]
    cid = container_id(cluster, ns, ks["status"]["podName"])
    assert container_listed(cluster, cid)

    cluster.kubectl("delete", "ks", "-n", ns, kid, "--wait=true", timeout=60)
    assert get_session(cluster, ns, kid) is None
    wait_until(lambda: not pods_of(cluster, ns, kid), 90, "kernel pod deleted")
    wait_until(lambda: not core(cluster).list_namespaced_secret(
        ns, label_selector=f"{crd.LABEL_KERNEL_ID}={kid}").items, 60, "key secret deleted")
    # The container (and so ipykernel in it) is gone from containerd itself.
    wait_until(lambda: not container_listed(cluster, cid), 60, "kernel container gone")
    time.sleep(0.5)


def test_deleting_the_namespace_is_quiet(cluster, operator):
    """The namespace's deletion takes its sessions' Pods first or last, in no set order: the
    operator must not fight it by starting replacements the API server refuses."""
    ns = cluster.new_namespace("gone")
    kid = apply_session(cluster, ns)
    wait_ready(cluster, ns, kid)
    assert operator.main is not None
    start = len(operator.main.output())
    cluster.kubectl("delete", "namespace", ns, "--wait=true", timeout=180)
    time.sleep(3)  # a resync round after the namespace is gone
    log = operator.main.output()[start:]
    assert not [line for line in log.splitlines() if ns in line and "WARNING" in line], log
