"""Kernels that end: a client's plain shutdown ends the session; endless crashes end in Failed."""

from __future__ import annotations

import json
import time

from kernelkeeper.crds import model as crd
from tests.helpers import (
    apply_session,
    events,
    execute,
    get_session,
    kernel_client,
    pods_of,
    ready_reason,
    session_key,
    wait_ready,
    wait_reason,
    wait_until,
)


def test_plain_shutdown_request_ends_the_session(cluster, ns):
    kid = apply_session(cluster, ns)
    ks = wait_ready(cluster, ns, kid)
    kc = kernel_client(cluster, ns, ks)
    try:
        kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": False}))
        assert kc.control_channel.get_msg(timeout=30)["content"]["restart"] is False
    finally:
        kc.stop_channels()
    wait_until(lambda: get_session(cluster, ns, kid) is None, 90, "session deleted")
    assert events(cluster, ns, kid, reason="KernelShutdown")


def test_pod_replacements_are_bounded(cluster, operator, operator_replicas, tmp_path):
    spec_dir = tmp_path / "specs" / "crashy"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "display_name": "always crashes", "language": "python",
        "argv": ["python", "-c", "raise SystemExit(1)"]}))
    ns = cluster.new_namespace("op")
    with operator.paused():
        op = operator.spawn("bounded", "--kernelspec-path", str(tmp_path / "specs"),
                            "--max-pod-restarts", "1", "--launcher-max-crash-restarts", "0")
        operator_replicas.append(op)
        try:
            op.wait_leading()
            kid = apply_session(cluster, ns, kernel_spec="crashy")
            ks = wait_reason(cluster, ns, kid, crd.REASON_FAILED, timeout=120)
            msg = crd.get_condition(ks["status"])["message"]
            assert "limit 1" in msg and "delete this session" in msg
            assert ks["status"]["restarts"] == 1
            # Settled: no new pods, the reason holds.
            names = sorted(p.metadata.name for p in pods_of(cluster, ns, kid))
            time.sleep(6)
            assert sorted(p.metadata.name for p in pods_of(cluster, ns, kid)) == names
            assert ready_reason(get_session(cluster, ns, kid)) == ("False", crd.REASON_FAILED)
            assert op.alive()
        finally:
            op.terminate()


def test_deleted_key_secret_means_new_key_and_new_pod(cluster, ns):
    kid = apply_session(cluster, ns)
    ks = wait_ready(cluster, ns, kid)
    old_key, old_pod = session_key(cluster, ns, ks), ks["status"]["podName"]
    cluster.kubectl("delete", "secret", "-n", ns, crd.key_secret_name(kid))
    ks = wait_ready(cluster, ns, kid, timeout=120,
                    extra=lambda k: k["status"]["podName"] != old_pod)
    assert session_key(cluster, ns, ks) != old_key
    assert "key Secret was deleted" in json.dumps(events(cluster, ns, kid))
    kc = kernel_client(cluster, ns, ks)
    try:
        assert execute(kc, "'still' + ' here'")["result"] == "'still here'"
    finally:
        kc.stop_channels()


def test_kernel_spec_removed_from_disk(cluster, operator, operator_replicas, tmp_path):
    """A running kernel is left alone; only a replacement Pod needs the spec."""
    spec_dir = tmp_path / "specs" / "ephemeral"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "display_name": "here today", "language": "python",
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]}))
    ns = cluster.new_namespace("op")
    with operator.paused():
        op = operator.spawn("specs", "--kernelspec-path", str(tmp_path / "specs"))
        op.wait_leading()
        kid = apply_session(cluster, ns, kernel_spec="ephemeral")
        ks = wait_ready(cluster, ns, kid)
        (spec_dir / "kernel.json").unlink()
        time.sleep(10)  # past the spec cache and several resync rounds
        assert ready_reason(get_session(cluster, ns, kid)) == ("True", crd.REASON_RUNNING)
        cluster.kubectl("delete", "pod", "-n", ns, ks["status"]["podName"], "--wait=false")
        ks = wait_reason(cluster, ns, kid, crd.REASON_UNKNOWN_SPEC)
        assert "'ephemeral'" in crd.get_condition(ks["status"])["message"]
        assert not [p for p in pods_of(cluster, ns, kid) if not p.metadata.deletion_timestamp]
