"""What `local up` starts after the control plane: one stage per kernelkeeper component."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kernelkeeper.local.environment import LocalEnvironment

Stage = Callable[[LocalEnvironment], None]


def stages_for(args: argparse.Namespace) -> list[Stage]:
    if getattr(args, "control_plane_only", False):
        return []
    from kernelkeeper.local.node.stage import node_stage

    # The node first: the operator's kernel pods need somewhere to run.
    return [node_stage]
