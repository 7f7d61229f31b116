from __future__ import annotations

import pytest
from kubernetes import client


@pytest.fixture(scope="module")
def core(cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture()
def ns(cluster, node, core):
    """A fresh namespace per test; the `node` fixture makes sure pods have a node to run on.

    Deleted afterwards (without waiting), so crash loops and servers do not outlive their test.
    """
    name = cluster.new_namespace("node")
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
