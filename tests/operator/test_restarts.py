"""In-place kernel restarts: same Pod, IP, ports and key; state cleared; restarts counted."""

from __future__ import annotations

import signal

from tests.helpers import (
    apply_session,
    execute,
    kernel_client,
    launcher_status,
    signal_in_pod,
    wait_ready,
)


def _same_place(before: dict, after: dict) -> None:
    for field in ("podName", "podIP", "connection"):
        assert after["status"][field] == before["status"][field], field


def test_shutdown_request_restart_true_restarts_in_place(cluster, ns):
    kid = apply_session(cluster, ns)
    before = wait_ready(cluster, ns, kid)
    kc = kernel_client(cluster, ns, before)
    try:
        assert execute(kc, "x = 123; x")["result"] == "123"
        msg = kc.session.msg("shutdown_request", {"restart": True})
        kc.control_channel.send(msg)
        reply = kc.control_channel.get_msg(timeout=30)
        assert reply["content"] == {"status": "ok", "restart": True}

        after = wait_ready(cluster, ns, kid, timeout=90,
                           extra=lambda ks: ks["status"].get("restarts") == 1)
        _same_place(before, after)
        assert launcher_status(after["status"]["podIP"])["lastRestart"]["reason"] == "requested"
        kc.wait_for_ready(timeout=60)
        gone = execute(kc, "x")
        assert (gone["status"], gone["ename"]) == ("error", "NameError")
        assert execute(kc, "1+1")["result"] == "2"
    finally:
        kc.stop_channels()


def test_sigkill_of_ipykernel_restarts_in_place(cluster, ns):
    kid = apply_session(cluster, ns)
    before = wait_ready(cluster, ns, kid)
    first = launcher_status(before["status"]["podIP"])
    signal_in_pod(cluster, ns, before["status"]["podName"], first["pid"], signal.SIGKILL)

    after = wait_ready(cluster, ns, kid, timeout=90,
                       extra=lambda ks: ks["status"].get("restarts") == 1)
    _same_place(before, after)
    second = launcher_status(after["status"]["podIP"])
    assert second["pid"] != first["pid"]
    assert second["lastRestart"]["reason"] == "crashed"
    kc = kernel_client(cluster, ns, after)
    try:
        assert execute(kc, "2**10")["result"] == "1024"
    finally:
        kc.stop_channels()
