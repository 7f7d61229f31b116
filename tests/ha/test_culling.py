"""Culling decided from the activity of all replicas (the seed's known issue #1)."""

from __future__ import annotations

import time

from tests.gateway.client import KernelWS, start_kernel
from tests.ha.conftest import websockets_open
from tests.helpers import get_session, seconds_until, set_idle_timeout


def test_kernel_in_use_through_b_is_not_culled_although_a_sees_nothing(cluster, fleet):
    f = fleet(2)
    a, b = f.replicas
    kid = start_kernel(a.url)
    # The positive control: a kernel nobody uses, with the same idle timeout, must be culled
    # while the one in use is kept, or this test would pass with culling switched off.
    unused = start_kernel(a.url)
    ws = KernelWS(b.ws_url, kid)
    try:
        assert ws.execute("1")[0]["content"]["status"] == "ok"
        for k in (kid, unused):
            set_idle_timeout(cluster, f.namespace, k, 6)
        deadline = time.monotonic() + 30  # five idle timeouts
        while time.monotonic() < deadline:
            assert ws.execute("1")[0]["content"]["status"] == "ok"
            time.sleep(1)
        assert get_session(cluster, f.namespace, unused) is None, \
            "the unused kernel was not culled: culling does not work at all"
        obj = get_session(cluster, f.namespace, kid)
        assert obj is not None, "culled while in use through replica B"
        assert websockets_open(a) == 0 and websockets_open(b) == 1
        replicas = obj["status"]["activity"]["replicas"]
        assert replicas[b.replica_id]["connections"] >= 1
        assert (replicas.get(a.replica_id) or {}).get("connections", 0) == 0
    finally:
        ws.close()

    took = seconds_until(lambda: get_session(cluster, f.namespace, kid) is None, 120,
                         "an idle kernel culled once the client left", interval=0.5)
    print(f"\n[ha] culled {took:.1f}s after the client left (idle timeout 6s)")
