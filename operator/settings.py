"""The operator's configuration: one frozen object built from CLI flags (and env defaults)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from kernelkeeper import __version__
from kernelkeeper.kernel import contract

DEFAULT_LAUNCHER = ("python", "-m", "kernelkeeper.kernel")
LEASE_NAME = "kernelkeeper-operator"


def default_identity() -> str:
    """The Pod name when running in a Pod (downward API), else host/pid plus a random part."""
    pod = os.environ.get("POD_NAME")
    if pod:
        return pod
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class OperatorConfig:
    # What to watch: an empty tuple means all namespaces.
    namespaces: tuple[str, ...] = ()
    kubeconfig: str | None = None
    # Kernel specs, read from these directories (plus $KERNELKEEPER_KERNELSPEC_PATH and built-ins).
    kernelspec_dirs: tuple[str, ...] = ()
    # The kernel Pod's command; locally the venv's python, in an image plain `python`.
    launcher_command: tuple[str, ...] = DEFAULT_LAUNCHER
    # Image for kernel Pods whose kernel spec names none: the kernelkeeper image, which holds
    # the launcher and ipykernel (the chart passes its own image here).
    default_image: str = field(default_factory=lambda: os.environ.get(
        "KERNELKEEPER_KERNEL_IMAGE", f"kernelkeeper:{__version__}"))
    image_pull_policy: str = "IfNotPresent"
    # spec.env names allowed besides KERNEL_*.
    env_allow: tuple[str, ...] = ()
    # Culling.
    idle_timeout: int = 3600  # seconds; 0 disables culling unless a session sets its own
    cull_interval: float = 60.0
    activity_staleness: float = 60.0
    cull_busy: bool = False
    cull_connected: bool = False
    # Pod replacements allowed after the first Pod, before the session is Failed.
    max_pod_restarts: int = 5
    # In-place crash restarts in a row before the launcher gives up.
    launcher_max_crash_restarts: int = 5
    # How long kernel Pods tolerate an unreachable / not-ready node before eviction.
    node_loss_toleration: int = 30
    # Full resync (status, in-place restart counts) of every session.
    resync_interval: float = 30.0
    request_timeout: float = 30.0
    health_timeout: float = 2.0
    # Leader election.
    lease_name: str = LEASE_NAME
    lease_namespace: str = field(default_factory=lambda: os.environ.get("POD_NAMESPACE", "default"))
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        bad = [n for n in self.env_allow if n.startswith(contract.RESERVED_PREFIX)]
        if bad:
            raise ValueError(f"env names with prefix {contract.RESERVED_PREFIX} are reserved "
                             f"for the launcher: {', '.join(bad)}")
        if not self.launcher_command:
            raise ValueError("the launcher command must not be empty")
        if not (self.lease_duration > self.renew_deadline > self.retry_period > 0):
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
