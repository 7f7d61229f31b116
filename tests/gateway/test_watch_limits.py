"""A KernelSession at the CRD's size limits goes through every replica's watch untouched.

One watch event carries the whole object: at the env limits (64 values of 4,096 characters)
a JSON line of about 270 KB. A reader that cannot take such a line fails on every event of the
session and relists, and `/readyz` drops to 503 on every replica each time; this test fails
then. (kube/watch.py reads lines of any length; tests/unit/test_kube_watch.py shows it.)
"""

from __future__ import annotations

import json
import threading
import time

from kernelkeeper.crds import model as crd
from tests.gateway.client import http
from tests.helpers import http_status, wait_until

ENV_NAMES = 64  # spec.env maxProperties
ENV_VALUE = 4096  # spec.env additionalProperties.maxLength


class ReadySampler(threading.Thread):
    """GET /readyz every 50 ms until stopped; keeps every answer's status."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.statuses = f"{url}/readyz", []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.statuses.append(http_status(self.url, timeout=5))
            self.halt.wait(0.05)


def _big_session(namespace: str) -> dict:
    env = {f"KERNEL_BIG_{i:02d}": chr(ord("a") + i % 26) * ENV_VALUE for i in range(ENV_NAMES)}
    return crd.kernel_session(crd.new_kernel_id(), namespace=namespace, kernel_spec="python3",
                              username="u" * 253, env=env)


def _wait_listed(url: str, kid: str, timeout: float = 30) -> None:
    def listed() -> bool:
        status, models = http("GET", f"{url}/api/kernels")
        return status == 200 and kid in [m["id"] for m in models]

    wait_until(listed, timeout, f"kernel {kid} in GET /api/kernels of {url}", interval=0.2)


def test_watch_takes_a_session_at_the_size_limits_and_readyz_stays_200(
        cluster, gateways, kk_namespace):
    gw = gateways.start(kk_namespace)
    sampler = ReadySampler(gw.url)
    sampler.start()
    try:
        big = _big_session(kk_namespace)
        line = len(json.dumps({"type": "ADDED", "object": big}))
        assert line > 256 * 1024, line  # above aiohttp's default reader limit
        cluster.kubectl("create", "-f", "-", input=json.dumps(big))
        kid = big["metadata"]["name"]
        _wait_listed(gw.url, kid)  # only the watch (or a relist) puts it in the list
        for i in range(5):  # each change is another event carrying the whole object
            cluster.kubectl("annotate", "ks", "-n", kk_namespace, kid, f"test.kernelkeeper.io/n={i}",
                            "--overwrite")
            time.sleep(1.0)
        # A session created after the big one still arrives through the same watch.
        small = crd.kernel_session(crd.new_kernel_id(), namespace=kk_namespace,
                                   kernel_spec="python3", username="small")
        cluster.kubectl("create", "-f", "-", input=json.dumps(small))
        _wait_listed(gw.url, small["metadata"]["name"])
        time.sleep(2.0)
    finally:
        sampler.halt.set()
        sampler.join(10)
    assert sampler.statuses and set(sampler.statuses) == {200}, \
        f"/readyz answered {sorted(set(sampler.statuses))} over {len(sampler.statuses)} samples"
    log = gw.log_text()
    assert "KernelSession watch failed" not in log, log[-3000:]
    status, model = http("GET", f"{gw.url}/api/kernels/{kid}")
    assert status == 200 and model["id"] == kid
