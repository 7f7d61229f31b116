"""Gateway tests run against the real control plane with kernels run by the operator and the
process node when those fixtures exist (tests/fixtures/operator.py); before that, by a stand-in
that runs the real in-pod launcher and writes the status the operator would."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# KK_GATEWAY_STANDIN=1 forces the stand-in (while the operator is being built).
_REAL = (Path(__file__).parents[1] / "fixtures" / "operator.py").exists() and \
    not os.environ.get("KK_GATEWAY_STANDIN")


@pytest.fixture
def kk_namespace(cluster, request, tmp_path) -> Iterator[str]:
    """A fresh namespace whose KernelSessions become running kernels."""
    ns = cluster.new_namespace("gw")
    if _REAL:
        request.getfixturevalue("node")
        request.getfixturevalue("operator")
        yield ns
        return
    from tests.gateway.standin import StandinOperator

    op = StandinOperator(cluster.api_client(), ns, str(tmp_path)).start()
    try:
        yield ns
    finally:
        op.stop()
