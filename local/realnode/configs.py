"""The real node's configuration files, rendered from its layout (pure: no I/O but the caller's).

Every value is a plain dict or string built in code; nothing a user typed is templated into text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kernelkeeper.local.realnode import layout as L


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def toml(tables: dict[str, dict[str, Any]], top: dict[str, Any]) -> str:
    """Just enough TOML for containerd: top-level keys, then one table per dotted name."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, keys in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def containerd_config(lay: L.NodeLayout, *, cni_bin_dir: Path, sandbox_image: str,
                      runc: str) -> str:
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return toml(
        {
            "grpc": {"address": str(lay.containerd_socket)},
            "ttrpc": {"address": str(lay.containerd_socket) + ".ttrpc"},
            "metrics": {"address": ""},
            "plugins.'io.containerd.grpc.v1.cri'": {
                # The streaming server (exec, attach, port-forward) stays on loopback.
                "stream_server_address": "127.0.0.1",
                "stream_server_port": "0",
            },
            "plugins.'io.containerd.cri.v1.images'": {
                "snapshotter": "overlayfs",
                # Nothing may ever be pulled: images are imported, and GC must not drop them.
                "discard_unpacked_layers": False,
            },
            "plugins.'io.containerd.cri.v1.images'.pinned_images": {"sandbox": sandbox_image},
            cri_runtime: {
                # These VMs lack CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below ours.
                "restrict_oom_score_adj": True,
                "netns_mounts_under_state_dir": True,
                "enable_selinux": False,
            },
            f"{cri_runtime}.cni": {
                "bin_dirs": [str(cni_bin_dir)],
                "conf_dir": str(lay.cni_conf_dir),
                "max_conf_num": 1,
            },
            f"{cri_runtime}.containerd": {"default_runtime_name": "runc"},
            f"{cri_runtime}.containerd.runtimes.runc": {"runtime_type": "io.containerd.runc.v2"},
            f"{cri_runtime}.containerd.runtimes.runc.options": {
                "BinaryName": runc,
                # runc's default root ignores containerd's state dir; keep its state with ours.
                "Root": str(lay.runc_root),
                "SystemdCgroup": False,
            },
            "plugins.'io.containerd.nri.v1.nri'": {"disable": True},
        },
        {
            "version": 3,
            "root": str(lay.containerd_root),
            "state": str(lay.containerd_state),
            # /opt/containerd would be written by the `opt` plugin; nothing here needs it.
            "disabled_plugins": ["io.containerd.internal.v1.opt",
                                 "io.containerd.snapshotter.v1.btrfs",
                                 "io.containerd.snapshotter.v1.zfs",
                                 "io.containerd.snapshotter.v1.devmapper",
                                 "io.containerd.snapshotter.v1.blockfile"],
        },
    )


def cni_conflist(lay: L.NodeLayout) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": L.CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": L.BRIDGE,
                "isGateway": True,
                # Pods get a route to the node only; no default route leads off the machine.
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": L.POD_CIDR, "gateway": L.NODE_IP}]],
                    "routes": [{"dst": L.POD_CIDR}, {"dst": L.SERVICE_CIDR}],
                    "dataDir": str(lay.cni_state_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(lay: L.NodeLayout, *, client_ca: Path, serving_cert: Path,
                   serving_key: Path, healthz_port: int) -> dict[str, Any]:
    endpoint = f"unix://{lay.containerd_socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        # Kubernetes 1.35+ refuses cgroup v1 by default (KEP-5573); these hosts have only v1.
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "address": L.NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "clusterDNS": [L.DNS_SERVICE_IP],
        "clusterDomain": L.CLUSTER_DOMAIN,
        # The host's resolver is off this machine: pods must never inherit it.
        "resolvConf": str(lay.resolv_conf),
        "staticPodPath": str(lay.static_pods),
        "podLogsDir": str(lay.pod_logs),
        "volumePluginDir": str(lay.root / "volume-plugins"),
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "maxPods": 250,
        "serializeImagePulls": False,
        # Imported images cannot be pulled back: image GC must never remove them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
    }


def kube_proxy_config(lay: L.NodeLayout, *, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(lay.kube_proxy_kubeconfig)},
        "hostnameOverride": L.NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": L.POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # NodePorts answer on the node's bridge address only, never on the machine's interfaces.
        "nodePortAddresses": [f"{L.NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "syncPeriod": "30s",
                     "minSyncPeriod": "0s"},
        # Zero values: kube-proxy leaves the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }


def coredns_corefile() -> str:
    # cluster.local and the reverse zones only; no `forward`: nothing leaves the machine.
    return (
        f"{L.CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{\n"
        "    errors\n"
        "    health :8080\n"
        "    ready :8181\n"
        f"    kubernetes {L.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        "        pods insecure\n"
        "        ttl 5\n"
        "    }\n"
        "    cache 5\n"
        "    loop\n"
        "    reload\n"
        "}\n"
    )


def coredns_manifests(image: str) -> list[dict[str, Any]]:
    ns = "kube-system"
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns",
                                                                    "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [
             {"apiGroups": [""], "resources": ["services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": ns},
         "data": {"Corefile": coredns_corefile()}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "serviceAccountName": "coredns",
                     "priorityClassName": "system-cluster-critical",
                     # CoreDNS must not resolve through itself.
                     "dnsPolicy": "Default",
                     "containers": [{
                         "name": "coredns",
                         "image": image,
                         "imagePullPolicy": "Never",
                         "args": ["-conf", "/etc/coredns/Corefile"],
                         "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                   {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                            "periodSeconds": 1},
                         "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                           "periodSeconds": 10},
                         "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                       "limits": {"memory": "128Mi"}},
                         "securityContext": {
                             "allowPrivilegeEscalation": False,
                             "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                             "readOnlyRootFilesystem": True,
                         },
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns",
                                           "readOnly": True}],
                     }],
                     "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                 },
             },
         }},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
         "spec": {"selector": labels, "clusterIP": L.DNS_SERVICE_IP,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
    ]
