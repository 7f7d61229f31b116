"""Gateway tests run against the real control plane, with kernels run by the real operator
(kopf, in-pod launcher) in containers on the real node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def kk_namespace(cluster, node, operator) -> Iterator[str]:
    """A fresh namespace whose KernelSessions become running kernels; deleted afterwards."""
    name = cluster.new_namespace("gw")
    yield name
    cluster.drop_namespace(name)
