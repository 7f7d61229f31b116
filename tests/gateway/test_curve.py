"""CurveZMQ between gateways and kernel Pods: a process on the Pod network that subscribes to a
kernel's IOPub without the kernel's server key (or with a wrong one) receives nothing, while
the legitimate client, through the gateway, gets every line. A positive control with the key
shows the eavesdropper's socket would have received; a kernel spec that opts out is plain."""

from __future__ import annotations

import base64
import re
import time

import zmq

from kernelkeeper.crds import model as crd
from tests.fixtures.operator import PLAIN_SPEC
from tests.gateway.client import KernelWS, http
from tests.helpers import apply_session, core, execute, kernel_client, wait_ready

LINES = 20
CODE = f"for i in range({LINES}): print('secret-line', i, flush=True)"
PRINTED = re.compile(rb"secret-line \d+")


def _subscriber(ctx: zmq.Context, ks: dict, server_key: bytes | None) -> zmq.Socket:
    conn = ks["status"]["connection"]
    sock = ctx.socket(zmq.SUB)
    sock.linger = 0
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    if server_key is not None:
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = \
            server_key, public, secret
    sock.connect(f"tcp://{conn['ip']}:{conn['iopubPort']}")
    return sock


def _heard(sock: zmq.Socket, seconds: float) -> list[list[bytes]]:
    got, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            got.append(sock.recv_multipart())
    return got


def _secret_lines(frames: list[list[bytes]]) -> int:
    """Printed lines heard ("secret-line 3"; the code itself, echoed as execute_input, has
    "'secret-line', i")."""
    return sum(len(PRINTED.findall(part)) for msg in frames for part in msg)


def test_an_eavesdropper_without_the_server_key_hears_nothing(gateways, kk_namespace, cluster):
    gw = gateways.start(kk_namespace)
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"}, timeout=180)
    assert status == 201, model
    kid = model["id"]
    ks = wait_ready(cluster, kk_namespace, kid)
    data = core(cluster).read_namespaced_secret(crd.key_secret_name(kid), kk_namespace).data
    assert {crd.CURVE_PUBLIC_FIELD, crd.CURVE_SECRET_FIELD} <= set(data)
    server_key = base64.b64decode(data[crd.CURVE_PUBLIC_FIELD])

    ctx = zmq.Context()
    try:
        plain = _subscriber(ctx, ks, None)
        wrong = _subscriber(ctx, ks, zmq.curve_keypair()[0])
        keyed = _subscriber(ctx, ks, server_key)  # the positive control
        time.sleep(1.0)  # subscriptions settle (a SUB that joins late misses the start)
        ws = KernelWS(gw.ws_url, kid)
        try:
            reply, out, _ = ws.execute(CODE)
        finally:
            ws.close()
        assert reply["content"]["status"] == "ok"
        assert out.count("secret-line") == LINES, out
        assert _secret_lines(_heard(plain, 3)) == 0
        assert _secret_lines(_heard(wrong, 1)) == 0
        assert _secret_lines(_heard(keyed, 1)) == LINES
    finally:
        ctx.destroy(linger=0)
    assert http("DELETE", f"{gw.url}/api/kernels/{kid}")[0] == 204


def test_a_spec_that_opts_out_runs_plain(cluster, kk_namespace, node, operator):
    kid = apply_session(cluster, kk_namespace, PLAIN_SPEC)
    ks = wait_ready(cluster, kk_namespace, kid, timeout=120)
    data = core(cluster).read_namespaced_secret(crd.key_secret_name(kid), kk_namespace).data
    assert crd.CURVE_PUBLIC_FIELD not in data
    ctx = zmq.Context()
    kc = kernel_client(cluster, kk_namespace, ks)
    try:
        plain = _subscriber(ctx, ks, None)
        time.sleep(1.0)
        assert execute(kc, CODE)["status"] == "ok"
        assert _secret_lines(_heard(plain, 2)) == LINES
    finally:
        kc.stop_channels()
        ctx.destroy(linger=0)
