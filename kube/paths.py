"""REST paths of Kubernetes resources: core (/api/v1) and grouped (/apis/<group>/<version>)."""

from __future__ import annotations


def core_path(namespace: str, plural: str, name: str | None = None, sub: str | None = None) -> str:
    path = f"/api/v1/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def group_path(group: str, version: str, plural: str, namespace: str | None = None,
               name: str | None = None, sub: str | None = None) -> str:
    path = f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def lease_path(namespace: str, name: str | None = None) -> str:
    return group_path("coordination.k8s.io", "v1", "leases", namespace, name)
