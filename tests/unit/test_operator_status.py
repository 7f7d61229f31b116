"""Status computation: only changed fields are written; transitions keep their time."""

from __future__ import annotations

from kernelkeeper.crds import model as crd
from kernelkeeper.operator.status import Readiness, desired_status, status_patch

KID = "0b7cbd8e-58a5-4e0f-9a4b-6c7e0d3c2a11"


def _ks(status=None, generation=3) -> dict:
    return {"metadata": {"name": KID, "namespace": "n", "generation": generation,
                         "resourceVersion": "9"}, "status": status or {}}


def test_first_status_has_everything():
    d = desired_status(_ks(), Readiness(False, crd.REASON_STARTING, "creating"), now="T0",
                       podName="p", restarts=0)
    assert d["observedGeneration"] == 3 and d["podName"] == "p" and d["restarts"] == 0
    assert d["keySecretRef"] == {"name": crd.key_secret_name(KID), "key": "key"}
    assert d["startedAt"] is None
    (cond,) = d["conditions"]
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("False", "Starting", 3)


def test_unchanged_status_writes_nothing_and_keeps_activity_out():
    r = Readiness(True, crd.REASON_RUNNING, "running")
    first = desired_status(_ks(), r, now="T0", podName="p", podIP="1.2.3.4")
    current = {**first, "activity": {"lastActivity": "T1"}}
    again = desired_status(_ks(current), r, now="T5", podName="p", podIP="1.2.3.4")
    assert status_patch(_ks(current), again) == {}
    assert "activity" not in again
    assert first["startedAt"] == "T0"


def test_transition_time_moves_only_on_flip():
    ready = desired_status(_ks(), Readiness(True, "KernelRunning", "ok"), now="T0")
    restarting = desired_status(_ks(ready), Readiness(False, "KernelRestarting", "x"), now="T1")
    starting = desired_status(_ks(restarting), Readiness(False, "Starting", "y"), now="T2")
    assert ready["conditions"][0]["lastTransitionTime"] == "T0"
    assert restarting["conditions"][0]["lastTransitionTime"] == "T1"
    assert starting["conditions"][0]["lastTransitionTime"] == "T1"
    assert starting["startedAt"] == "T0"  # first Ready, kept


def test_patch_removes_fields_with_none():
    current = desired_status(_ks(), Readiness(True, "KernelRunning", "ok"), now="T0",
                             podIP="1.2.3.4", connection={"ip": "1.2.3.4"})
    lost = desired_status(_ks(current), Readiness(False, "PodLost", "gone"), now="T1",
                          podIP=None, connection=None, podName="p2")
    patch = status_patch(_ks(current), lost)
    assert patch["podIP"] is None and patch["connection"] is None and patch["podName"] == "p2"
    assert "keySecretRef" not in patch
