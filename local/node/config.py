"""Settings of one process node (the `kernelkeeper node` flags)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kernelkeeper.local.node.ipam import DEFAULT_POD_CIDR

DEFAULT_NODE_NAME = "kernelkeeper-local"


def default_state_dir(name: str) -> Path:
    env = os.environ.get("KERNELKEEPER_NODE_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kernelkeeper" / "node" / name


@dataclass
class NodeConfig:
    kubeconfig: str
    name: str = DEFAULT_NODE_NAME
    state_dir: Path = field(default_factory=lambda: default_state_dir(DEFAULT_NODE_NAME))
    pod_cidr: str = DEFAULT_POD_CIDR
    ipam_dir: Path | None = None
    host_ip: str = "127.0.0.1"
    kubelet_port: int = 0  # the `kubectl logs` endpoint; 0 picks a free port
    stop_pods_on_exit: bool = False
    # Advertised, not enforced: pods run as plain host processes.
    cpu: str = "1000"
    memory: str = "1Ti"
    max_pods: int = 1000
    lease_duration: int = 40
    # Crash-loop back-off: kept short (1s doubling to 10s) so tests stay fast; it resets after
    # a container ran for backoff_reset seconds.
    backoff_initial: float = 1.0
    backoff_max: float = 10.0
    backoff_reset: float = 60.0
    status_concurrency: int = 4
    path_env: str = field(default_factory=lambda: pod_path())


def pod_path() -> str:
    """PATH for pod processes: the node's interpreter directory first, then the node's PATH.

    So a pod command written for an image (`python -m kernelkeeper.kernel`) finds the same
    Python, with kernelkeeper installed, that runs this node.
    """
    host = os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    first = os.path.dirname(sys.executable)
    parts = [first] + [p for p in host.split(os.pathsep) if p and p != first]
    return os.pathsep.join(parts)
