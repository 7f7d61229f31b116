"""Bad sessions end in Ready=False with a reason and an actionable message, never a crash loop."""

from __future__ import annotations

from kernelkeeper.crds import model as crd
from tests.helpers import (
    apply_session,
    events,
    get_session,
    holds_for,
    pods_of,
    ready_reason,
    wait_reason,
)


def _stays(cluster, ns: str, kid: str, reason: str, seconds: float = 6) -> dict:
    """The reason holds over several resync rounds."""
    seen: list[dict | None] = [None]

    def same_reason() -> dict | None:
        seen[0] = ks = get_session(cluster, ns, kid)
        return ks if ks is not None and ready_reason(ks) == ("False", reason) else None

    return holds_for(same_reason, seconds, f"session {kid}: Ready=False reason {reason}",
                     detail=lambda: f"then: {(seen[0] or {}).get('status')}")


def test_unknown_kernel_spec(cluster, ns, operator):
    kid = apply_session(cluster, ns, kernel_spec="no-such-kernel")
    ks = wait_reason(cluster, ns, kid, crd.REASON_UNKNOWN_SPEC)
    msg = crd.get_condition(ks["status"])["message"]
    assert "'no-such-kernel'" in msg and "python3" in msg
    ks = _stays(cluster, ns, kid, crd.REASON_UNKNOWN_SPEC)
    assert pods_of(cluster, ns, kid) == []
    assert [e["reason"] for e in events(cluster, ns, kid)] == [crd.REASON_UNKNOWN_SPEC]
    assert operator.main.alive()


def test_env_name_not_allowed(cluster, ns, operator):
    kid = apply_session(cluster, ns, env={"KERNEL_LANG": "en", "LD_PRELOAD": "/tmp/x.so",
                                          "KERNELKEEPER_KEY": "mine"})
    ks = wait_reason(cluster, ns, kid, crd.REASON_INVALID_ENV)
    msg = crd.get_condition(ks["status"])["message"]
    assert "LD_PRELOAD" in msg and "KERNELKEEPER_KEY" in msg and "KERNEL_LANG" not in msg
    assert "KERNEL_*" in msg
    _stays(cluster, ns, kid, crd.REASON_INVALID_ENV)
    assert pods_of(cluster, ns, kid) == []
    assert operator.main.alive()


def test_unschedulable_resources(cluster, ns, operator):
    kid = apply_session(cluster, ns, resources={"requests": {"cpu": "100000"}})
    ks = wait_reason(cluster, ns, kid, crd.REASON_UNSCHEDULABLE)
    msg = crd.get_condition(ks["status"])["message"]
    assert "Insufficient cpu" in msg and "spec.resources" in msg
    _stays(cluster, ns, kid, crd.REASON_UNSCHEDULABLE)
    pods = pods_of(cluster, ns, kid)
    assert len(pods) == 1 and pods[0].status.phase == "Pending"
    assert operator.main.alive()
