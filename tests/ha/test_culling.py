"""Culling decided from the activity of all replicas (the seed's known issue #1)."""

from __future__ import annotations

import time

from kubernetes import client

from kernelkeeper.crds import model as m
from tests.gateway.client import KernelWS, http
from tests.ha.conftest import websockets_open


def _exists(cluster, ns: str, kid: str) -> bool:
    api = client.CustomObjectsApi(cluster.api_client())
    try:
        api.get_namespaced_custom_object(m.GROUP, m.VERSION, ns, m.PLURAL, kid)
        return True
    except client.ApiException as exc:
        assert exc.status == 404
        return False


def test_kernel_in_use_through_b_is_not_culled_although_a_sees_nothing(cluster, fleet):
    f = fleet(2)
    a, b = f.replicas
    status, model = http("POST", f"{a.url}/api/kernels", {"name": "python3"})
    assert status == 201, model
    kid = model["id"]
    api = client.CustomObjectsApi(cluster.api_client())
    api.patch_namespaced_custom_object(m.GROUP, m.VERSION, f.namespace, m.PLURAL, kid,
                                       {"spec": {"idleTimeoutSeconds": 6}})

    ws = KernelWS(b.ws_url, kid)
    try:
        deadline = time.monotonic() + 30  # five idle timeouts
        while time.monotonic() < deadline:
            assert ws.execute("1")[0]["content"]["status"] == "ok"
            time.sleep(1)
        assert _exists(cluster, f.namespace, kid), "culled while in use through replica B"
        assert websockets_open(a) == 0 and websockets_open(b) == 1
        obj = api.get_namespaced_custom_object(m.GROUP, m.VERSION, f.namespace, m.PLURAL, kid)
        replicas = obj["status"]["activity"]["replicas"]
        assert replicas[b.replica_id]["connections"] >= 1
        assert (replicas.get(a.replica_id) or {}).get("connections", 0) == 0
    finally:
        ws.close()

    t0 = time.monotonic()
    while _exists(cluster, f.namespace, kid):
        assert time.monotonic() - t0 < 120, "an idle kernel must be culled once the client left"
        time.sleep(0.5)
    print(f"\n[ha] culled {time.monotonic() - t0:.1f}s after the client left (idle timeout 6s)")
