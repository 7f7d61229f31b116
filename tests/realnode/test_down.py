"""`local up` with the real node and `local down` leave the machine exactly as they found it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernelkeeper import procstat
from kernelkeeper.local import build
from kernelkeeper.local.realnode import layout as L
from tests.gateway.client import KernelWS, http

pytestmark = [pytest.mark.timeout(900), pytest.mark.own_environment]


def _out(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=False).stdout


def _rules(tool: str) -> list[str]:
    # Counters and generation comments change by themselves; the rules are what must match.
    return sorted(line for line in _out(tool).splitlines()
                  if line and not line.startswith("#"))


def host_state() -> dict[str, object]:
    mounts = sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return {
        "links": sorted(x["ifname"] for x in json.loads(_out("ip", "-j", "link", "show") or "[]")),
        "routes": sorted(_out("ip", "route", "show", "table", "all").splitlines()),
        "iptables": _rules("iptables-save"),
        "ip6tables": _rules("ip6tables-save"),
        "nft": re.sub(r"packets \d+ bytes \d+", "", _out("nft", "list", "ruleset")),
        "mounts": mounts,
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "kubepods": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")),
        "sysctls": {k: Path("/proc/sys", k).read_text().strip()
                    for k in ("net/ipv4/ip_forward", "kernel/panic", "kernel/panic_on_oops",
                              "vm/overcommit_memory", "net/bridge/bridge-nf-call-iptables")},
        "dirs": sorted(d for d in ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods",
                                   "/var/lib/cni", "/opt/cni", "/etc/cni") if os.path.exists(d)),
    }


def our_processes(state_dir: Path) -> list[str]:
    """Live processes started from the build cache or naming the state dir."""
    needles = (str(state_dir), str(build.cache_root()))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        st = procstat.read(int(entry.name))
        if st is None or st.state in ("Z", "X"):
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles) or "containerd-shim" in cmd:
            found.append(f"{entry.name}: {cmd[:200]}")
    return found


def test_up_and_down_leave_nothing_behind(tmp_path: Path) -> None:
    before = host_state()
    state = tmp_path / "env"
    cli = [sys.executable, "-m", "kernelkeeper", "local", "--state-dir", str(state)]
    up = subprocess.run([*cli, "up", "--detach", "--deploy", "processes", "--replicas", "2"], capture_output=True,
                        text=True, timeout=600, check=False)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        status = json.loads(subprocess.run([*cli, "status", "--json"], capture_output=True,
                                           text=True, check=True).stdout)
        url = status["gateway_url"]
        code, model = http("POST", f"{url}/api/kernels", {"name": "python3"}, timeout=180)
        assert code == 201, model
        ws = KernelWS(url.replace("http://", "ws://"), model["id"])
        reply, out, _ = ws.execute("print(6 * 7)")
        ws.close()
        assert out.strip() == "42"
        assert our_processes(state), "nothing of the environment seems to run"
        # Catch a supervisor in the middle of restarting its gateway: the stop must still end it.
        gw = status["components"]["gateway-1"]
        children = [p for p in procstat.session_members(gw["pid"]) if p != gw["pid"]]
        assert children, "the supervised gateway has no child"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.05)  # the supervisor's first back-off is 1 s: it is starting a new child
    finally:
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=300,
                              check=False)
    assert down.returncode == 0, down.stderr[-4000:]
    print(down.stderr)
    left = our_processes(state)
    assert not left, "processes outlived `local down`:\n" + "\n".join(left)
    after = host_state()
    for key in before:
        assert after[key] == before[key], f"{key} changed across up/down:\n" \
            f"before: {before[key]}\nafter:  {after[key]}"
    assert L.BRIDGE not in str(after["links"])
