"""Leave the machine as the node found it: no container, shim, mount, cgroup, device or chain.

Runs after the recorded processes (kubelet, containerd, ...) are stopped, and is safe to run
again: containers outlive containerd in their shims, so they are found by what they are (a shim
naming our socket, a process in a kubepods cgroup), never by a pid we merely remember.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from kernelkeeper.local.realnode import layout as L
from kernelkeeper.local.realnode import network

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def shim_pids(lay: L.NodeLayout) -> list[int]:
    needle = str(lay.containerd_socket)
    return [pid for pid in _pids() if "containerd-shim" in _cmdline(pid) and needle in _cmdline(pid)]


def kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory in every v1 hierarchy, deepest first."""
    found: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / KUBEPODS
        if top.is_dir():
            found += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def pod_pids() -> set[int]:
    pids: set[int] = set()
    for cg in kubepods_cgroups():
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(x) for x in (cg / "cgroup.procs").read_text().split())
    return pids


def _kill(pids: set[int] | list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def mounts_under(*roots: Path) -> list[str]:
    prefixes = tuple(str(r.resolve()) for r in roots)
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p + "/") for p in prefixes):
                out.append(point)
    return out


def unmount_all(*roots: Path) -> int:
    count = 0
    for _ in range(5):
        points = sorted(set(mounts_under(*roots)), key=len, reverse=True)
        if not points:
            break
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
            count += 1
    return count


def cleanup(state_dir: Path) -> list[str]:
    """Everything but the recorded processes; returns what it did, for `local down` to print."""
    lay = L.NodeLayout(state_dir)
    notes = []
    pods = pod_pids()
    shims = shim_pids(lay)
    if pods or shims:
        _kill(set(pods) | set(shims))
        notes.append(f"killed {len(pods)} container process(es) and {len(shims)} shim(s)")
    deadline = time.monotonic() + 10
    while (pod_pids() or shim_pids(lay)) and time.monotonic() < deadline:
        _kill(pod_pids() | set(shim_pids(lay)))
        time.sleep(0.1)
    n = unmount_all(lay.root, lay.run_dir)
    if n:
        notes.append(f"unmounted {n} mount(s)")
    for cg in kubepods_cgroups():
        with contextlib.suppress(OSError):
            cg.rmdir()
    notes += network.teardown(lay)
    shutil.rmtree(lay.run_dir, ignore_errors=True)
    return notes


def running(binaries: list[Path]) -> list[int]:
    """Processes running one of these binaries (by argv[0])."""
    wanted = {str(b) for b in binaries}
    return [pid for pid in _pids() if _cmdline(pid).split(" ", 1)[0] in wanted]


def stale_node(state_dir: Path, node_binaries: list[Path]) -> list[str]:
    """Remove what an earlier environment that never ran `local down` left of its node.

    The node's bridge outlives a killed environment. If no containerd or kubelet of ours is
    running, nothing uses it: its leftover pods and network go, and the new node can start.
    Returns what it did; raises NetworkError while another node is really up.
    """
    if L.BRIDGE not in network.links():
        return []
    live = running(node_binaries)
    if live:
        raise network.NetworkError(
            f"a network device {L.BRIDGE} already exists and another local environment's node "
            f"is running (pids {', '.join(map(str, live))}): run `kernelkeeper local down` "
            "in that environment first")
    # Its pods are found by their kubepods cgroups, whoever started them; everything else
    # cleanup() removes belongs to no state dir in particular, or to this new one (empty yet).
    return cleanup(state_dir)
