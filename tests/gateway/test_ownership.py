"""Per-user tokens and ownership, on real gateway replicas and real kernels: a user's kernel is
invisible and unreachable to another user on every route and every replica (a 404 exactly like
a kernel that does not exist), admins and the service token see all, the owner is immutable,
and the users file is re-read without a restart."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import websocket

from tests.fixtures.users import ALICE, BOB, OPS, ROOT, SERVICE, USERS
from tests.gateway.client import KernelWS, http
from tests.helpers import wait_until


def _start(url: str, token: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    return http("POST", f"{url}/api/kernels", {"name": "python3", "env": env or {}},
                token=token, timeout=180)


def _ws_status(ws_url: str, kid: str, token: str) -> int:
    """The status of a websocket upgrade to the kernel's channels (101 when it opens)."""
    try:
        conn = websocket.create_connection(
            f"{ws_url}/api/kernels/{kid}/channels?session_id={uuid.uuid4().hex}",
            header=[f"Authorization: token {token}"] if token else [], timeout=60)
    except websocket.WebSocketBadStatusException as exc:
        return int(exc.status_code)
    conn.close()
    return 101


def _ids(url: str, token: str) -> set[str]:
    status, models = http("GET", f"{url}/api/kernels", token=token)
    assert status == 200, models
    return {m["id"] for m in models}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(USERS)
    return path


def test_a_users_kernel_is_theirs_alone_on_every_route_and_replica(gateways, kk_namespace,
                                                                   cluster, users_file):
    env = {"KERNELKEEPER_GATEWAY_USERS_FILE": str(users_file)}
    a = gateways.start(kk_namespace, token=SERVICE, env=env)
    # Alice claims to be mallory: the identity wins.
    status, model = _start(a.url, ALICE, {"KERNEL_USERNAME": "mallory"})
    assert status == 201, model
    kid = model["id"]
    status, bobs = _start(a.url, BOB)
    assert status == 201, bobs
    ks = json.loads(cluster.kubectl("get", "ks", "-n", kk_namespace, kid, "-o", "json").stdout)
    assert ks["spec"]["username"] == "alice"
    assert ks["spec"]["env"]["KERNEL_USERNAME"] == "alice"

    # Replica b starts only now and has never seen either kernel.
    b = gateways.start(kk_namespace, token=SERVICE, env=env)
    absent = str(uuid.uuid4())
    for gw in (a, b):
        url = gw.url
        # What bob gets for alice's kernel is what anyone gets for a kernel that does not exist.
        for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/interrupt"),
                             ("POST", "/restart")]:
            for target in (kid, absent):
                status, body = http(method, f"{url}/api/kernels/{target}{path}", token=BOB)
                assert status == 404, (gw.replica_id, method, path, status, body)
                assert body == {"reason": "Not Found",
                                "message": f"Kernel does not exist: {target}"}, body
        assert _ws_status(gw.ws_url, kid, BOB) == 404
        assert _ws_status(gw.ws_url, absent, BOB) == 404
        assert _ids(url, BOB) == {bobs["id"]}
        assert _ids(url, ALICE) == {kid}
        # Admins (a named one and the service token) see both kernels.
        assert {kid, bobs["id"]} <= _ids(url, OPS)
        assert {kid, bobs["id"]} <= _ids(url, SERVICE)
        assert http("GET", f"{url}/api/kernels/{kid}", token=OPS)[0] == 200
        # No token, or a wrong one: 401, websocket included.
        assert http("GET", f"{url}/api/kernels", token="")[0] == 401
        assert http("GET", f"{url}/api/kernels", token=ALICE + "x")[0] == 401
        assert _ws_status(gw.ws_url, kid, "") == 401

    # Alice reaches her kernel through b, which hydrates it for her; bob's attempts above
    # did not disturb it.
    ws = KernelWS(b.ws_url, kid, token=ALICE)
    try:
        reply, out, _ = ws.execute("import os; print(os.environ['KERNEL_USERNAME'])")
        assert reply["content"]["status"] == "ok" and out.strip() == "alice"
    finally:
        ws.close()
    assert http("POST", f"{b.url}/api/kernels/{kid}/interrupt", token=ALICE)[0] == 204
    # The admin may act on it; then alice deletes it.
    assert http("POST", f"{b.url}/api/kernels/{kid}/interrupt", token=OPS)[0] == 204
    assert http("DELETE", f"{a.url}/api/kernels/{kid}", token=ALICE)[0] == 204
    assert http("DELETE", f"{b.url}/api/kernels/{bobs['id']}", token=OPS)[0] == 204


def test_who_may_start_what_and_an_immutable_owner(gateways, kk_namespace, cluster, users_file):
    gw = gateways.start(kk_namespace, token=SERVICE,
                        env={"KERNELKEEPER_GATEWAY_USERS_FILE": str(users_file)})
    # root is on the default deny list, whoever names it.
    status, body = _start(gw.url, ROOT)
    assert status == 403 and "User 'root' is not authorized" in body["message"], body
    status, body = _start(gw.url, SERVICE, {"KERNEL_USERNAME": "root"})
    assert status == 403, body
    assert cluster.kubectl("get", "ks", "-n", kk_namespace, "-o", "name").stdout.strip() == ""
    # The owner of a session cannot be changed, by anyone.
    status, model = _start(gw.url, ALICE)
    assert status == 201, model
    out = cluster.kubectl("patch", "ks", "-n", kk_namespace, model["id"], "--type=merge",
                          "-p", '{"spec": {"username": "bob"}}', check=False)
    assert out.returncode != 0 and "spec.username is immutable" in out.stderr, out
    out = cluster.kubectl("patch", "ks", "-n", kk_namespace, model["id"], "--type=json",
                          "-p", '[{"op": "remove", "path": "/spec/username"}]', check=False)
    assert out.returncode != 0 and "spec.username is immutable" in out.stderr, out
    assert http("DELETE", f"{gw.url}/api/kernels/{model['id']}", token=ALICE)[0] == 204


def test_the_users_file_is_reloaded_without_a_restart(gateways, kk_namespace, users_file):
    gw = gateways.start(kk_namespace, env={"KERNELKEEPER_GATEWAY_USERS_FILE": str(users_file),
                                           "KERNELKEEPER_GATEWAY_USERS_RELOAD_INTERVAL": "0.5"})
    carol = "carol-token-0123456789"
    assert http("GET", f"{gw.url}/api/kernels", token=carol)[0] == 401
    # Carol is added and bob's token is revoked, as an edit of the Secret would do.
    users_file.write_text(USERS.replace(f"  - name: bob\n    token: {BOB}\n", "")
                          + f"  - name: carol\n    token: {carol}\n")
    wait_until(lambda: http("GET", f"{gw.url}/api/kernels", token=carol)[0] == 200, 30,
               "carol's token accepted")
    assert http("GET", f"{gw.url}/api/kernels", token=BOB)[0] == 401
    # A broken edit keeps the last good users: nobody is locked out.
    users_file.write_text("users: [")
    wait_until(lambda: "not reloaded, keeping the previous" in gw.log_text(), 30,
               "the broken users file refused")
    assert http("GET", f"{gw.url}/api/kernels", token=carol)[0] == 200
    assert gw.alive()
