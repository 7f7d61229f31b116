"""JupyterHub in front: two users' single-user servers use the gateway with their own hub API
tokens; the gateway asks the hub whose token it is, and each user sees and reaches only their
own kernels (real JupyterHub, real proxy, real jupyter_server, real kernels in Pods)."""

from __future__ import annotations

import json

from kernelkeeper.local.processes import free_port
from tests.fixtures.jupyterhub import start_jupyterhub
from tests.gateway.client import KernelWS, http

SERVICE = "service-token-0123456789"


def test_each_hub_user_sees_only_their_own_kernels(gateways, kk_namespace, cluster, tmp_path):
    # Each needs the other's address: the gateway's port is chosen first.
    port = free_port()
    hub = start_jupyterhub(tmp_path / "hub", f"http://127.0.0.1:{port}")
    try:
        gw = gateways.start(kk_namespace, token=SERVICE, port=port, env={
            "KERNELKEEPER_GATEWAY_JUPYTERHUB_API_URL": hub.api_url})
        hub.add_users("alice", "bob")
        hub.start_server("alice")
        hub.start_server("bob")
        tokens = {name: hub.user_token(name) for name in ("alice", "bob")}
        kernels = {}
        for name in ("alice", "bob"):
            status, model = http("POST", f"{hub.user_url(name)}/api/kernels",
                                 {"name": "python3"}, token=tokens[name], timeout=180)
            assert status == 201, (name, model, gw.log_text()[-2000:])
            kernels[name] = model["id"]
        for name, other in (("alice", "bob"), ("bob", "alice")):
            status, models = http("GET", f"{hub.user_url(name)}/api/kernels", token=tokens[name])
            assert status == 200, models
            assert {m["id"] for m in models} == {kernels[name]}, (name, models)
            # The other user's kernel, asked for through this user's own server: not found.
            status, _ = http("GET", f"{hub.user_url(name)}/api/kernels/{kernels[other]}",
                             token=tokens[name])
            assert status == 404, (name, status)
            ks = json.loads(cluster.kubectl("get", "ks", "-n", kk_namespace, kernels[name],
                                            "-o", "json").stdout)
            assert ks["spec"]["username"] == name
        # The service token is an admin: it sees both.
        status, models = http("GET", f"{gw.url}/api/kernels", token=SERVICE)
        assert status == 200 and set(kernels.values()) <= {m["id"] for m in models}
        # A token the hub does not know is refused by the gateway.
        assert http("GET", f"{gw.url}/api/kernels", token="not-a-hub-token-0123")[0] == 401
        # Alice's kernel runs code for her, through her server's websocket to the gateway.
        ws = KernelWS(hub.user_url("alice").replace("http://", "ws://"), kernels["alice"],
                      token=tokens["alice"])
        try:
            reply, out, _ = ws.execute("import os; print(os.environ['KERNEL_USERNAME'])")
            assert reply["content"]["status"] == "ok" and out.strip() == "alice"
        finally:
            ws.close()
        for name in ("alice", "bob"):
            status, _ = http("DELETE", f"{hub.user_url(name)}/api/kernels/{kernels[name]}",
                             token=tokens[name])
            assert status == 204, (name, status)
    finally:
        hub.stop()
