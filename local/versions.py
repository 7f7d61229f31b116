"""Pinned versions of everything the local environment builds from source.

One place: bump a version here and the next build lands in a fresh cache directory.
"""

KUBERNETES = "1.36.3"
# The staging modules (k8s.io/api, client-go, ...) are tagged v0.X.Y for Kubernetes v1.X.Y.
KUBERNETES_STAGING = "v0." + KUBERNETES.split(".", 1)[1]
ETCD = "3.6.16"
HELM = "3.22.0"

# The real node: container runtime, CNI plugins and cluster DNS, each from its Go module.
CONTAINERD = "2.3.4"
CNI_PLUGINS = "1.10.0"
COREDNS = "1.14.7"
# The Debian release the offline base image is bootstrapped from (images/README.md).
DEBIAN_SUITE = "bookworm"

# The Go that the wrapper modules need at least (k8s 1.36 declares go 1.26).
GO_MIN = (1, 24)

K8S_BINARIES = (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy",
)
