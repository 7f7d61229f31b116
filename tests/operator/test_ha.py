"""Operator availability: kernels outlive the operator; only the Lease holder reconciles."""

from __future__ import annotations

import os
import signal

from kernelkeeper.operator import render
from kernelkeeper.operator.settings import LEASE_NAME
from tests.fixtures.operator import OperatorProcess
from tests.helpers import (
    apply_session,
    core,
    execute,
    get_session,
    kernel_client,
    wait_ready,
    wait_until,
)

FAST_LEASE = ("--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1")


def _lease(cluster) -> dict:
    from kubernetes import client

    lease = client.CoordinationV1Api(cluster.api_client()).read_namespaced_lease(
        LEASE_NAME, "default")
    return {"holder": lease.spec.holder_identity, "transitions": lease.spec.lease_transitions or 0}


def _leader_and_standby(operator, replicas: list, name: str,
                        *args: str) -> tuple[OperatorProcess, OperatorProcess]:
    """Replica <name>-a holding the Lease and <name>-b waiting for it (both in `replicas`)."""
    a = operator.spawn(f"{name}-a", *args)
    replicas.append(a)
    a.wait_leading()
    b = operator.spawn(f"{name}-b", *args)
    replicas.append(b)
    b.wait_for_log("waiting for lease")
    return a, b


def test_kernels_survive_operator_kill_and_are_adopted(cluster, ns, operator):
    kid = apply_session(cluster, ns)
    before = wait_ready(cluster, ns, kid)
    pod_name = before["status"]["podName"]
    pod_uid = core(cluster).read_namespaced_pod(pod_name, ns).metadata.uid

    operator.main.kill()
    kc = kernel_client(cluster, ns, before)
    try:
        assert execute(kc, "z = 5; z * 2")["result"] == "10"  # no operator, kernel still serves
        operator.start_main()
        later = apply_session(cluster, ns)  # the restarted operator works...
        wait_ready(cluster, ns, later)
        after = wait_ready(cluster, ns, kid)  # ...and left the running kernel alone
        assert after["status"]["podName"] == pod_name
        assert after["status"]["restarts"] == before["status"]["restarts"]
        assert core(cluster).read_namespaced_pod(pod_name, ns).metadata.uid == pod_uid
        assert f"created pod {pod_name}" not in operator.main.output()
        assert execute(kc, "z")["result"] == "5"  # same process, state intact
    finally:
        kc.stop_channels()


def test_only_holder_reconciles_and_standby_takes_over(cluster, ns, operator, operator_replicas):
    with operator.paused():
        a, b = _leader_and_standby(operator, operator_replicas, "ha")
        try:
            first = apply_session(cluster, ns)
            wait_ready(cluster, ns, first)
            assert f"created pod {render.pod_name(first, 0)}" in a.output()
            assert first not in b.output() and "is the leader" not in b.output()
            held = _lease(cluster)
            assert held["holder"] == "ha-a"

            a.kill()
            b.wait_leading(timeout=90)
            second = apply_session(cluster, ns)
            wait_ready(cluster, ns, second, timeout=120)
            assert f"created pod {render.pod_name(second, 0)}" in b.output()
            assert _lease(cluster) == {"holder": "ha-b", "transitions": held["transitions"] + 1}
            # The session the dead leader created is adopted as it is.
            assert get_session(cluster, ns, first)["status"]["podName"] == \
                render.pod_name(first, 0)
            assert f"created pod {render.pod_name(first, 0)}" not in b.output()
        finally:
            for rep in (a, b):
                rep.terminate()


def test_sigterm_releases_the_lease(cluster, operator, operator_replicas):
    with operator.paused():
        a, b = _leader_and_standby(operator, operator_replicas, "rel")
        try:
            assert a.terminate() == 0
            assert "released lease" in a.output()
            # Released, not expired: the standby goes by the empty holder, not a 15 s expiry.
            b.wait_leading(timeout=30)
            assert "took over lease default/kernelkeeper-operator from ''" in b.output()
            assert _lease(cluster)["holder"] == "rel-b"
        finally:
            b.terminate()


def test_holder_that_cannot_renew_exits_nonzero(cluster, operator, operator_replicas):
    with operator.paused():
        a, b = _leader_and_standby(operator, operator_replicas, "stuck", *FAST_LEASE)
        try:
            os.kill(a.pid, signal.SIGSTOP)  # a GC pause / frozen VM: it cannot renew
            try:
                b.wait_leading(timeout=60)
            finally:
                os.kill(a.pid, signal.SIGCONT)
            assert a.proc.wait(30) == 1
            assert "lost lease" in a.output() and "released lease" not in a.output()
            assert _lease(cluster)["holder"] == "stuck-b"
            wait_until(lambda: b.alive(), 5, "standby still running")
        finally:
            b.terminate()
