"""Reading kernel Pod state (pure)."""

from __future__ import annotations

from kernelkeeper.operator import render
from kernelkeeper.operator.pods import loss_reason, view


def test_unschedulable_pending_pod():
    pod = {"metadata": {"name": "p", "uid": "u", "annotations": {render.ANN_INCARNATION: "3"}},
           "status": {"phase": "Pending", "conditions": [
               {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu."}]}}
    v = view(pod)
    assert v.live and not v.ready and v.incarnation == 3 and v.restarts_base is None
    assert v.unschedulable == "0/1 nodes are available: 1 Insufficient cpu."


def test_running_ready_and_failed_and_deleting():
    ready = view({"metadata": {"name": "p", "annotations": {render.ANN_RESTARTS_BASE: "4"}},
                  "status": {"phase": "Running", "podIP": "127.64.0.9",
                             "conditions": [{"type": "Ready", "status": "True"}]}})
    assert ready.ready and ready.ip == "127.64.0.9" and ready.restarts_base == 4
    failed = view({"metadata": {"name": "p"}, "status": {"phase": "Failed", "containerStatuses": [
        {"name": render.CONTAINER, "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}})
    assert not failed.live and loss_reason(failed) == "the pod failed (exit code 3, Error)"
    evicted_raw = {"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                   "status": {"phase": "Running", "reason": "Evicted", "message": "low memory"}}
    evicted = view(evicted_raw)
    assert evicted.deleting and not evicted.live
    assert loss_reason(evicted, evicted_raw) == "Evicted: low memory"
    assert loss_reason(None) == "the pod was deleted"
