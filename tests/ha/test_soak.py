"""The chaos soak (bench/soak.py) over the HA fleet: nothing a client sent or a kernel printed
is lost while gateway replicas die, the API server stops and etcd restarts.

Active-active replicas as host processes behind a real nginx (tests/ha/conftest.py), kernels in
Pods of the real node run by the real operator. This test is each replica's supervisor (it
starts a new process in a slot once the old one has exited) and the operator's (whose Lease
lapses while the API server is stopped).

The short form runs in `make test` (60 s, 4 clients, 3 replicas; the table shows with -s). The
full form is `python -m bench.soak`, which runs this module with KK_SOAK_SECONDS=300,
KK_SOAK_CLIENTS=10 and KK_SOAK_RESULTS=bench/results (soak.md, soak.json).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from pathlib import Path

import pytest

from bench.soak import Controls, run_soak
from kernelkeeper.local.restart import restart
from tests.helpers import metric, wait_until

SOAK_SECONDS = float(os.environ.get("KK_SOAK_SECONDS", "60"))
CLIENTS = int(os.environ.get("KK_SOAK_CLIENTS", "4"))
REPLICAS = int(os.environ.get("KK_SOAK_REPLICAS", "3"))
KILL_INTERVAL = float(os.environ.get("KK_SOAK_KILL_INTERVAL", "10"))
SEED = int(os.environ["KK_SOAK_SEED"]) if os.environ.get("KK_SOAK_SEED") else None
RESULTS = os.environ.get("KK_SOAK_RESULTS")


class FleetControls:
    """bench.soak.Controls over a Fleet: slots r0..rN-1, the cluster's apiserver and etcd."""

    def __init__(self, fleet, token: str, cluster, operator) -> None:
        self.fleet, self.token, self.cluster, self.operator = fleet, token, cluster, operator
        self.generation = [0] * len(fleet.replicas)

    def _slot(self, name: str) -> int:
        return int(name[1:])

    def _gw(self, name: str):
        return self.fleet.replicas[self._slot(name)]

    def replicas(self) -> list[str]:
        return [f"r{i}" for i in range(len(self.fleet.replicas))]

    def alive(self, name: str) -> bool:
        return self._gw(name).alive()

    def signal(self, name: str, sig: int) -> None:
        gw = self._gw(name)
        if gw.alive():
            gw.proc.send_signal(sig)

    def start(self, name: str) -> None:
        i = self._slot(name)
        old = self.fleet.replicas[i]
        assert not old.alive(), f"{name} is still running"
        self.generation[i] += 1
        self.fleet.replicas[i] = self.fleet.factory.start(
            self.fleet.namespace, env=self.fleet.env(), replica_id=f"{name}-{self.generation[i]}",
            port=old.port, wait=False)

    def websockets(self, name: str) -> int:
        return int(metric(self._gw(name).url, "_websocket_connections", self.token))

    def _apiserver_pid(self) -> int:
        record = self.cluster.env.record("kube-apiserver")
        assert record is not None and record.alive()
        return int(record.pid)

    def pause_apiserver(self) -> None:
        os.kill(self._apiserver_pid(), signal.SIGSTOP)

    def resume_apiserver(self) -> None:
        os.kill(self._apiserver_pid(), signal.SIGCONT)

    def restart_etcd(self) -> None:
        restart(self.cluster.env, "etcd")

    def heal(self) -> list[str]:
        main = self.operator.main
        if main is None or main.alive():
            return []
        self.operator.start_main()
        return ["operator"]

    def controls(self) -> Controls:
        return Controls(replicas=self.replicas, alive=self.alive, signal=self.signal,
                        start=self.start, websockets=self.websockets,
                        pause_apiserver=self.pause_apiserver,
                        resume_apiserver=self.resume_apiserver,
                        restart_etcd=self.restart_etcd, heal=self.heal)


def _control_plane_back(cluster, operator) -> None:
    """What later tests need: etcd and the API server serving, the operator leading."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(cluster.env.record("kube-apiserver").pid, signal.SIGCONT)
    etcd = cluster.env.record("etcd")
    if etcd is None or not etcd.alive():
        restart(cluster.env, "etcd")
    wait_until(lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
               90, "the API server ready after the soak", interval=0.5)
    if operator.main is None or not operator.main.alive():
        operator.start_main()
    operator.main.wait_leading(90)


@pytest.mark.timeout(int(SOAK_SECONDS) + 480)
def test_nothing_lost_while_replicas_die(cluster, operator, fleet):
    token = secrets.token_hex(16)
    f = fleet(REPLICAS, "active-active", KERNELKEEPER_GATEWAY_AUTH_TOKEN=token)
    try:
        result = run_soak(f.url, token, FleetControls(f, token, cluster, operator).controls(),
                          duration=SOAK_SECONDS, kill_interval=KILL_INTERVAL, clients=CLIENTS,
                          seed=SEED)
    finally:
        _control_plane_back(cluster, operator)
    print("\n" + result.table())
    for problem in result.first_problems():
        print(f"[soak] {problem}")
    if RESULTS:
        md, _ = result.write(Path(RESULTS))
        print(f"[soak] written to {md} and soak.json beside it")
    # The soak did what it claims (work done, every kind of chaos happened) ...
    assert not result.vacuous(), result.vacuous()
    # ... and nothing was lost, doubled or reordered.
    assert not result.failures(), "\n".join(result.failures())
