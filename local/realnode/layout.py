"""Every address, name and path of the real node, in one place.

Pod and Service ranges exist only on this machine: pods live in network namespaces behind the
bridge `BRIDGE`, whose address is also the node's (and the API server's) address; the Service
range is routed to the same bridge and only ever DNAT'd by kube-proxy.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "kernelkeeper-node"
BRIDGE = "kk-br0"
POD_CIDR = "10.88.0.0/24"
NODE_IP = "10.88.0.1"
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_NETWORK = "kernelkeeper"
# iptables chain of our own that drops anything for the pod or Service range leaving through
# the machine's default route (it should count zero packets).
GUARD_CHAIN = "KERNELKEEPER-GUARD"
IMAGE_DOMAIN = "kernelkeeper.local"


def first_host(cidr: str) -> str:
    return str(next(ipaddress.ip_network(cidr).hosts()))


@dataclass(frozen=True)
class NodeLayout:
    """Paths under `<state dir>/node`; sockets under a short directory in /run."""

    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "node"

    @property
    def run_dir(self) -> Path:
        # Unix socket paths are limited to 107 bytes; a deep state dir would not fit.
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:10]
        return Path("/run") / f"kernelkeeper-{digest}"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "containerd-state"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def runc_root(self) -> Path:
        return self.run_dir / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_state_dir(self) -> Path:
        return self.root / "cni" / "state"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def kubelet_pki(self) -> Path:
        return self.root / "pki"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def static_pods(self) -> Path:
        return self.root / "manifests"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def kube_proxy_kubeconfig(self) -> Path:
        return self.root / "kube-proxy.kubeconfig"

    @property
    def host_snapshot(self) -> Path:
        """What the host looked like before `up` touched it (sysctls, directories that existed)."""
        return self.root / "host-before.json"
