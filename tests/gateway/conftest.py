"""Gateway tests run against the real control plane, with kernels run by the real operator
(kopf, in-pod launcher) in containers on the real node."""

from __future__ import annotations

import pytest


@pytest.fixture
def kk_namespace(cluster, node, operator) -> str:
    """A fresh namespace whose KernelSessions become running kernels."""
    return cluster.new_namespace("gw")
