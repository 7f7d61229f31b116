"""The gateway process: Tornado application, routes, startup and graceful SIGTERM.

Shutting down never stops a kernel: websockets are closed with 1001 (going away) so clients
reconnect to another replica, ZMQ sockets are dropped, KernelSessions are left alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from kernelkeeper.gateway import handlers as h
from kernelkeeper.gateway.activity import ActivityReporter
from kernelkeeper.gateway.availability import EXIT_LEASE_LOST, Availability
from kernelkeeper.gateway.channels import GOING_AWAY, ChannelsHandler
from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.gateway.hub_identity import HubUsers
from kernelkeeper.gateway.identity import Authenticator
from kernelkeeper.gateway.kernels import KernelManager
from kernelkeeper.gateway.metrics import Metrics
from kernelkeeper.gateway.sessions import ClientSession
from kernelkeeper.gateway.store import SessionStore
from kernelkeeper.kernel.specs import SpecCatalog
from kernelkeeper.kube.client import Kube

log = logging.getLogger("kernelkeeper.gateway")

# How long a stopping replica waits for replies to requests it already forwarded (a long
# execute's reply is not waited for: the client reconnects to another replica meanwhile).
REPLY_GRACE = 2.0

_ID = r"([^/]+)"


def routes(base: str) -> list[tuple[str, type, dict[str, Any]] | tuple[str, type]]:
    table: list[Any] = [
        (rf"{base}/api/?", h.ApiHandler),
        (rf"{base}/api/kernelspecs/?", h.KernelSpecsHandler),
        (rf"{base}/api/kernelspecs/{_ID}/?", h.KernelSpecHandler),
        (rf"{base}/kernelspecs/{_ID}/{_ID}", h.KernelSpecResourceHandler),
        (rf"{base}/api/kernels/?", h.KernelsHandler),
        (rf"{base}/api/kernels/{_ID}/channels", ChannelsHandler),
        (rf"{base}/api/kernels/{_ID}/(interrupt|restart)/?", h.KernelActionHandler),
        (rf"{base}/api/kernels/{_ID}/?", h.KernelHandler),
    ]
    for prefix in dict.fromkeys(["", base]):
        table += [(rf"{prefix}/healthz", h.HealthHandler), (rf"{prefix}/readyz", h.ReadyHandler),
                  (rf"{prefix}/metrics", h.MetricsHandler)]
    table.append((r".*", h.NotFoundHandler))
    return table


class Gateway:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.draining = False
        self.sockets: set[ChannelsHandler] = set()
        # REST requests being answered: a stopping replica finishes them (a POST that has
        # created its KernelSession answers with it rather than dropping the connection).
        self.requests: set[RequestHandler] = set()
        self.metrics = Metrics()

    async def start(self) -> None:
        cfg = self.cfg
        self.kube = await Kube.connect(cfg.kubeconfig or None)
        self.store = SessionStore(self.kube, cfg.namespace)
        self.specs = SpecCatalog(list(cfg.kernel_spec_path), ttl=30.0)
        self.manager = KernelManager(cfg, self.store, self.specs, self.metrics)
        hub = HubUsers(cfg.jupyterhub_api_url, cfg.jupyterhub_cache_seconds) \
            if cfg.jupyterhub_api_url else None
        self.auth = Authenticator(cfg.auth_token, cfg.users_file, cfg.users_reload_interval, hub)
        await self.auth.load()
        # Its own connection pool, so renewals never queue behind watch or activity traffic.
        self.lease_kube = await Kube.connect(cfg.kubeconfig or None,
                                             timeout=max(1.0, cfg.retry_period))
        self.availability = Availability(
            cfg.availability_mode, self.lease_kube,
            # One identity per process, not per replica slot: a restarted replica is a new
            # candidate (a new epoch), never the old holder silently resuming its tenure.
            identity=f"{cfg.replica_id}_{uuid.uuid4().hex[:8]}", lease_name=cfg.lease_name,
            lease_namespace=cfg.lease_namespace or cfg.namespace,
            duration=cfg.lease_duration, renew_deadline=cfg.renew_deadline,
            retry=cfg.retry_period, on_lost=self.fence)
        # Reads the manager's connections; neither holds the other.
        self.activity = ActivityReporter(cfg, self.store, self.metrics,
                                         kernels=self.manager.conns,
                                         serving=self.availability.serving)
        self.store.start()
        self.auth.start()
        self.activity.start()
        self.availability.start()
        m = self.metrics
        m.gauge("kernels", lambda: len(self.store.cache), "KernelSessions in the namespace.")
        m.gauge("hydrated_kernels", lambda: len(self.manager.conns),
                "Kernels this replica holds ZMQ connections to.")
        m.gauge("websocket_connections", lambda: len(self.sockets), "Open websockets.")
        m.gauge("draining", lambda: int(self.draining), "1 while shutting down.")
        m.gauge("active", lambda: int(self.availability.serving()),
                "1 while this replica serves (always, in active-active).")
        m.gauge("lease_epoch", lambda: self.availability.epoch,
                "leaseTransitions of this replica's tenure (active-passive).")
        self.app = Application(
            routes(cfg.base_path),
            kk_config=cfg, kk_auth=self.auth, kk_manager=self.manager, kk_store=self.store,
            kk_specs=self.specs,
            kk_metrics=self.metrics, kk_sockets=self.sockets, kk_requests=self.requests,
            kk_draining=lambda: self.draining,
            kk_availability=self.availability,
            websocket_ping_interval=cfg.ws_ping_interval or None,
            websocket_max_message_size=cfg.ws_max_message_size,
            log_function=self._log_request,
        )
        self.server = HTTPServer(self.app, max_body_size=16 * 1024 * 1024)
        self.server.listen(cfg.port, cfg.ip)
        log.info("kernelkeeper gateway %s listening on http://%s:%d%s/ (namespace %s, %s)",
                 cfg.replica_id, cfg.ip, cfg.port, cfg.base_path, cfg.namespace,
                 self.availability.mode)

    async def fence(self) -> None:
        """Lost the Lease: refuse everything, drop every websocket, exit non-zero at once.

        Exiting (rather than re-joining as a standby) is deliberate: whatever state this
        process holds belonged to an epoch that is over; a fresh process starts clean.
        """
        self.draining = True
        for ws in list(self.sockets):
            ws.close_quietly(GOING_AWAY, "replica lost its Lease")
        await asyncio.sleep(0.2)  # let the close frames reach the clients; nothing is served
        log.error("fenced: exiting with status %d", EXIT_LEASE_LOST)
        logging.shutdown()
        os._exit(EXIT_LEASE_LOST)

    def _log_request(self, handler: RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING
        if handler.request.path.endswith(("/healthz", "/readyz", "/metrics")) and status < 400:
            level = logging.DEBUG
        log.log(level, "%d %s %s %.1fms", status, handler.request.method,
                handler.request.path, 1000 * handler.request.request_time())

    async def _await_replies(self, grace: float) -> None:
        """Up to `grace` seconds for replies to requests already forwarded to kernels, so that
        closing the websocket does not drop an answer that is a few milliseconds away."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace

        def awaited() -> int:
            return sum(len(c.awaiting) for conn in self.manager.conns.values()
                       for c in conn.clients.values()
                       if isinstance(c, ClientSession) and c.connected())

        while awaited() and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop accepting, send websockets away so clients reconnect elsewhere, keep kernels."""
        self.draining = True
        log.info("shutting down: %d websockets, kernels keep running", len(self.sockets))
        # Stop serving and hand the Lease over before anything else, so a standby is
        # already taking over while our websockets close.
        await self.availability.stop()
        self.server.stop()
        await self._await_replies(REPLY_GRACE)
        for ws in list(self.sockets):
            ws.close_quietly(GOING_AWAY, "gateway shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.shutdown_timeout
        while (self.sockets or self.requests) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.requests:
            log.warning("stopping with %d requests unanswered after %.0fs", len(self.requests),
                        self.cfg.shutdown_timeout)
        await self.activity.close(final_flush=True)
        await self.auth.close()
        self.manager.close()
        await self.store.close()
        await self.kube.close()
        await self.lease_kube.close()
        try:
            await asyncio.wait_for(self.server.close_all_connections(), 2)
        except TimeoutError:
            pass


async def serve(cfg: GatewayConfig) -> None:
    gateway = Gateway(cfg)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()
    log.info("gateway stopped")
