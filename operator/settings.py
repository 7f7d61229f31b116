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
    # CurveZMQ on kernel Pods' public ports (a kernel spec opts out with
    # metadata.kernelkeeper.curve: false, for an image whose pyzmq lacks it).
    curve: bool = True
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
    # The operator's own /healthz, /readyz and /metrics (operator/health.py); port 0: none.
    health_port: int = 8081
    health_ip: str = "0.0.0.0"
    # Liveness fails when the main event loop has not run its heartbeat for this long...
    loop_stall_timeout: float = 30.0
    # ...or, while leading, when a resync or culling round has not completed for this long
    # (None: derived from the round's interval and the request timeout, `round_deadline`).
    round_deadline_override: float | None = None

    def round_deadline(self, interval: float) -> float:
        """How long a periodic round every `interval` seconds may go without completing.

        A healthy round is a list plus a few requests per session, eight sessions at a time,
        each request capped by the request timeout; a slow API server on a large fleet can
        stretch it to several timeouts. Liveness is for a loop that stopped, not a slow one:
        restarting an operator that is merely slow only makes it slower.
        """
        if self.round_deadline_override is not None:
            return self.round_deadline_override
        return interval + max(120.0, 10 * self.request_timeout)

    def __post_init__(self) -> None:
        bad = [n for n in self.env_allow if n.startswith(contract.RESERVED_PREFIX)]
        if bad:
            raise ValueError(f"env names with prefix {contract.RESERVED_PREFIX} are reserved "
                             f"for the launcher: {', '.join(bad)}")
        if not self.launcher_command:
            raise ValueError("the launcher command must not be empty")
        if not (self.lease_duration > self.renew_deadline > self.retry_period > 0):
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        if not 0 <= self.health_port <= 65535:
            raise ValueError(f"the health port must be 0 (off) to 65535, not {self.health_port}")
        if self.loop_stall_timeout <= 1:
            raise ValueError("the event-loop stall timeout must exceed the 1 s heartbeat")
        if self.round_deadline_override is not None and self.round_deadline_override <= 0:
            raise ValueError("the round deadline must be positive")
