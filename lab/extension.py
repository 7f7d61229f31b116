"""The `kernelkeeper.lab` server extension: in gateway mode, it makes jupyter_server use
KernelkeeperWebsocketConnection for kernel websockets, through the ServerApp's own
`kernel_websocket_connection_class` setting (at link time, before the web application that
reads it exists). A class configured explicitly is left alone (a warning says so), and so is a
server that runs its kernels itself (no gateway): there the class has nothing to do.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.serverapp import ServerApp

from kernelkeeper.lab.connection import KernelkeeperWebsocketConnection


def _link_jupyter_server_extension(serverapp: ServerApp) -> None:
    # The same singleton ServerApp.init_configurables makes a moment later, from the same
    # config; it is what tells gateway mode.
    gateway = GatewayClient.instance(parent=serverapp)
    if not gateway.gateway_enabled:
        serverapp.log.info("kernelkeeper.lab: no gateway configured (--gateway-url); "
                           "kernel websockets left as they are")
        return
    # Read only a value that was configured: reading the default this early would compute it
    # before ServerApp has its gateway settings.
    if serverapp.trait_has_value("kernel_websocket_connection_class"):
        current = serverapp.kernel_websocket_connection_class
        if current is not KernelkeeperWebsocketConnection:
            serverapp.log.warning("kernelkeeper.lab: ServerApp.kernel_websocket_connection_class "
                                  "is configured (%s); left as it is", current)
            return
    serverapp.kernel_websocket_connection_class = KernelkeeperWebsocketConnection
    serverapp.log.info("kernelkeeper.lab: kernel websockets to %s use %s", gateway.url,
                       KernelkeeperWebsocketConnection.__name__)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Nothing to add once linked (jupyter_server requires the function)."""
