"""The process node: a kubelet that runs each Pod container as a host process.

`kernelkeeper node` registers a Node, renews its Lease and runs every Pod that the real
kube-scheduler binds to it: each container's command becomes a host process in its own
process group, with a loopback pod IP (127.x.y.z) and status written the way a kubelet does.
Modules, one job each:

- ``kube``: thin async client (kubernetes.aio) that speaks plain JSON dicts.
- ``registration``: the Node object, its Ready heartbeat and its Lease.
- ``ipam``: loopback pod IPs, claimed host-wide so nodes on one host never collide.
- ``state``: what the node was running, persisted so a restarted node adopts it.
- ``procs``: spawning, watching (pidfd, /proc polling) and killing process groups.
- ``envvars``, ``volumes``, ``mountexec``: a container's env, files and private mounts.
- ``probes``: readiness, liveness and startup probes.
- ``container``, ``pod``: a container's life and a pod's life.
- ``podstatus``, ``events``: what the API server is told.
- ``kubelet``: the watch loop that ties it together; ``cli``: the `node` subcommand.
"""
