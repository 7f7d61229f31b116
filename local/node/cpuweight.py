"""CPU weight of pods, as the kubelet's cgroups give it.

A kubelet puts all pods under one cgroup sized to the node's allocatable CPU (its cpu.shares
are allocatable millicores x 1024 / 1000) and each pod in a child cgroup whose shares follow
the pod's CPU request (2 for a BestEffort pod). So pods busy starting compete with each other
by request, and as one group with everything else on the machine. Here the pods share one
machine with the control plane, the operator and the gateways: run as plain processes of
equal weight, 200 kernels starting at once on 2 cores left the operator so little CPU that it
lost its Lease.

With the cgroup v1 cpu controller writable (this host), the node does what the kubelet does,
under /sys/fs/cgroup/cpu/kernelkeeper/<node>/pod<uid>. Without it, each container process
runs at the nice value whose scheduler weight is nearest its pod's shares: a weaker stand-in,
since 400 processes of weight 110 still outweigh one of 1024.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from kernelkeeper.local.node.envvars import SpecError, parse_quantity

log = logging.getLogger(__name__)

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
MIN_SHARES = 2  # the kubelet's value for BestEffort pods
# The scheduler's weight for nice 0..19 (kernel/sched/core.c, sched_prio_to_weight).
_WEIGHTS = (1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
            110, 87, 70, 56, 45, 36, 29, 23, 18, 15)


def shares_for_millicores(millicores: Decimal | int) -> int:
    return max(MIN_SHARES, int(Decimal(millicores) * 1024 / 1000))


def _cpu(resources: Mapping[str, Any] | None, kind: str) -> Decimal | None:
    value = ((resources or {}).get(kind) or {}).get("cpu")
    return None if value is None else parse_quantity(value)


def pod_cpu_shares(pod: Mapping[str, Any]) -> int:
    """cpu.shares the kubelet would give this pod: its containers' CPU requests added up."""
    millicores = Decimal(0)
    try:
        for container in (pod.get("spec") or {}).get("containers") or []:
            res = container.get("resources")
            # The API server defaults a missing request to the limit; do the same.
            cpu = _cpu(res, "requests")
            if cpu is None:
                cpu = _cpu(res, "limits")
            if cpu is not None:
                millicores += cpu * 1000
    except SpecError:  # the API server validates quantities; never fail a start over one
        return MIN_SHARES
    return shares_for_millicores(millicores)


def nice_for_shares(shares: int) -> int:
    """The nice value (0..19) whose weight is nearest to `shares`; never below 0."""
    return min(range(len(_WEIGHTS)), key=lambda n: abs(_WEIGHTS[n] - shares))


class CpuGroups:
    """This node's pod cgroups, or nothing (nice values then) where the host forbids them."""

    def __init__(self, node_name: str, allocatable_cpu: str, root: Path = CGROUP_CPU) -> None:
        self.base = root / "kernelkeeper" / node_name
        self.enabled = False
        if os.environ.get("KERNELKEEPER_NODE_CPU_CGROUPS", "1") == "0":
            log.info("cpu cgroups turned off (KERNELKEEPER_NODE_CPU_CGROUPS=0); nice values")
            return
        try:
            shares = shares_for_millicores(parse_quantity(allocatable_cpu) * 1000)
            self.base.mkdir(parents=True, exist_ok=True)
            (self.base / "cpu.shares").write_text(str(shares))
            self.enabled = True
            log.info("pods run in cgroups under %s (cpu.shares %d)", self.base, shares)
            # Groups left by pods that ended while no node ran; the kernel keeps any that
            # still hold processes (pods this node is about to adopt).
            for group in self.base.glob("pod*"):
                with contextlib.suppress(OSError):
                    group.rmdir()
        except (OSError, SpecError) as exc:
            log.info("no cpu cgroups (%s); pods run at nice values instead", exc)

    def placement(self, pod: Mapping[str, Any]) -> tuple[Callable[[], None] | None, int]:
        """(run in the child before exec, nice value) for a container of this pod."""
        shares = pod_cpu_shares(pod)
        if not self.enabled:
            return None, nice_for_shares(shares)
        group = self.base / f"pod{pod['metadata']['uid']}"
        try:
            group.mkdir(exist_ok=True)
            (group / "cpu.shares").write_text(str(shares))
        except OSError as exc:
            log.warning("cgroup %s: %s; using a nice value", group, exc)
            return None, nice_for_shares(shares)
        procs = os.fsencode(group / "cgroup.procs")

        def join() -> None:
            # Runs in the forked child: only system calls, no locks. Joining before exec
            # means every process the container starts is in the pod's group from the start.
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        return join, 0

    def remove(self, uid: str) -> None:
        """Drop a finished pod's group (the kernel refuses while processes remain in it)."""
        if self.enabled:
            with contextlib.suppress(OSError):
                (self.base / f"pod{uid}").rmdir()
