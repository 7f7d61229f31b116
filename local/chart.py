"""The `chart` stage of `kernelkeeper local up`: the Helm chart on the real node, as users deploy it.

The operator and the gateways run as Pods of the chart's Deployments from the locally built
kernelkeeper image (`imagePullPolicy: Never`: the image is in the node's containerd, no registry
exists). The gateway Service is a NodePort on the node's bridge address, which only this machine
reaches, and that URL is what `local up` prints for `jupyter lab --gateway-url`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kernelkeeper.local import build
from kernelkeeper.local.environment import LocalEnvironment
from kernelkeeper.local.realnode import layout
from kernelkeeper.local.wait import http_ok, wait_until

CHART = Path(__file__).resolve().parents[1] / "charts" / "kernelkeeper"
RELEASE = "kernelkeeper"
NAMESPACE = "kernelkeeper"
NODE_PORT = 30888


def _say(msg: str) -> None:
    print(f"[kernelkeeper local] {msg}", file=sys.stderr, flush=True)


def helm_env(state_dir: Path) -> dict[str, str]:
    home = state_dir / "helm"
    return {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}


def chart_values(image: str, *, replicas: int, availability_mode: str) -> list[str]:
    repository, tag = image.rsplit(":", 1)
    values = {
        "image.repository": repository, "image.tag": tag, "image.pullPolicy": "Never",
        "gateway.replicas": str(replicas), "gateway.availabilityMode": availability_mode,
        "gateway.service.type": "NodePort", "gateway.service.nodePort": str(NODE_PORT),
    }
    return [a for k, v in values.items() for a in ("--set-string" if k == "image.tag" else "--set",
                                                    f"{k}={v}")]


def chart_stage(env: LocalEnvironment, *, replicas: int = 2,
                availability_mode: str = "active-active", timeout: float = 300.0) -> None:
    if not env.info.get("real_node"):
        raise RuntimeError("the chart needs the real node (kernelkeeper local up --node real)")
    helm = build.ensure_binaries(helm=True)["helm"]
    t0 = time.monotonic()
    _say(f"helm install {RELEASE} {CHART.name} into namespace {NAMESPACE} "
         f"({replicas} gateway replicas, {availability_mode}) ...")
    out = subprocess.run(
        [str(helm), "upgrade", "--install", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--create-namespace", "--kubeconfig", str(env.kubeconfig), "--wait",
         "--timeout", f"{int(timeout)}s",
         *chart_values(str(env.info["image"]), replicas=replicas,
                       availability_mode=availability_mode)],
        capture_output=True, text=True, env=helm_env(env.state_dir), check=False,
        timeout=timeout + 30)
    if out.returncode != 0:
        raise RuntimeError(f"helm install failed: {out.stderr.strip()}\n"
                           f"see `kubectl get pods -n {NAMESPACE}` and the pod logs")
    secret = json.loads(subprocess.run(
        [env.info["kubectl"], "--kubeconfig", str(env.kubeconfig), "get", "secret", "-n",
         NAMESPACE, f"{RELEASE}-gateway-token", "-o", "json"],
        capture_output=True, text=True, check=True).stdout)
    token = base64.b64decode(secret["data"]["token"]).decode()
    url = f"http://{layout.NODE_IP}:{NODE_PORT}"
    auth = {"Authorization": f"token {token}"}
    wait_until(lambda: http_ok(f"{url}/api/kernelspecs", headers=auth, timeout=5),
               what=f"the gateway Service at {url}", timeout=timeout, interval=0.5)
    _say(f"chart installed, gateway Service ready at {url} in {time.monotonic() - t0:.1f}s")
    env.info.update(gateway_url=url, gateway_token=token, availability_mode=availability_mode,
                    chart={"release": RELEASE, "namespace": NAMESPACE})
    env.save()
