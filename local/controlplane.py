"""Command lines, kubeconfigs and readiness checks for etcd and the Kubernetes components."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kernelkeeper.local.pki import Pki
from kernelkeeper.local.wait import Pending, wait_until

SERVICE_CIDR = "10.0.0.0/24"


def etcd_cmd(etcd: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    return [
        str(etcd),
        "--name=kernelkeeper-local",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=kernelkeeper-local=http://127.0.0.1:{peer_port}",
        # Throw-away data: fsync buys nothing here and costs seconds on slow disks.
        "--unsafe-no-fsync=true",
        "--logger=zap",
        "--log-level=warn",
    ]


def apiserver_cmd(apiserver: Path, pki: Pki, etcd_port: int, port: int, *,
                  host: str = "127.0.0.1", kubelet_client: tuple[Path, Path] | None = None
                  ) -> list[str]:
    """`host` is loopback, or the real node's bridge address so that pods reach it too."""
    if kubelet_client:
        # logs, exec and port-forward go to the kubelet over TLS, verified both ways.
        node = [f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                # Never resolve the node's name: the host's resolver is off this machine.
                "--kubelet-preferred-address-types=InternalIP"]
    else:
        # Endpoints may not hold loopback addresses, so the apiserver must not try to publish
        # its own (127.0.0.1) address for the `kubernetes` Service.
        node = ["--endpoint-reconciler-type=none"]
    return [
        str(apiserver),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--bind-address={host}",
        f"--advertise-address={host}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.client_ca_cert}",
        f"--service-account-issuer=https://{host}:{port}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        *node,
        "--profiling=false",
        "-v=1",
    ]


def controller_manager_cmd(kcm: Path, pki: Pki, kubeconfig: Path) -> list[str]:
    return [
        str(kcm),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        "--use-service-account-credentials=true",
        # garbagecollector, namespace, serviceaccount(-token), deployment, replicaset, ... and
        # the node lifecycle controller, which evicts pods of a node that stops heart-beating.
        "--controllers=*",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--concurrent-gc-syncs=5",
        "-v=1",
    ]


def scheduler_cmd(scheduler: Path, kubeconfig: Path) -> list[str]:
    return [
        str(scheduler),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "-v=1",
    ]


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    """A self-contained kubeconfig (certificates embedded) usable from any directory."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kernelkeeper-local",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [
            {"name": "kernelkeeper-local", "context": {"cluster": "kernelkeeper-local", "user": user}}
        ],
        "current-context": "kernelkeeper-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _ssl_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return ctx


def api_get(server: str, pki: Pki, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(server + path)
    try:
        with urllib.request.urlopen(req, context=_ssl_context(pki), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _http_state(code: int, body: bytes) -> str:
    return f"HTTP {code}: {body[-300:].decode(errors='replace').strip()}"


def wait_ready(server: str, pki: Pki, timeout: float, alive: Callable[[], bool],
               log: Path | str | None = None) -> None:
    """Poll /readyz until it answers ok; `alive()` lets a crashed apiserver fail fast."""

    def ready() -> bool | Pending:
        code, body = api_get(server, pki, "/readyz", timeout=2.0)
        return True if code == 200 else Pending(_http_state(code, body))

    wait_until(ready, what="kube-apiserver", timeout=timeout, alive=alive, log=log)


def wait_for(server: str, pki: Pki, path: str, timeout: float,
             check: Callable[[Any], bool] | None = None) -> Any:
    """Poll a GET until it returns 200 (and `check(obj)` is true); returns the object."""

    def available() -> Any:
        code, body = api_get(server, pki, path, timeout=2.0)
        if code != 200:
            return Pending(_http_state(code, body))
        obj = json.loads(body)
        if check is not None and not check(obj):
            shown = obj.get("status", obj) if isinstance(obj, dict) else obj
            return Pending(f"HTTP 200, not yet as awaited: {json.dumps(shown)[:300]}")
        return obj

    return wait_until(available, what=path, timeout=timeout)
