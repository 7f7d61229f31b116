"""What `local up` starts after the control plane and the real node.

`chart` (the default): the Helm chart, operator and gateways as Pods of the local image.
`processes`: the operator and the gateways as supervised host processes (nginx in front of two
or more), which starts faster and lets a debugger or a profiler at them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kernelkeeper.local.environment import LocalEnvironment

Stage = Callable[[LocalEnvironment], None]


def stages_for(args: argparse.Namespace) -> list[Stage]:
    if getattr(args, "control_plane_only", False):
        return []
    mode = getattr(args, "availability_mode", "active-active")
    replicas = getattr(args, "replicas", None)
    if getattr(args, "deploy", "processes") == "chart":
        from kernelkeeper.gateway.availability import normalize_mode
        from kernelkeeper.local.chart import chart_stage

        return [lambda env: chart_stage(env, replicas=replicas or 2,
                                        availability_mode=normalize_mode(mode))]
    from kernelkeeper.local.gateway_stage import gateway_stage
    from kernelkeeper.local.operator_stage import operator_stage

    return [operator_stage,
            lambda env: gateway_stage(env, replicas=replicas or 1, availability_mode=mode)]
