"""The real node: containerd, runc, CNI, kubelet, kube-proxy and CoreDNS beside the control plane.

`layout` names every path and address, `configs` renders each component's configuration (pure),
`network` makes and removes the host's bridge, routes and guard rules, `images` builds and imports
the node's images, `runtime` starts the components and `cleanup` leaves the machine as it was.
"""
