"""A kernel manager and client pair for notebook runners, backed by a kernelkeeper gateway.

    nbclient:  NotebookClient(nb, km=GatewayKernelManager(kernel_name="python3"))
    papermill: papermill.execute_notebook(..., kernel_manager_class=
                   "kernelkeeper.client.manager.GatewayKernelManager")

The gateway's URL and token come from ``JUPYTER_GATEWAY_URL`` and ``JUPYTER_GATEWAY_AUTH_TOKEN``
(the names jupyter_server's gateway client reads) unless set as traits. The manager talks to
the REST API; the client's channels are one websocket (connection.py) that reconnects and
resumes by itself, so a gateway replica's death in the middle of a cell is invisible to the
runner.
"""

from __future__ import annotations

import asyncio
import json
import os
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Unicode, default

from kernelkeeper.client.connection import KernelGone, ResumingWebsocket

CHANNELS = ("shell", "iopub", "stdin", "control")


class _Switch:
    """start/stop/is_alive, which jupyter_client calls on every channel."""

    running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def is_alive(self) -> bool:
        return self.running


class WebsocketChannel(_Switch):
    """One channel of the websocket, with the methods jupyter_client and nbclient call."""

    def __init__(self, name: str, client: GatewayKernelClient) -> None:
        self.name = name
        self.client = client
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def send(self, msg: dict[str, Any]) -> None:
        self.client.connection().send(self.name, msg)

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise Empty from None

    async def get_msgs(self) -> list[dict[str, Any]]:
        msgs = []
        while not self.queue.empty():
            msgs.append(self.queue.get_nowait())
        return msgs

    async def msg_ready(self) -> bool:
        return not self.queue.empty()


class HeartbeatChannel(_Switch):
    """The gateway owns the kernel's heartbeat; this one beats while the websocket can."""

    time_to_dead = 3.0

    def __init__(self, client: GatewayKernelClient) -> None:
        self.client = client

    def pause(self) -> None:
        pass

    def unpause(self) -> None:
        pass

    def is_beating(self) -> bool:
        ws = self.client.ws
        return ws is not None and ws.alive


class GatewayKernelClient(AsyncKernelClient):
    """jupyter_client's async client whose channels ride on one resuming websocket."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ws: ResumingWebsocket | None = None
        self._channels = {name: WebsocketChannel(name, self) for name in CHANNELS}
        self._heartbeat = HeartbeatChannel(self)

    @property
    def manager(self) -> GatewayKernelManager:
        parent = self.parent
        if not isinstance(parent, GatewayKernelManager):
            raise RuntimeError("a GatewayKernelClient is made by GatewayKernelManager.client()")
        return parent

    def connection(self) -> ResumingWebsocket:
        if self.ws is None:
            raise RuntimeError("start_channels() first")
        return self.ws

    @property
    def shell_channel(self) -> WebsocketChannel:
        return self._channels["shell"]

    @property
    def iopub_channel(self) -> WebsocketChannel:
        return self._channels["iopub"]

    @property
    def stdin_channel(self) -> WebsocketChannel:
        return self._channels["stdin"]

    @property
    def control_channel(self) -> WebsocketChannel:
        return self._channels["control"]

    @property
    def hb_channel(self) -> HeartbeatChannel:
        return self._heartbeat

    async def start_channels(  # type: ignore[override]
            self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = True,
            control: bool = True) -> None:
        km = self.manager
        if km.kernel_id is None:
            raise RuntimeError("the kernel is not started")
        if self.ws is None:
            self.ws = ResumingWebsocket(km.ws_url(), km.kernel_id, token=km.resolved_token(),
                                        on_message=self._dispatch,
                                        reconnect_timeout=km.reconnect_timeout,
                                        connect_timeout=km.request_timeout)
            self.session.session = self.ws.session_id
            await self.ws.connect()
        for channel in self._channels.values():
            channel.start()
        self._heartbeat.start()
        self.allow_stdin = stdin

    def _dispatch(self, channel: str, msg: dict[str, Any]) -> None:
        target = self._channels.get(channel)
        if target is not None:
            target.queue.put_nowait(msg)

    async def stop_channels(self) -> None:  # type: ignore[override]
        for channel in self._channels.values():
            channel.stop()
        self._heartbeat.stop()
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    @property
    def channels_running(self) -> bool:
        return any(c.is_alive() for c in self._channels.values())


class GatewayKernelManager(AsyncKernelManager):
    """Starts, interrupts, restarts and deletes one kernel through a kernelkeeper gateway."""

    gateway_url = Unicode(config=True, help="The gateway's base URL (JUPYTER_GATEWAY_URL).")
    auth_token = Unicode(config=True, help="The gateway's token (JUPYTER_GATEWAY_AUTH_TOKEN).")
    request_timeout = Float(120.0, config=True, help="Seconds for one REST call or connect.")
    reconnect_timeout = Float(300.0, config=True,
                              help="Seconds the websocket keeps trying to come back.")
    kernel_id = Unicode(None, allow_none=True)

    @default("gateway_url")
    def _gateway_url_default(self) -> str:
        return os.environ.get("JUPYTER_GATEWAY_URL", "")

    @default("auth_token")
    def _auth_token_default(self) -> str:
        return os.environ.get("JUPYTER_GATEWAY_AUTH_TOKEN", "")

    def resolved_token(self) -> str:
        return str(self.auth_token)

    def _base(self) -> str:
        if not self.gateway_url:
            raise RuntimeError("no gateway URL: set JUPYTER_GATEWAY_URL or gateway_url")
        return str(self.gateway_url).rstrip("/")

    def ws_url(self) -> str:
        base = self._base()
        return "ws" + base[4:] if base.startswith("http") else base

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None
                    ) -> dict[str, Any] | None:
        headers = {"Content-Type": "application/json"}
        if self.auth_token:
            headers["Authorization"] = f"token {self.auth_token}"
        request = HTTPRequest(f"{self._base()}{path}", method=method, headers=headers,
                              body=json.dumps(body) if body is not None else
                              (b"" if method == "POST" else None),
                              request_timeout=self.request_timeout,
                              connect_timeout=self.request_timeout)
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            reason = exc.response.body.decode(errors="replace")[:500] if exc.response else ""
            raise RuntimeError(f"{method} {path}: HTTP {exc.code} {reason}") from None
        return json.loads(response.body) if response.body else None

    # ------------------------------------------------------------------ jupyter_client API

    @property
    def has_kernel(self) -> bool:
        return self.kernel_id is not None

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        env = {k: v for k, v in (kw.get("env") or {}).items() if k.startswith("KERNEL_")}
        model = await self._call("POST", "/api/kernels",
                                 {"name": self.kernel_name, "env": env})
        if not model or "id" not in model:
            raise RuntimeError(f"the gateway started no kernel: {model!r}")
        self.kernel_id = str(model["id"])

    async def shutdown_kernel(self, now: bool = False,  # type: ignore[override]
                              restart: bool = False) -> None:
        if self.kernel_id is None:
            return
        try:
            await self._call("DELETE", f"/api/kernels/{self.kernel_id}")
        except RuntimeError as exc:
            if "HTTP 404" not in str(exc):
                raise
        self.kernel_id = None

    async def restart_kernel(self, now: bool = False,  # type: ignore[override]
                             newports: bool = False, **kw: Any) -> None:
        await self._call("POST", f"/api/kernels/{self.kernel_id}/restart")

    async def interrupt_kernel(self) -> None:  # type: ignore[override]
        await self._call("POST", f"/api/kernels/{self.kernel_id}/interrupt")

    async def is_alive(self) -> bool:  # type: ignore[override]
        if self.kernel_id is None:
            return False
        try:
            await self._call("GET", f"/api/kernels/{self.kernel_id}")
        except RuntimeError as exc:
            if "HTTP 404" in str(exc):
                return False
            return True  # the gateway is out of reach for a moment; the kernel is not gone
        except OSError:
            return True
        return True

    _async_is_alive = is_alive  # what jupyter_client's client asks its parent

    async def cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
        pass

    def client(self, **kwargs: Any) -> GatewayKernelClient:  # type: ignore[override]
        return GatewayKernelClient(parent=self, session=self.session, **kwargs)


__all__ = ["GatewayKernelClient", "GatewayKernelManager", "KernelGone"]
