"""Pieces of the node that need no cluster: $(VAR) expansion, pod IP claims, the mount helper."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from kernelkeeper.local.node import envvars
from kernelkeeper.local.node.container import helper
from kernelkeeper.local.node.ipam import Allocator, IpamError


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "1"),
    ("x-$(A)-$(B)", "x-1-two"),
    ("$$(A)", "$(A)"),
    ("$$$(A)", "$1"),
    ("$(MISSING)", "$(MISSING)"),
    ("$(A", "$(A"),
    ("cost: $5", "cost: $5"),
    ("trailing $", "trailing $"),
    ("$$", "$"),
])
def test_expansion_follows_kubernetes_rules(text, expected):
    assert envvars.expand(text, {"A": "1", "B": "two"}.get) == expected


def test_missing_command_is_a_spec_error():
    with pytest.raises(envvars.SpecError) as err:
        envvars.command_line({"name": "c"}, {})
    assert err.value.reason == "MissingCommand"


def test_service_env_points_at_the_api_server():
    env = envvars.service_env("https://127.0.0.1:6443")
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert env["KUBERNETES_PORT"] == "tcp://127.0.0.1:6443"


def test_ips_are_unique_across_nodes_and_never_127_0_0_1(tmp_path):
    claims = tmp_path / "claims"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Allocator("127.0.0.0/29", tmp_path / "a", claims)
    b = Allocator("127.0.0.0/29", tmp_path / "b", claims)
    got = [a.allocate(f"a{i}") for i in range(3)] + [b.allocate(f"b{i}") for i in range(3)]
    assert len(set(got)) == 6
    assert "127.0.0.1" not in got and "127.0.0.0" not in got
    with pytest.raises(IpamError):
        a.allocate("one-too-many")
    a.release(got[0])
    assert b.allocate("b3") == got[0]


def test_claims_of_a_vanished_node_are_reclaimed(tmp_path):
    claims = tmp_path / "claims"
    (tmp_path / "gone").mkdir()
    (tmp_path / "b").mkdir()
    gone = Allocator("127.0.0.2/32", tmp_path / "gone", claims)
    taken = gone.allocate("x")
    shutil.rmtree(tmp_path / "gone")  # its state dir is gone: nobody can come back for it
    b = Allocator("127.0.0.2/32", tmp_path / "b", claims)
    assert b.allocate("y") == taken


def test_pod_cidr_must_be_loopback(tmp_path):
    with pytest.raises(IpamError):
        Allocator("10.0.0.0/24", tmp_path, tmp_path / "claims")


def test_default_range_is_loopback(tmp_path):
    a = Allocator("127.64.0.0/10", tmp_path, tmp_path / "claims")
    ip = ipaddress.IPv4Address(a.allocate("p"))
    assert ip in ipaddress.IPv4Network("127.64.0.0/10")


def test_mount_helper_reports_an_unknown_command_as_start_error(tmp_path):
    import json

    term = tmp_path / "term"
    spec = {"mounts": [], "argv": ["/nonexistent/kk-cmd"], "cwd": str(tmp_path),
            "termination": str(term)}
    out = subprocess.run(helper("run", json.dumps(spec)), capture_output=True, text=True,
                         check=False)
    assert out.returncode == 128
    assert "exec '/nonexistent/kk-cmd'" in term.read_text()


def test_a_pid_without_start_time_is_never_taken_for_alive():
    import os

    from kernelkeeper.local.node import procs

    me = os.getpid()
    assert procs.alive(me, procs.start_ticks(me))
    assert not procs.alive(me, None)  # could be a recycled pid
    assert not procs.alive(me, procs.start_ticks(me) + 1)


def test_process_groups_0_and_1_are_never_signalled():
    from kernelkeeper.local.node import procs

    # killpg(1, sig) would be kill(-1, sig): every process on the machine.
    assert procs.signal_group(1, 0) is False
    assert procs.signal_group(0, 0) is False
