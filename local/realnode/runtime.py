"""Start the real node's components beside a running control plane, in dependency order.

containerd (with runc and the CNI plugins), then the images, then kubelet (its own client and
serving certificates, Webhook authentication and authorization), then kube-proxy, then CoreDNS as
a Deployment. Each is a recorded process of the local environment, so `down` stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kernelkeeper.local import controlplane, pki, versions
from kernelkeeper.local.processes import free_port
from kernelkeeper.local.realnode import configs, images, network
from kernelkeeper.local.realnode import layout as L
from kernelkeeper.local.wait import Pending, http_ok, wait_until

if TYPE_CHECKING:
    from kernelkeeper.local.environment import LocalEnvironment


def _say(msg: str) -> None:
    print(f"[kernelkeeper node] {msg}", file=sys.stderr, flush=True)


# Nothing is ever pulled: an image a Pod names but the node lacks must fail on this machine,
# never become a registry lookup. Every registry request of containerd goes to this proxy,
# a closed port on loopback, so it fails at once without even resolving the registry's name.
NO_REGISTRY_PROXY = "http://127.0.0.1:9"


def _path_env(*dirs: Path) -> dict[str, str]:
    path = os.pathsep.join([*(str(d) for d in dirs), os.environ.get("PATH", ""),
                            "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return {**os.environ, "PATH": path}


def _containerd_env(bin_dir: Path) -> dict[str, str]:
    """containerd's environment: its shim on PATH, and registries unreachable by design."""
    env = {k: v for k, v in _path_env(bin_dir).items()
           if k.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")}
    return {**env, "HTTP_PROXY": NO_REGISTRY_PROXY, "HTTPS_PROXY": NO_REGISTRY_PROXY}


def runc_binary() -> str:
    runc = shutil.which("runc") or ("/usr/sbin/runc" if Path("/usr/sbin/runc").exists() else None)
    if not runc:
        raise RuntimeError("runc was not found: apt-get install -y runc")
    return runc


def start(env: LocalEnvironment, bins: dict[str, Path], *, timeout: float = 120.0) -> None:
    """containerd, images, kubelet, kube-proxy and CoreDNS; returns once the node is Ready.

    `bins` is what `build.ensure_binaries(node=True)` returned: every binary, already built.
    """
    t0 = time.monotonic()
    lay = L.NodeLayout(env.state_dir)
    for d in (lay.root, lay.run_dir, lay.cni_conf_dir, lay.cni_state_dir, lay.kubelet_root,
              lay.kubelet_pki, lay.pod_logs, lay.static_pods, lay.containerd_root,
              lay.containerd_state, lay.runc_root):
        d.mkdir(parents=True, exist_ok=True)
    lay.resolv_conf.write_text("")
    keys = env.pki()
    # Images first (they may need building), before anything is running.
    kk_image, kk_archive = images.ensure_kernelkeeper_image()
    pause, pause_archive = images.pause_image()
    coredns, coredns_archive = images.coredns_image()
    env.info["image"] = kk_image
    env.save()

    # containerd
    cni_bin = bins["cni/bridge"].parent
    lay.containerd_config.write_text(configs.containerd_config(
        lay, cni_bin_dir=cni_bin, sandbox_image=pause, runc=runc_binary()))
    lay.cni_conf_dir.joinpath("10-kernelkeeper.conflist").write_text(
        json.dumps(configs.cni_conflist(lay), indent=2))
    ctr = bins["ctr"]
    rec = env.start("containerd", [str(bins["containerd"]), "--config", str(lay.containerd_config)],
                    env=_containerd_env(bins["containerd"].parent))

    def containerd_up() -> bool | Pending:
        out = subprocess.run([str(ctr), "--address", str(lay.containerd_socket), "version"],
                             capture_output=True, text=True, check=False, timeout=10)
        return out.returncode == 0 or Pending(out.stderr.strip()[-300:]
                                             or f"ctr version exited {out.returncode}")

    wait_until(containerd_up, what="containerd", timeout=timeout, alive=rec.alive, log=rec.log)
    _say(f"containerd {versions.CONTAINERD} up in {time.monotonic() - t0:.1f}s")
    log = env.logs / "images.log"
    for archive in (pause_archive, coredns_archive, kk_archive):
        images.import_archive(ctr, lay.containerd_socket, archive, log)

    # kubelet
    node_cert, node_key = pki.client_cert(keys, lay.kubelet_pki, "kubelet-client",
                                          f"system:node:{L.NODE_NAME}", "system:nodes")
    controlplane.write_kubeconfig(lay.kubelet_kubeconfig, env.server, keys.ca_cert, node_cert,
                                  node_key, f"system:node:{L.NODE_NAME}")
    serve_cert, serve_key = pki.serving_cert(keys, lay.kubelet_pki, "kubelet-serving",
                                             L.NODE_NAME, ips=(L.NODE_IP,), dns=(L.NODE_NAME,))
    healthz = free_port()
    lay.kubelet_config.write_text(yaml.safe_dump(configs.kubelet_config(
        lay, client_ca=keys.client_ca_cert, serving_cert=serve_cert, serving_key=serve_key,
        healthz_port=healthz)))
    t1 = time.monotonic()
    kubelet = env.start("kubelet", [
        str(bins["kubelet"]), f"--config={lay.kubelet_config}",
        f"--kubeconfig={lay.kubelet_kubeconfig}", f"--root-dir={lay.kubelet_root}",
        f"--cert-dir={lay.kubelet_pki}", f"--node-ip={L.NODE_IP}",
        f"--hostname-override={L.NODE_NAME}", "--v=1",
    ], env=_path_env(), ports={"healthz": healthz, "https": 10250})
    wait_until(lambda: node_ready(env), what="kubelet (Node Ready)", timeout=timeout,
               alive=kubelet.alive, log=kubelet.log)
    _say(f"kubelet registered {L.NODE_NAME}, Ready in {time.monotonic() - t1:.1f}s")

    # kube-proxy
    proxy_cert, proxy_key = pki.client_cert(keys, lay.kubelet_pki, "kube-proxy",
                                            "system:kube-proxy", None)
    controlplane.write_kubeconfig(lay.kube_proxy_kubeconfig, env.server, keys.ca_cert,
                                  proxy_cert, proxy_key, "system:kube-proxy")
    p_health, p_metrics = free_port(), free_port()
    lay.kube_proxy_config.write_text(yaml.safe_dump(configs.kube_proxy_config(
        lay, healthz_port=p_health, metrics_port=p_metrics)))
    proxy = env.start("kube-proxy", [str(bins["kube-proxy"]), f"--config={lay.kube_proxy_config}",
                                     "--v=1"], env=_path_env(), ports={"healthz": p_health})
    wait_until(lambda: http_ok(f"http://127.0.0.1:{p_health}/healthz"), what="kube-proxy",
               timeout=timeout, alive=proxy.alive, log=proxy.log)
    # kube-proxy put its jumps in front; the guard goes back to the top of the chains.
    network.install_guard()

    # CoreDNS
    t2 = time.monotonic()
    manifest = "\n".join(json.dumps(m) for m in configs.coredns_manifests(coredns))
    out = subprocess.run([env.info["kubectl"], "--kubeconfig", str(env.kubeconfig), "apply",
                          "-f", "-"], input=manifest, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"applying CoreDNS failed: {out.stderr.strip()}")
    controlplane.wait_for(env.server, keys,
                          "/apis/apps/v1/namespaces/kube-system/deployments/coredns", timeout,
                          check=lambda o: (o.get("status") or {}).get("availableReplicas", 0) >= 1)
    _say(f"CoreDNS serving {L.CLUSTER_DOMAIN} at {L.DNS_SERVICE_IP} in "
         f"{time.monotonic() - t2:.1f}s")
    env.info["node"] = {"name": L.NODE_NAME, "ip": L.NODE_IP, "pod_cidr": L.POD_CIDR,
                        "service_cidr": L.SERVICE_CIDR, "containerd_socket":
                        str(lay.containerd_socket), "ctr": str(ctr)}
    env.save()
    _say(f"real node up in {time.monotonic() - t0:.1f}s")


def node_ready(env: LocalEnvironment) -> bool | Pending:
    """A condition (for wait_until): the node is registered and its Ready condition is True."""
    code, body = controlplane.api_get(env.server, env.pki(), f"/api/v1/nodes/{L.NODE_NAME}")
    if code != 200:
        return Pending(f"HTTP {code} for Node {L.NODE_NAME}")
    node: dict[str, Any] = json.loads(body)
    ready = [c for c in (node.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"]
    if ready and ready[0].get("status") == "True":
        return True
    return Pending(f"Ready={ready[0].get('status')} ({ready[0].get('reason')})" if ready
                   else f"Node {L.NODE_NAME} has no Ready condition yet")
