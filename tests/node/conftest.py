from __future__ import annotations

import pytest
from kubernetes import client


@pytest.fixture(scope="module")
def core(cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture()
def ns(cluster, node) -> str:
    """A fresh namespace per test; the `node` fixture makes sure pods have a node to run on."""
    return cluster.new_namespace("node")
