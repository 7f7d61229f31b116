"""REST surface of the gateway against the real API server and real kernels."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import websocket

from kernelkeeper.crds import model as crd
from tests.gateway.client import V1, KernelWS, http

LAST_ACTIVITY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def assert_model(model: dict) -> None:
    assert crd.is_kernel_id(model["id"]), model
    assert model["name"] == "python3"
    assert LAST_ACTIVITY.match(model["last_activity"]), model
    dt.datetime.strptime(model["last_activity"], "%Y-%m-%dT%H:%M:%S.%fZ")  # as jupyter_server does
    assert isinstance(model["execution_state"], str) and model["execution_state"]
    assert isinstance(model["connections"], int)


def test_kernelspecs(gateways, kk_namespace):
    gw = gateways.start(kk_namespace)
    status, body = http("GET", f"{gw.url}/api/kernelspecs")
    assert status == 200
    assert body["default"] == "python3"
    spec = body["kernelspecs"]["python3"]
    assert set(spec) == {"name", "spec", "resources"}
    assert spec["spec"]["language"] == "python"
    assert "kernelkeeper" not in spec["spec"].get("metadata", {})
    status, one = http("GET", f"{gw.url}/api/kernelspecs/python3")
    assert status == 200 and one == spec
    # jupyter_server with KERNEL_USERNAME set asks for one spec as ?user=<u>/<name>.
    status, quirk = http("GET", f"{gw.url}/api/kernelspecs?user=alice/python3")
    assert status == 200 and quirk["name"] == "python3"
    status, logo = http("GET", f"{gw.url}{spec['resources']['logo-64x64']}")
    assert status == 200 and logo[:4] == b"\x89PNG"
    assert http("GET", f"{gw.url}/api/kernelspecs/nope")[0] == 404
    assert http("GET", f"{gw.url}/kernelspecs/python3/kernel.json")[0] == 404
    assert http("GET", f"{gw.url}/kernelspecs/python3/..%2Fpython3%2Fkernel.json")[0] == 404
    status, api = http("GET", f"{gw.url}/api")
    assert status == 200 and "version" in api


def test_kernel_lifecycle(gateways, kk_namespace, cluster):
    gw = gateways.start(kk_namespace)
    status, model = http("POST", f"{gw.url}/api/kernels",
                         {"name": "python3", "env": {"KERNEL_USERNAME": "alice",
                                                     "KERNEL_LAUNCH_TIMEOUT": "90",
                                                     "KERNEL_WORKING_DIR": "/not/here"}})
    assert status == 201, model
    assert_model(model)
    kid = model["id"]
    assert model["execution_state"] == "idle"
    ks = cluster.kubectl("get", "ks", "-n", kk_namespace, kid, "-o",
                         "jsonpath={.spec.username} {.spec.env.KERNEL_GATEWAY}").stdout
    assert ks == "alice 1"

    status, listed = http("GET", f"{gw.url}/api/kernels")
    assert status == 200 and [m["id"] for m in listed] == [kid]
    assert_model(listed[0])
    status, got = http("GET", f"{gw.url}/api/kernels/{kid}")
    assert status == 200 and got["id"] == kid

    assert http("POST", f"{gw.url}/api/kernels/{kid}/interrupt", {})[0] == 204
    status, restarted = http("POST", f"{gw.url}/api/kernels/{kid}/restart", {})
    assert status == 200, restarted
    assert_model(restarted)

    ws = KernelWS(gw.ws_url, kid)
    reply, out, _ = ws.execute("print(6 * 7)")
    assert reply["content"]["status"] == "ok" and out == "42\n"
    ws.close()

    assert http("DELETE", f"{gw.url}/api/kernels/{kid}")[0] == 204
    # Safe to repeat: the session is gone (404) or still terminating (204).
    assert http("DELETE", f"{gw.url}/api/kernels/{kid}")[0] in (204, 404)
    assert http("GET", f"{gw.url}/api/kernels/{kid}")[0] == 404


def test_unknown_kernel_is_404_everywhere(gateways, kk_namespace):
    gw = gateways.start(kk_namespace)
    for kid in (str(uuid.uuid4()), "not-a-uuid"):
        for method, path, body in (("GET", "", None), ("DELETE", "", None),
                                   ("POST", "/interrupt", {}), ("POST", "/restart", {})):
            status, err = http(method, f"{gw.url}/api/kernels/{kid}{path}", body)
            assert status == 404, (method, path, status, err)
            assert set(err) == {"reason", "message"}
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            websocket.create_connection(f"{gw.ws_url}/api/kernels/{kid}/channels", timeout=30)
        assert exc.value.status_code == 404


@pytest.mark.parametrize(("raw", "needle"), [
    (b'{"name": "no-such-spec"}', "Unknown kernel spec"),
    (b'{"name": "python3", "env": ["KERNEL_X"]}', "env must be"),
    (b'{"name": "python3", "env": "KERNEL_X=1"}', "env must be"),
    (b'{"name": "python3", "env": {"PATH": "/evil"}}', "not allowed"),
    (b'{"name": "python3", "env": {"KG_AUTH_TOKEN": "x"}}', "not allowed"),
    (b'{"name": "python3", "env": {"KERNEL_X": "a\\nb"}}', "control characters"),
    (b'{"name": "python3", "env": {"KERNEL_X": 1}}', "must be a string"),
    (b'{"name": "python3", "env": {"KERNEL_X": "' + b"x" * 5000 + b'"}}', "longer"),
    (b'{"name": "python3", ', "Malformed JSON"),
    (b'[1, 2]', "JSON object"),
])
def test_start_validation(gateways, kk_namespace, cluster, raw, needle):
    gw = gateways.start(kk_namespace)
    status, err = http("POST", f"{gw.url}/api/kernels", raw=raw)
    assert status == 400, err
    assert err["reason"] and needle in err["message"], err
    out = cluster.kubectl("get", "ks", "-n", kk_namespace, "-o", "name").stdout
    assert out.strip() == ""


def test_limits_answer_403(gateways, kk_namespace):
    gw = gateways.start(kk_namespace, env={"KERNELKEEPER_GATEWAY_MAX_KERNELS_PER_USER": "1",
                                           "KERNELKEEPER_GATEWAY_MAX_KERNELS": "2"})
    body = {"name": "python3", "env": {"KERNEL_USERNAME": "bob"}}
    status, first = http("POST", f"{gw.url}/api/kernels", body)
    assert status == 201, first
    status, err = http("POST", f"{gw.url}/api/kernels", body)
    assert status == 403 and err["reason"] == "Resource Limit" and "bob" in err["message"]
    status, second = http("POST", f"{gw.url}/api/kernels",
                          {"name": "python3", "env": {"KERNEL_USERNAME": "carol"}})
    assert status == 201, second
    status, err = http("POST", f"{gw.url}/api/kernels",
                       {"name": "python3", "env": {"KERNEL_USERNAME": "dave"}})
    assert status == 403 and "maximum" in err["message"]
    for m in (first, second):
        assert http("DELETE", f"{gw.url}/api/kernels/{m['id']}")[0] == 204


def test_token_required_on_every_route(gateways, kk_namespace):
    token = uuid.uuid4().hex
    gw = gateways.start(kk_namespace, token=token, base_url="/gw/base",
                        env={"KERNELKEEPER_GATEWAY_ALLOW_ORIGIN": "https://lab.example"})
    kid = str(uuid.uuid4())
    routes = [("GET", "/api"), ("GET", "/api/kernelspecs"), ("GET", "/api/kernelspecs/python3"),
              ("GET", "/kernelspecs/python3/logo-64x64.png"), ("GET", "/api/kernels"),
              ("POST", "/api/kernels"), ("GET", f"/api/kernels/{kid}"),
              ("DELETE", f"/api/kernels/{kid}"), ("POST", f"/api/kernels/{kid}/interrupt"),
              ("POST", f"/api/kernels/{kid}/restart"), ("GET", "/metrics")]
    for method, path in routes:
        body = {} if method == "POST" else None
        status, err = http(method, f"{gw.url}{path}", body)
        assert status == 401, (method, path, status)
        assert err["reason"] == "Unauthorized"
        assert http(method, f"{gw.url}{path}", body, headers={"Authorization": "token wrong"}
                    )[0] == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(f"{gw.ws_url}/api/kernels/{kid}/channels", timeout=30)
    assert exc.value.status_code == 401
    # The token works as a header (token or bearer, any case) and as ?token=.
    assert http("GET", f"{gw.url}/api/kernelspecs", token=token)[0] == 200
    assert http("GET", f"{gw.url}/api/kernelspecs",
                headers={"Authorization": f"Bearer {token}"})[0] == 200
    status, _ = http("GET", f"{gw.url}/api/kernelspecs?token={token}")
    assert status == 200
    # The websocket with the right token reaches the kernel lookup (404: no such kernel).
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(f"{gw.ws_url}/api/kernels/{kid}/channels?token={token}",
                                    timeout=30)
    assert exc.value.status_code == 404
    # CORS headers as configured; a preflight needs no token.
    status, _ = http("OPTIONS", f"{gw.url}/api/kernels")
    assert status == 204
    import urllib.request
    with urllib.request.urlopen(urllib.request.Request(
            f"{gw.url}/api/kernelspecs", headers={"Authorization": f"token {token}"})) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "https://lab.example"
    # The token never reaches a kernel: a start through the gateway does not carry it.
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"}, token=token)
    assert status == 201, model
    ws = KernelWS(gw.ws_url, model["id"], token=token)
    _, out, _ = ws.execute(f"import os; print({token!r} in repr(dict(os.environ)))")
    assert out == "False\n"
    ws.close()
    assert http("DELETE", f"{gw.url}/api/kernels/{model['id']}", token=token)[0] == 204


def test_empty_token_header_accepted_without_auth(gateways, kk_namespace):
    gw = gateways.start(kk_namespace)
    status, _ = http("GET", f"{gw.url}/api/kernels", headers={"Authorization": "token "})
    assert status == 200


def test_metrics_and_health(gateways, kk_namespace):
    gw = gateways.start(kk_namespace)
    assert http("GET", f"{gw.url}/healthz")[0] == 200
    assert http("GET", f"{gw.url}/readyz")[0] == 200
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"})
    assert status == 201
    ws = KernelWS(gw.ws_url, model["id"])
    ws_v1 = KernelWS(gw.ws_url, model["id"], protocol=V1)
    status, text = http("GET", f"{gw.url}/metrics")
    ws.close()
    ws_v1.close()
    text = text.decode()
    for name in ("kernelkeeper_gateway_kernels 1", "kernelkeeper_gateway_websocket_connections 2",
                 'kernelkeeper_gateway_kernel_starts_total{result="ok"} 1',
                 "kernelkeeper_gateway_kernel_start_seconds_count 1",
                 'kernelkeeper_gateway_hydrations_total{result="ok"} 1',
                 'kernelkeeper_gateway_websocket_connections_total{protocol="legacy"} 1',
                 'kernelkeeper_gateway_websocket_connections_total{protocol="v1"} 1'):
        assert name in text, text
    assert http("DELETE", f"{gw.url}/api/kernels/{model['id']}")[0] == 204
