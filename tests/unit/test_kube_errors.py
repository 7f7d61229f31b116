"""ApiError reads the API server's Status: the namespace-terminating refusal is told apart
from a permission error by its cause, not by its message."""

from __future__ import annotations

from kernelkeeper.kube.client import ApiError

# What kube-apiserver 1.36 answered to a create in a terminating namespace (copied from a run).
TERMINATING = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": 'configmaps "x" is forbidden: unable to create new content in namespace '
               "probe-term because it is being terminated",
    "reason": "Forbidden",
    "details": {"name": "x", "kind": "configmaps", "causes": [
        {"reason": "NamespaceTerminating", "message": "namespace probe-term is being terminated",
         "field": "metadata.namespace"}]},
    "code": 403,
}
RBAC = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": 'pods is forbidden: User "system:serviceaccount:x:y" cannot create resource '
               '"pods" in API group "" in the namespace "z"',
    "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403,
}


def test_namespace_terminating_is_recognised_by_its_cause():
    err = ApiError(403, "Forbidden", TERMINATING)
    assert err.namespace_terminating
    assert "being terminated" in err.message


def test_a_permission_error_is_not_namespace_terminating():
    assert not ApiError(403, "Forbidden", RBAC).namespace_terminating
    assert not ApiError(403, "Forbidden", "plain text").namespace_terminating
    assert not ApiError(409, "Conflict", TERMINATING).namespace_terminating
