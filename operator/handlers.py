"""The kopf side: a private registry with watch handlers that feed the reconciler.

Only ``on.event`` handlers are used: they keep no per-object state and add no finalizers,
so an operator that is down never blocks a deletion, and a restarted one simply reconciles
what it finds. (kopf timers and daemons would add finalizers; the periodic work runs in
the runner's own loops instead.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kernelkeeper.crds import model as crd
from kernelkeeper.kube.client import ApiError, Kube, NotLeader
from kernelkeeper.operator import render
from kernelkeeper.operator.reconcile import Reconciler
from kernelkeeper.operator.settings import OperatorConfig

log = logging.getLogger(__name__)


def kopf_settings(cfg: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True  # the Lease decides who runs, not kopf peering
    settings.posting.enabled = False  # we post our own Events on transitions
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=crd.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=crd.GROUP, key="last-handled-configuration")
    settings.networking.request_timeout = cfg.request_timeout
    settings.networking.connect_timeout = min(10.0, cfg.request_timeout)
    settings.watching.connect_timeout = min(10.0, cfg.request_timeout)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # The CRD exists before the operator starts and namespaces are given explicitly: no
    # need for cluster-wide CRD/namespace watches (or the RBAC they would require).
    settings.scanning.disabled = True
    # Server-side filtering: only kernel pods ever reach the operator, not the whole cluster's.
    settings.watching.label_selectors["pods"] = f"{crd.LABEL_COMPONENT}={render.COMPONENT_KERNEL}"
    return settings


async def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """kopf's credentials, taken from the same configuration our own client uses."""
    conf = kube.configuration
    header = await conf.get_api_key_with_prefix("BearerToken", alias="authorization")
    scheme = token = None
    if header:
        parts = str(header).split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=conf.host,
        ca_path=conf.ssl_ca_cert,
        insecure=not conf.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=conf.cert_file,
        private_key_path=conf.key_file,
    )


def fingerprint(body: Mapping[str, Any]) -> str:
    """What a session event can change that matters here: everything but status.activity."""
    meta = body.get("metadata") or {}
    status = {k: v for k, v in (body.get("status") or {}).items() if k != "activity"}
    return json.dumps([meta.get("uid"), meta.get("generation"), meta.get("deletionTimestamp"),
                       status], sort_keys=True, default=str)


def build_registry(reconciler: Reconciler, kube: Kube) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await connection_info(kube)

    async def run(namespace: str, name: str) -> None:
        try:
            await reconciler.reconcile(namespace, name)
        except NotLeader:
            log.warning("not the leader any more; skipping %s/%s", namespace, name)
        except (ApiError, TimeoutError, OSError) as exc:
            # The periodic resync retries; a raised error would only add kopf log noise.
            log.warning("reconcile of %s/%s failed: %s", namespace, name, exc)

    seen: dict[tuple[str, str], str] = {}

    @kopf.on.event(crd.GROUP, crd.VERSION, crd.PLURAL, registry=registry)
    async def session_event(type: str, name: str, namespace: str | None, body: kopf.Body,
                            **_: Any) -> None:
        if namespace is None:  # KernelSessions are namespaced; kopf types it for all kinds
            return
        key = (namespace, name)
        if type == "DELETED":
            reconciler.forget(namespace, name)
            seen.pop(key, None)
            return
        # Gateways write status.activity often; that alone changes nothing to reconcile
        # (culling and the resync round read it on their own schedule).
        fp = fingerprint(body)
        if seen.get(key) == fp:
            return
        seen[key] = fp
        await run(namespace, name)

    @kopf.on.event("", "v1", "pods", labels={crd.LABEL_COMPONENT: render.COMPONENT_KERNEL},
                   registry=registry)
    async def pod_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        kid = (body.get("metadata", {}).get("labels") or {}).get(crd.LABEL_KERNEL_ID)
        if kid and namespace:
            await run(namespace, kid)

    return registry
