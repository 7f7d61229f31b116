"""Operator tests: the real control plane, the real node and `kernelkeeper operator`."""

from __future__ import annotations

import pytest


@pytest.fixture
def ns(cluster, node, operator) -> str:
    """A fresh namespace served by the node and the session's operator."""
    return cluster.new_namespace("op")
