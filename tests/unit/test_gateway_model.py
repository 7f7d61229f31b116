"""The gateway's kernel model: its time format and the activity merged from every replica."""

from __future__ import annotations

import datetime as dt

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway.model import LocalActivity, kernel_model


def test_model_time_always_has_six_digits_and_z():
    obj = {"metadata": {"name": crd.new_kernel_id(), "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"kernelSpec": "python3"},
           "status": {"conditions": crd.set_condition([], status=True, reason="KernelRunning",
                                                      message="", generation=1),
                      "connection": crd.connection_status("127.0.0.2", crd.DEFAULT_PORTS)}}
    model = kernel_model(obj, local=None, replica_id="r", stale_after=60)
    assert model["last_activity"] == "2026-01-01T00:00:00.000000Z"
    assert model["execution_state"] == "idle" and model["connections"] == 0
    local = LocalActivity("busy", dt.datetime(2026, 1, 2, tzinfo=dt.UTC), 2)
    # A heartbeat of just now, in the MicroTime format replicas write.
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    obj["status"]["activity"] = {"replicas": {"other": {"connections": 3, "heartbeat": now},
                                              "stale": {"connections": 5,
                                                        "heartbeat": "2020-01-01T00:00:00Z"}}}
    model = kernel_model(obj, local=local, replica_id="r", stale_after=60)
    assert model["last_activity"] == "2026-01-02T00:00:00.000000Z"
    assert model["execution_state"] == "busy" and model["connections"] == 5
