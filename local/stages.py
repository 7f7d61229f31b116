"""What `local up` starts after the control plane: one stage per kernelkeeper component."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kernelkeeper.local.environment import LocalEnvironment

Stage = Callable[[LocalEnvironment], None]


def stages_for(args: argparse.Namespace) -> list[Stage]:
    if getattr(args, "control_plane_only", False):
        return []
    from kernelkeeper.gateway.stage import gateway_stage
    from kernelkeeper.local.node.stage import node_stage
    from kernelkeeper.operator.stage import operator_stage

    # The node first: the operator's kernel pods need somewhere to run. The real node is part
    # of the environment itself (it starts with the control plane).
    first = [] if getattr(args, "node", "process") == "real" else [node_stage]
    return [*first, operator_stage,
            lambda env: gateway_stage(env, replicas=getattr(args, "replicas", 1),
                                      availability_mode=getattr(args, "availability_mode",
                                                                "active-active"))]
