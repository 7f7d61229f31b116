"""What the machine looks like, for comparing it before `local up` and after `local down`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from kernelkeeper import procstat
from kernelkeeper.local import build


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
