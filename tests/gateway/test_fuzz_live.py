"""Hostile input to a live gateway and the live API server: generated REST requests (methods,
paths, headers, bodies), websocket frames in both protocols on an open kernel connection, and
KernelSession manifests. Every REST case gets an answer below 500 (a 4xx with a JSON reason
when refused); the websocket stays open and its kernel keeps answering; the API server accepts
a manifest or names the field it refuses. The gateway process survives it all and still serves
another client.

The callers are `root` (denied every kernel start by default, owns no kernel), unknown tokens
and no token, so no generated request can start, stop or reach a kernel: the cases exercise
parsing and refusal, not the kernel.
"""

from __future__ import annotations

import json
import re
import uuid
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from kernelkeeper.crds import model as crd
from tests.fixtures import fuzz
from tests.fixtures.users import ALICE, ROOT, SERVICE, USERS
from tests.gateway.client import V1, KernelWS, http
from tests.helpers import custom, metric
from tests.unit.test_hostile_frames import bodies, client_frames

LIVE = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

text = st.text(max_size=24)
ids = st.one_of(st.just("{kid}"), st.builds(lambda: str(uuid.uuid4())), text,
                st.sampled_from(["..", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "A" * 300, "%00",
                                 "%ff%fe"]))
paths = st.one_of(
    st.sampled_from(["/api", "/api/", "/api/kernels", "/api/kernels/", "/api/kernelspecs",
                     "/api/sessions", "/metrics", "/readyz", "/healthz", "/", ""]),
    st.builds(lambda i: f"/api/kernels/{i}", ids),
    st.builds(lambda i, a: f"/api/kernels/{i}/{a}", ids,
              st.sampled_from(["interrupt", "restart", "channels", "x"]) | text),
    st.builds(lambda i: f"/api/kernelspecs/{i}", ids),
    st.builds(lambda a, b: f"/kernelspecs/{a}/{b}", st.sampled_from(["python3"]) | text,
              st.sampled_from(["kernel.json", "logo-64x64.png", "../kernel.json"]) | text),
    st.builds(lambda t: "/" + t, text),
)
tokens = st.one_of(st.none(), st.just(ROOT), st.just(""), text, st.just("x" * 5000))
auth_forms = st.sampled_from(["token {t}", "Bearer {t}", "{t}", "token  {t} ", "Basic {t}"])
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Accept", "Origin", "X-Forwarded-For", "Cookie",
                     "X-XSRFToken", "Sec-WebSocket-Protocol", "Upgrade", "Connection"])
    | st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z"),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    max_size=4)


def _request(conn: HTTPConnection, method: str, path: str,
             head: dict[str, str], body: bytes | None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=head)
    response = conn.getresponse()
    return response.status, response.read()


@pytest.fixture
def live(gateways, kk_namespace, tmp_path: Path) -> Any:
    users = tmp_path / "users.yaml"
    users.write_text(USERS)
    gw = gateways.start(kk_namespace, token=SERVICE,
                        env={"KERNELKEEPER_GATEWAY_USERS_FILE": str(users)})
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"}, token=ALICE,
                         timeout=180)
    assert status == 201, model
    ws = KernelWS(gw.ws_url, model["id"], token=ALICE)
    reply, _, _ = ws.execute("state = 41")
    assert reply["content"]["status"] == "ok"
    ws.close()
    return gw, model["id"]


def _kernel_still_answers(gw: Any, kid: str, protocol: str | None = None) -> None:
    ws = KernelWS(gw.ws_url, kid, token=ALICE, protocol=protocol)
    try:
        reply, out, _ = ws.execute("state += 1; print(state)")
        assert reply["content"]["status"] == "ok" and out.strip().isdigit(), (reply, out)
    finally:
        ws.close()


def test_generated_rest_requests_get_a_clear_answer(live):
    gw, kid = live
    conn = HTTPConnection("127.0.0.1", gw.port, timeout=30)

    @settings(LIVE, max_examples=2500)
    @given(st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]), paths,
           tokens, auth_forms, headers, st.none() | bodies, st.booleans())
    def case(method: str, path: str, token: str | None, form: str, head: dict[str, str],
             body: bytes | None, query_token: bool) -> None:
        nonlocal conn
        fuzz.count("live gateway: REST requests")
        path = quote(path.replace("{kid}", kid), safe="/%")
        head = dict(head)
        if token is not None:
            if query_token:
                path += f"?token={quote(token)}"
            else:
                # Raw UTF-8 bytes in the header; line breaks are the one thing the client
                # library will not send.
                value = form.format(t=token).encode("utf-8").decode("latin-1")
                head["Authorization"] = value.replace("\r", "").replace("\n", "")
        try:
            status, payload = _request(conn, method, path or "/", head, body)
        except (HTTPException, OSError):
            # Tornado closes a connection whose request it cannot parse (an oversized header
            # line): a clear refusal at the HTTP layer. The next request opens a new one.
            fuzz.count("live gateway: REST requests (of those) closed at the HTTP layer")
            conn.close()
            conn = HTTPConnection("127.0.0.1", gw.port, timeout=30)
            assert gw.alive()
            return
        assert status < 500, (method, path, head, body, status, payload[:300])
        if status >= 400 and method != "HEAD" and payload:
            answer = json.loads(payload)
            assert answer["reason"], (method, path, status, answer)

    case()
    conn.close()
    assert gw.alive()
    _kernel_still_answers(gw, kid)


@pytest.mark.parametrize("protocol", [V1, None], ids=["v1", "legacy"])
def test_generated_websocket_frames_leave_the_connection_and_kernel_working(live, protocol):
    gw, kid = live
    ws = KernelWS(gw.ws_url, kid, token=ALICE, protocol=protocol)
    assert ws.protocol == (protocol or "")

    @settings(LIVE, max_examples=1500)
    @given(client_frames)
    def case(frame: str | bytes) -> None:
        fuzz.count(f"live gateway: websocket frames ({'v1' if protocol else 'legacy'})")
        if isinstance(frame, str):
            ws.ws.send(frame)
        else:
            ws.ws.send_binary(frame)

    try:
        case()
        # The same websocket still runs code, and so does a new one.
        reply, out, _ = ws.execute("state += 1; print(state)")
        assert reply["content"]["status"] == "ok" and out.strip().isdigit(), (reply, out)
    finally:
        ws.close()
    assert gw.alive()
    _kernel_still_answers(gw, kid, protocol)
    assert "Traceback" not in gw.log_text()


# JSON has no infinity or NaN: the client library would send a body the server cannot parse.
finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.one_of(st.builds(lambda: str(uuid.uuid4())), text,
                  st.sampled_from(["UPPER-" + str(uuid.uuid4())[6:], "-x", "a" * 300]))
quantities = st.one_of(st.sampled_from(["500m", "2Gi", "1", "1e3", "-1", "2GB", "", "lots"]),
                       st.integers(-5, 10**6), finite, st.none(), text)
spec_values = st.fixed_dictionaries({}, optional={
    "kernelSpec": st.one_of(st.just("python3"), text, st.integers(), st.none(),
                            st.just("a" * 200), st.just("bad/name")),
    "username": st.one_of(text, st.integers(), st.just("u" * 300)),
    "env": st.one_of(st.dictionaries(st.one_of(text, st.sampled_from(["KERNEL_X", "1BAD",
                                                                      "OK_NAME"])),
                                     st.one_of(text, st.integers(), st.none(),
                                               st.just("v" * 5000)), max_size=4),
                     text, st.lists(text, max_size=2)),
    "idleTimeoutSeconds": st.one_of(st.integers(-10, 10**9), text, finite),
    "resources": st.one_of(st.fixed_dictionaries({}, optional={
        "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]) | text, quantities,
                                    max_size=3),
        "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]) | text, quantities,
                                  max_size=3)}), text),
    "journal": st.one_of(st.fixed_dictionaries({}, optional={
        "maxMessages": st.integers(-1, 10**7) | text,
        "maxBytes": st.integers(-1, 2**31) | text}), st.integers()),
    "unknownField": text,
})
FIELD = re.compile(r"\b(spec|metadata)(\.[A-Za-z]+|\[)")


def test_generated_kernelsessions_are_accepted_or_refused_with_the_field(cluster, kk_namespace):
    api = custom(cluster)

    @settings(LIVE, max_examples=800)
    @given(names, spec_values)
    def case(name: str, spec: dict[str, Any]) -> None:
        fuzz.count("API server: KernelSession manifests (dry run)")
        body = {"apiVersion": crd.API_VERSION, "kind": crd.KIND,
                "metadata": {"name": name}, "spec": spec}
        try:
            api.create_namespaced_custom_object(crd.GROUP, crd.VERSION, kk_namespace,
                                                crd.PLURAL, body, dry_run="All")
        except ApiException as exc:
            assert exc.status in (400, 422), (exc.status, exc.body)
            message = json.loads(exc.body)["message"]
            assert FIELD.search(message), (body, message)
            return
        assert crd.is_kernel_id(name), name
        assert isinstance(spec.get("kernelSpec"), str)

    case()
    assert cluster.kubectl("get", "ks", "-n", kk_namespace, "-o", "name").stdout.strip() == ""


def test_a_websocket_over_its_message_rate_is_closed_with_a_reason(gateways, kk_namespace):
    gw = gateways.start(kk_namespace, env={
        "KERNELKEEPER_GATEWAY_WS_MAX_MESSAGES_PER_SECOND": "20",
        "KERNELKEEPER_GATEWAY_WS_BURST_MESSAGES": "50"})
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"}, timeout=180)
    assert status == 201, model
    flood = KernelWS(gw.ws_url, model["id"], protocol=V1)
    # Within the burst: served.
    for _ in range(10):
        flood.send("shell", "kernel_info_request", {})
    closed = None
    for _ in range(2000):
        try:
            flood.send("shell", "kernel_info_request", {})
        except (OSError, websocket.WebSocketConnectionClosedException):
            break
    try:
        while closed is None:
            opcode, data = flood.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                closed = (int.from_bytes(data[:2], "big"), data[2:].decode())
    except (OSError, websocket.WebSocketConnectionClosedException):
        pass
    assert closed is not None and closed[0] == 1008, closed
    assert "messages/s" in closed[1], closed
    # The gateway and the kernel serve the next client.
    ws = KernelWS(gw.ws_url, model["id"])
    try:
        reply, out, _ = ws.execute("print(6 * 7)")
        assert out.strip() == "42"
    finally:
        ws.close()
    assert metric(gw.url, "websocket_rate_limited_total") >= 1
