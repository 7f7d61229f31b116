"""REST handlers: /api, kernel specs, kernels, health and metrics."""

from __future__ import annotations

import asyncio
import json
import mimetypes
from typing import Any
from urllib.parse import quote

from tornado import web

from kernelkeeper import __version__
from kernelkeeper.gateway.base import GatewayMixin
from kernelkeeper.gateway.errors import GatewayError
from kernelkeeper.gateway.kernels import KernelManager
from kernelkeeper.gateway.validation import parse_body
from kernelkeeper.kernel.specs import KernelSpec


class JSONHandler(GatewayMixin, web.RequestHandler):
    async def prepare(self) -> None:
        # Counted before auth: a stopping replica answers even the 401 it is computing.
        self.settings["kk_requests"].add(self)
        await super().prepare()

    def on_finish(self) -> None:
        self.settings["kk_requests"].discard(self)

    def on_connection_close(self) -> None:
        self.settings["kk_requests"].discard(self)
        super().on_connection_close()

    @property
    def manager(self) -> KernelManager:
        manager: KernelManager = self.settings["kk_manager"]
        return manager

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class ApiHandler(JSONHandler):
    def get(self) -> None:
        self.write_json({"version": __version__, "gateway": "kernelkeeper"})


# ---------------------------------------------------------------------- kernel specs


def spec_model(spec: KernelSpec, base: str) -> dict[str, Any]:
    body = {k: v for k, v in spec.spec.items() if k != "metadata"}
    meta = {k: v for k, v in (spec.spec.get("metadata") or {}).items() if k != "kernelkeeper"}
    body["metadata"] = meta
    resources = {}
    for name in spec.resources:
        stem = name.rsplit(".", 1)[0]
        resources[stem if stem.startswith("logo-") else name] = \
            f"{base}/kernelspecs/{quote(spec.name)}/{quote(name)}"
    return {"name": spec.name, "spec": body, "resources": resources}


class KernelSpecsHandler(JSONHandler):
    async def get(self) -> None:
        specs = await self.settings["kk_specs"].get()
        base = self.settings["kk_config"].base_path
        # jupyter_server with KERNEL_USERNAME set asks for one spec as ?user=<u>/<name>.
        user = self.get_argument("user", "")
        if "/" in user:
            name = user.rsplit("/", 1)[1]
            if name not in specs:
                raise GatewayError(404, "Not Found", f"Kernel spec {name} not found")
            self.write_json(spec_model(specs[name], base))
            return
        default = self.settings["kk_config"].default_kernel_name
        self.write_json({
            "default": default if default in specs else next(iter(sorted(specs)), ""),
            "kernelspecs": {n: spec_model(s, base) for n, s in specs.items()},
        })


class KernelSpecHandler(JSONHandler):
    async def get(self, name: str) -> None:
        specs = await self.settings["kk_specs"].get()
        if name not in specs:
            raise GatewayError(404, "Not Found", f"Kernel spec {name} not found")
        self.write_json(spec_model(specs[name], self.settings["kk_config"].base_path))


class KernelSpecResourceHandler(JSONHandler):
    async def get(self, name: str, filename: str) -> None:
        spec = (await self.settings["kk_specs"].get()).get(name)
        # Only files the spec directory lists: no path from the client reaches the filesystem.
        if spec is None or filename not in spec.resources:
            raise GatewayError(404, "Not Found", f"No resource {filename} for kernel spec {name}")
        try:
            data = await asyncio.to_thread(spec.read_resource, filename)
        except OSError:
            raise GatewayError(404, "Not Found",
                               f"No resource {filename} for kernel spec {name}") from None
        self.set_header("Content-Type",
                        mimetypes.guess_type(filename)[0] or "application/octet-stream")
        self.finish(data)


# ---------------------------------------------------------------------- kernels


class KernelsHandler(JSONHandler):
    async def get(self) -> None:
        if not self.settings["kk_config"].list_kernels:
            raise GatewayError(403, "Forbidden", "listing kernels is disabled")
        self.write_json(await self.manager.list_models(self.identity))

    async def post(self) -> None:
        if self.settings["kk_draining"]():
            raise GatewayError(503, "Service Unavailable", "gateway is shutting down")
        model = await self.manager.start(self.identity, parse_body(self.request.body))
        base = self.settings["kk_config"].base_path
        self.set_header("Location", f"{base}/api/kernels/{model['id']}")
        self.write_json(model, 201)


class KernelHandler(JSONHandler):
    async def get(self, kernel_id: str) -> None:
        self.write_json(await self.manager.get_model(self.identity, kernel_id))

    async def delete(self, kernel_id: str) -> None:
        await self.manager.delete(self.identity, kernel_id)
        self.set_status(204)
        self.finish()


class KernelActionHandler(JSONHandler):
    async def post(self, kernel_id: str, action: str) -> None:
        if action == "interrupt":
            await self.manager.interrupt(self.identity, kernel_id)
            self.set_status(204)
            self.finish()
        else:
            self.write_json(await self.manager.restart(self.identity, kernel_id))


# ---------------------------------------------------------------------- operations


class HealthHandler(JSONHandler):
    auth_exempt = True  # probes carry no token
    availability_exempt = True

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(JSONHandler):
    """`/readyz`: 200 while this replica serves the API (a standby answers 503).

    `/readyz?standby=1`: 200 also for a healthy standby (watch synced, not draining, its Lease
    election running), i.e. "able to serve or to take over". The chart's readinessProbe uses it,
    so a rolling update in active-passive mode can count new standbys as available and remove
    the holder; the Service still selects only the holder, through its role=active label.
    """

    auth_exempt = True
    availability_exempt = True

    def get(self) -> None:
        availability = self.settings.get("kk_availability")
        if self.get_argument("standby", "").lower() in ("1", "true", "yes"):
            if availability is not None and not availability.can_take_over():
                raise GatewayError(503, "Service Unavailable", availability.why_not_serving())
        else:
            self.refuse_unless_serving()
        if self.settings["kk_draining"]():
            raise GatewayError(503, "Service Unavailable", "shutting down")
        if not self.settings["kk_store"].healthy:
            raise GatewayError(503, "Service Unavailable", "KernelSession watch not synced")
        serving = availability is None or availability.serving()
        self.write_json({"status": "ready" if serving else "standby",
                         "replica": self.settings["kk_config"].replica_id})


class MetricsHandler(JSONHandler):
    availability_exempt = True

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(self.settings["kk_metrics"].render())


class NotFoundHandler(JSONHandler):
    async def prepare(self) -> None:
        await super().prepare()
        raise GatewayError(404, "Not Found", "")
