"""Run the operator: wait for the Lease, then run kopf and the periodic loops while leading.

Exit codes: 0 after SIGTERM/SIGINT (Lease released), 1 when leadership was lost or kopf
died (the process exits so its supervisor restarts it as a fresh standby: simpler and safer
than re-arming in place).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from kernelkeeper.kube.client import Kube, NotLeader
from kernelkeeper.kube.lease import LeaseThread
from kernelkeeper.operator.handlers import build_registry, kopf_settings
from kernelkeeper.operator.health import OperatorHealth, Phase, start_server
from kernelkeeper.operator.metrics import OperatorMetrics
from kernelkeeper.operator.reconcile import Reconciler
from kernelkeeper.operator.settings import OperatorConfig

log = logging.getLogger("kernelkeeper.operator")

EXIT_OK = 0
EXIT_LOST = 1


async def _every(interval: float, what: str, fn: Callable[[], Awaitable[object]],
                 health: OperatorHealth) -> None:
    while True:
        try:
            await fn()
        except NotLeader:
            return
        except Exception as exc:  # one failed round must not end the loop
            log.warning("%s failed: %s", what, exc)
        # A failed round (the API server was down) still shows the loop goes round: liveness
        # is about a stuck operator, which a restart helps, not an unreachable API server.
        health.round_done(what)
        await asyncio.sleep(interval)


async def run(cfg: OperatorConfig) -> int:
    # The Lease runs on a thread, loop and connection pool of its own: renewals must never
    # queue behind a burst of reconcile work (a late renewal costs the Lease).
    lease = LeaseThread(lambda: Kube.connect(cfg.kubeconfig, timeout=cfg.request_timeout),
                        cfg.lease_name, cfg.lease_namespace, cfg.identity,
                        duration=cfg.lease_duration, renew_deadline=cfg.renew_deadline,
                        retry=cfg.retry_period)

    def lease_observed() -> bool:
        return lease.elector is not None and lease.elector.holder_hint() is not None

    health = OperatorHealth(stall_timeout=cfg.loop_stall_timeout, is_leader=lease.is_leader,
                            lease_observed=lease_observed)
    metrics = OperatorMetrics(
        lease_holder=lease.is_leader,
        lease_transitions=lambda: lease.elector.observed_transitions() if lease.elector else 0,
        loop_lag=health.loop_lag)
    server = start_server(health, metrics.render, cfg.health_ip, cfg.health_port)
    beating = asyncio.create_task(health.heartbeat(), name="heartbeat")
    try:
        return await _run(cfg, lease, health, metrics)
    finally:
        health.set_phase(Phase.STOPPING)
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        if server is not None:
            await asyncio.to_thread(server.close)


async def _run(cfg: OperatorConfig, lease: LeaseThread, health: OperatorHealth,
               metrics: OperatorMetrics) -> int:
    kube = await Kube.connect(cfg.kubeconfig, timeout=cfg.request_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def install_signals() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    install_signals()
    lease.start()
    health.set_phase(Phase.STANDBY)
    code = EXIT_OK
    try:
        acquiring = asyncio.create_task(lease.acquired())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not acquiring.done():
            acquiring.cancel()
            log.info("stopped while standing by")
            return EXIT_OK
        stopping.cancel()
        acquiring.result()
        code = await _lead(cfg, kube, lease, stop, install_signals, health, metrics)
        return code
    finally:
        health.set_phase(Phase.STOPPING)
        await lease.close(release=code == EXIT_OK)
        await kube.close()


async def _lead(cfg: OperatorConfig, kube: Kube, lease: LeaseThread, stop: asyncio.Event,
                install_signals: Callable[[], None], health: OperatorHealth,
                metrics: OperatorMetrics) -> int:
    log.info("%s is the leader: starting kopf", cfg.identity)
    kube.guard = lease.is_leader  # every write checks the Lease first
    reconciler = Reconciler(cfg, kube, metrics=metrics)
    # These tasks exist before kopf starts, so kopf's shutdown leaves them to us.
    holding = asyncio.create_task(lease.lost(), name="lease holder")
    stopping = asyncio.create_task(stop.wait(), name="stop waiter")
    loops = [
        asyncio.create_task(_every(cfg.resync_interval, "resync", reconciler.resync, health),
                            name="resync"),
        asyncio.create_task(_every(cfg.cull_interval, "culling", reconciler.cull, health),
                            name="culling"),
    ]
    stop_flag = asyncio.Event()
    existing = set(asyncio.all_tasks())
    tasks = await kopf.spawn_tasks(
        registry=build_registry(reconciler, kube),
        settings=kopf_settings(cfg),
        standalone=True,
        clusterwide=not cfg.namespaces,
        namespaces=list(cfg.namespaces),
        stop_flag=stop_flag,
    )
    # kopf installs its own SIGTERM handler; ours must win so the Lease is released.
    install_signals()
    kopf_task = asyncio.create_task(kopf.run_tasks(tasks, ignored=existing), name="kopf")
    health.start_rounds({"resync": cfg.round_deadline(cfg.resync_interval),
                         "culling": cfg.round_deadline(cfg.cull_interval)})
    health.set_phase(Phase.LEADING)
    code = EXIT_OK
    try:
        await asyncio.wait({holding, stopping, kopf_task}, return_when=asyncio.FIRST_COMPLETED)
        if holding.done():
            log.error("leadership lost: stopping kopf and exiting")
            code = EXIT_LOST
        elif kopf_task.done():
            log.error("kopf stopped unexpectedly: %r", kopf_task.exception()
                      if not kopf_task.cancelled() else "cancelled")
            code = EXIT_LOST
        else:
            log.info("stop requested: stopping kopf and releasing the lease")
    finally:
        health.set_phase(Phase.STOPPING)
        stop_flag.set()
        for task in loops:
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(kopf_task, timeout=15)
        pending: list[asyncio.Future[Any]] = [*loops, holding, stopping]
        for fut in pending:
            fut.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await reconciler.close()
    return code
