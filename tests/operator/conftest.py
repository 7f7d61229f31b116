"""Operator tests: the real control plane, the real node and `kernelkeeper operator`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def ns(cluster, node, operator) -> Iterator[str]:
    """A fresh namespace served by the node and the session's operator; deleted afterwards."""
    name = cluster.new_namespace("op")
    yield name
    cluster.drop_namespace(name)
