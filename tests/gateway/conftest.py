"""Gateway tests run against the real control plane with kernels run by the operator and the
process node when those fixtures exist (tests/fixtures/operator.py); before that, by a stand-in
that runs the real in-pod launcher and writes the status the operator would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

_REAL = (Path(__file__).parents[1] / "fixtures" / "operator.py").exists()


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
