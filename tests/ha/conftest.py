"""HA fixtures: gateway replicas behind a real nginx, in either availability mode."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kernelkeeper.local import nginx
from kernelkeeper.local.processes import free_port
from tests.fixtures.gateway import GatewayFactory, GatewayProcess
from tests.gateway.conftest import kk_namespace  # noqa: F401 - kernels run by operator + node
from tests.helpers import http_status, metric, wait_until


def websockets_open(gw: GatewayProcess) -> int:
    """Websockets a replica holds right now, from its own /metrics."""
    return int(metric(gw.url, "_websocket_connections"))


@dataclass
class Fleet:
    """N gateway replicas of one availability mode, and nginx in front of them."""

    factory: GatewayFactory
    namespace: str
    mode: str
    workdir: Path
    lease: str = field(default_factory=lambda: f"gw-{uuid.uuid4().hex[:6]}")
    replicas: list[GatewayProcess] = field(default_factory=list)
    nginx_proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    lease_args: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "KERNELKEEPER_GATEWAY_AVAILABILITY_MODE": self.mode,
            "KERNELKEEPER_GATEWAY_LEASE_NAME": self.lease,
            "KERNELKEEPER_GATEWAY_LEASE_NAMESPACE": self.namespace,
            **self.lease_args,
        }

    def start_replica(self, replica_id: str, port: int | None = None) -> GatewayProcess:
        gw = self.factory.start(self.namespace, env=self.env(), replica_id=replica_id,
                                port=port, wait=False)
        wait_until(lambda: http_status(f"{gw.url}/healthz") == 200 or not gw.alive(), 60,
                   f"{replica_id} healthy", interval=0.05)
        assert gw.alive(), gw.log_text()[-3000:]
        return gw

    def start(self, n: int) -> Fleet:
        self.replicas = [self.start_replica(f"r{i}") for i in range(n)]
        self.port = free_port()
        conf = nginx.write_config(self.workdir / "nginx", self.port, [g.port for g in self.replicas])
        log = (self.workdir / "nginx.log").open("ab")
        self.nginx_proc = subprocess.Popen(
            nginx.command(nginx.find_nginx(), conf, self.workdir / "nginx"),
            stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: http_status(f"{self.url}/healthz") in (200, 503), 30, "nginx up",
                   interval=0.05)
        return self

    def restart(self, gw: GatewayProcess) -> GatewayProcess:
        """A new process in the same slot (same port), as a Deployment rollout would."""
        new = self.start_replica(gw.replica_id + "b", port=gw.port)
        self.replicas[self.replicas.index(gw)] = new
        return new

    def active(self) -> list[GatewayProcess]:
        return [g for g in self.replicas if g.alive() and http_status(f"{g.url}/readyz") == 200]

    def stop(self) -> None:
        if self.nginx_proc is not None:
            self.nginx_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nginx_proc.wait(10)


@pytest.fixture
def fleet(gateways, kk_namespace, tmp_path) -> Iterator[callable]:  # noqa: F811
    made: list[Fleet] = []

    def make(n: int, mode: str = "active-active", **lease_args: str) -> Fleet:
        f = Fleet(gateways, kk_namespace, mode, tmp_path, lease_args=dict(lease_args))
        made.append(f)
        return f.start(n)

    try:
        yield make
    finally:
        for f in made:
            f.stop()
