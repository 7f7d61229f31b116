"""Real-node tests run on the session's cluster and operator; gateways are started per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import Cluster
from tests.fixtures.gateway import GatewayFactory


@pytest.fixture
def real_gateways(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(cluster.kubeconfig, tmp_path_factory.mktemp("real-gateways"))
    try:
        yield factory
    finally:
        factory.stop_all()
