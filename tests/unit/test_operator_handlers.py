"""kopf wiring: only stateless watch handlers (no finalizers), server-side pod filtering."""

from __future__ import annotations

import kopf
from kopf._cogs.structs import references

from kernelkeeper.operator.handlers import build_registry, kopf_settings
from kernelkeeper.operator.settings import OperatorConfig


def _resource(group: str, version: str, plural: str) -> references.Resource:
    return references.Resource(group=group, version=version, plural=plural, kind=plural,
                               singular=plural, namespaced=True, verbs=["list", "watch"])


def test_no_handler_can_put_a_finalizer():
    registry = build_registry(reconciler=None, kube=None)  # type: ignore[arg-type]
    assert len(registry._watching.get_all_handlers()) == 2
    # Change/delete handlers, timers and daemons would add finalizers; an operator that is
    # down must never block a deletion.
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()


def test_settings():
    s = kopf_settings(OperatorConfig(identity="t", request_timeout=12))
    assert s.peering.standalone and s.scanning.disabled and not s.posting.enabled
    assert isinstance(s.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert s.networking.request_timeout == 12
    pods = _resource("", "v1", "pods")
    sessions = _resource("kernelkeeper.io", "v1alpha1", "kernelsessions")
    assert list(s.watching.label_selectors.collect(pods)) == ["kernelkeeper.io/component=kernel"]
    assert list(s.watching.label_selectors.collect(sessions)) == []


def test_activity_only_changes_do_not_trigger_a_reconcile():
    from kernelkeeper.operator.handlers import fingerprint

    base = {"metadata": {"uid": "u", "generation": 1},
            "status": {"podName": "p", "activity": {"lastActivity": "T0"}}}
    busier = {**base, "status": {**base["status"], "activity": {"lastActivity": "T9"}}}
    assert fingerprint(base) == fingerprint(busier)
    assert fingerprint(base) != fingerprint({**base, "status": {"podName": "q"}})
    assert fingerprint(base) != fingerprint({**base, "metadata": {"uid": "u", "generation": 2}})
