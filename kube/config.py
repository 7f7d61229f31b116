"""Where the API server is and how to authenticate: in-cluster, or a kubeconfig."""

from __future__ import annotations

import os

from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig


async def load_configuration(kubeconfig: str | None = None) -> aclient.Configuration:
    """In-cluster when no kubeconfig is given and we run in a Pod; the kubeconfig otherwise.

    `kubeconfig=None` outside a Pod means `$KUBECONFIG`, then `~/.kube/config`, as kubectl.
    """
    conf = aclient.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        aconfig.load_incluster_config(client_configuration=conf)
    else:
        await aconfig.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"),
                                       client_configuration=conf, persist_config=False)
    return conf
