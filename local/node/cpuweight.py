"""CPU weight of a pod's processes, standing in for the kubelet's cgroup cpu.shares.

A kubelet runs each pod in a cgroup whose CPU weight follows the pod's CPU request
(cpu.shares = millicores * 1024 / 1000; 2 for a BestEffort pod), so pods busy starting cannot
take the CPU away from everything else on the machine. Here the pods share one machine with
the control plane, the operator and the gateways, as plain processes of equal weight: 200
kernels starting at once on 2 cores left the operator so little CPU that a Lease renewal
took over 6 s and it lost its Lease. Each container process therefore runs at the nice value
whose scheduler weight is nearest to its pod's shares (never below nice 0: pods do not get
more than an ordinary process).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kernelkeeper.local.node.envvars import SpecError, parse_quantity

MIN_SHARES = 2  # the kubelet's value for BestEffort pods
# The scheduler's weight for nice 0..19 (kernel/sched/core.c, sched_prio_to_weight).
_WEIGHTS = (1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
            110, 87, 70, 56, 45, 36, 29, 23, 18, 15)


def _cpu(resources: Mapping[str, Any] | None, kind: str) -> Decimal | None:
    value = ((resources or {}).get(kind) or {}).get("cpu")
    return None if value is None else parse_quantity(value)


def pod_cpu_shares(pod: Mapping[str, Any]) -> int:
    """cpu.shares the kubelet would give this pod: its containers' CPU requests added up."""
    millicores = Decimal(0)
    for container in (pod.get("spec") or {}).get("containers") or []:
        res = container.get("resources")
        # The API server defaults a missing request to the limit; do the same for safety.
        cpu = _cpu(res, "requests")
        if cpu is None:
            cpu = _cpu(res, "limits")
        if cpu is not None:
            millicores += cpu * 1000
    return max(MIN_SHARES, int(millicores * 1024 / 1000))


def nice_for_shares(shares: int) -> int:
    """The nice value (0..19) whose weight is nearest to `shares`."""
    return min(range(len(_WEIGHTS)), key=lambda n: abs(_WEIGHTS[n] - shares))


def pod_nice(pod: Mapping[str, Any]) -> int:
    try:
        return nice_for_shares(pod_cpu_shares(pod))
    except SpecError:  # the API server validates quantities; never fail a start over one
        return nice_for_shares(MIN_SHARES)
