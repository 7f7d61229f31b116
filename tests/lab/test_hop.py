"""The two websockets kernelkeeper.lab sets up: the gateway hop speaks
v1.kernel.websocket.jupyter.org (seen on the wire, by a relay between jupyter_server and the
fleet's nginx), and the browser's socket has TCP_NODELAY (read from inside the jupyter_server
process), which takes the ~40 ms delayed-ACK stall out of every round trip.

The lab server here is enabled the way a user enables the extension (jpserver_extensions),
the other tests set the connection class directly; the stock server runs next to it for
comparison.
"""

from __future__ import annotations

import socket
import statistics
import time

from tests.gateway.client import V1, KernelWS
from tests.lab.sockets import SniffingRelay, peer_socket_option
from tests.lab.test_failover import STOCK, start_session

ENABLE_EXTENSION = ['--ServerApp.jpserver_extensions={"kernelkeeper.lab": True}']
ROUND_TRIPS = 100


def _pass_round_trips(ws: KernelWS, runs: int) -> list[float]:
    for _ in range(5):
        ws.execute("pass")
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        reply, _, _ = ws.execute("pass")
        took.append(time.perf_counter() - t0)
        assert reply["content"]["status"] == "ok"
    return took


def test_the_gateway_hop_speaks_v1(fleet, jupyter_servers):
    f = fleet(1)
    relay = SniffingRelay(f.port)
    try:
        kernels = {}
        for path, extra in (("lab", ENABLE_EXTENSION), ("stock", STOCK)):
            js = jupyter_servers(relay.url, extra=extra)
            kernels[path] = kid = start_session(js)
            ws = KernelWS(js.ws_url, kid, token=js.token)  # the browser speaks legacy JSON
            try:
                reply, out, _ = ws.execute("print('over the hop')")
            finally:
                ws.close()
            assert reply["content"]["status"] == "ok" and out == "over the hop\n"
            if path == "lab":
                assert "kernelkeeper.lab: kernel websockets to" in js.log_text()
        hops = {path: next(c for c in relay.websockets() if kid in c.request_head())
                for path, kid in kernels.items()}
    finally:
        relay.close()
    lab, stock = hops["lab"], hops["stock"]
    print(f"\n[lab] gateway hop upgrade, lab: {lab.request_head().splitlines()[0]!r} "
          f"-> {lab.header(lab.response_head(), 'Sec-WebSocket-Protocol')!r}; stock offers "
          f"{stock.header(stock.request_head(), 'Sec-WebSocket-Protocol')!r}")
    assert lab.response_head().startswith("HTTP/1.1 101")
    assert V1 in lab.header(lab.request_head(), "Sec-WebSocket-Protocol")
    assert lab.header(lab.response_head(), "Sec-WebSocket-Protocol") == V1
    assert lab.first_client_opcode() == 0x2, "v1 frames are binary"
    assert stock.first_client_opcode() == 0x1, "the stock hop relays the browser's JSON text"


def test_the_browsers_socket_has_nodelay_and_a_round_trip_no_nagle_stall(fleet,
                                                                         jupyter_servers):
    f = fleet(1)
    results = {}
    for path, extra in (("lab", ENABLE_EXTENSION), ("stock", STOCK)):
        js = jupyter_servers(f.url, extra=extra)
        ws = KernelWS(js.ws_url, start_session(js), token=js.token)
        try:
            took = _pass_round_trips(ws, ROUND_TRIPS)
            nodelay = peer_socket_option(js.proc.pid, ws.ws.sock.getsockname()[:2],
                                         socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            ws.close()
        results[path] = (nodelay, statistics.median(took) * 1000)
    print(f"\n[lab] `pass` round trip p50 through jupyter_server: with kernelkeeper.lab "
          f"{results['lab'][1]:.1f} ms (TCP_NODELAY {results['lab'][0]}), stock "
          f"{results['stock'][1]:.1f} ms (TCP_NODELAY {results['stock'][0]})")
    assert results["lab"][0] == 1
    assert results["lab"][1] < 20, "well below the ~40 ms delayed-ACK stall"
