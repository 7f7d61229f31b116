"""The contract between the operator (which renders kernel Pods) and the in-pod launcher.

Both sides import these names, so the Pod the operator renders and the environment the
launcher reads cannot drift apart. Launcher settings use the ``KERNELKEEPER_`` prefix, which
the operator never lets users set; ``KERNEL_*`` names belong to the user-facing allow-list.
"""

from __future__ import annotations

# Set by the operator in every kernel Pod.
ENV_KERNEL_ID = "KERNEL_ID"
ENV_USERNAME = "KERNEL_USERNAME"
ENV_POD_IP = "KERNELKEEPER_POD_IP"  # downward API: status.podIP
ENV_KEY = "KERNELKEEPER_KEY"  # secretKeyRef to the session's key Secret
# The Curve server key pair (optional secretKeyRefs to the same Secret): when both are set the
# Pod's public ports speak CurveZMQ only.
ENV_CURVE_PUBLIC_KEY = "KERNELKEEPER_CURVE_PUBLIC_KEY"
ENV_CURVE_SECRET_KEY = "KERNELKEEPER_CURVE_SECRET_KEY"
ENV_ARGV = "KERNELKEEPER_KERNEL_ARGV"  # JSON list: the kernel spec's argv
ENV_PORTS = "KERNELKEEPER_PORTS"  # JSON object: channel -> port
ENV_HEALTH_PORT = "KERNELKEEPER_HEALTH_PORT"
ENV_SPEC_NAME = "KERNELKEEPER_KERNEL_SPEC"
ENV_MAX_RESTARTS = "KERNELKEEPER_MAX_CRASH_RESTARTS"
ENV_READY_TIMEOUT = "KERNELKEEPER_READY_TIMEOUT"  # seconds without progress before a kill
ENV_JOURNAL_MAX_MESSAGES = "KERNELKEEPER_JOURNAL_MAX_MESSAGES"
ENV_JOURNAL_MAX_BYTES = "KERNELKEEPER_JOURNAL_MAX_BYTES"

# Names a user may never set through spec.env: the operator owns them.
RESERVED_PREFIX = "KERNELKEEPER_"
OPERATOR_OWNED = frozenset({ENV_KERNEL_ID, ENV_USERNAME})

# The launcher's HTTP endpoint, a sixth named container port next to the five ZMQ channels.
HEALTH_PORT = 52006
HEALTH_PORT_NAME = "health"
HEALTH_PATH = "/healthz"  # 200 while the kernel answers, 503 otherwise (readiness probe)
STATUS_PATH = "/status"  # always 200: JSON with ready, state, restarts, pid, ...
METRICS_PATH = "/metrics"  # Prometheus text: the journal's size and evictions

# The journal service (gateways resume client sessions from it), a seventh container port.
JOURNAL_PORT = 52007
JOURNAL_PORT_NAME = "journal"
# Gateways report what they wrote to clients here (report_server.py), an eighth port.
REPORT_PORT = 52008
REPORT_PORT_NAME = "reports"
JOURNAL_MAX_MESSAGES = 10000
JOURNAL_MAX_BYTES = 32 * 1024 * 1024

# Launcher exit codes, visible as the container's terminated exitCode.
EXIT_SHUTDOWN = 0  # a client asked the kernel to shut down (no restart)
EXIT_GAVE_UP = 3  # the kernel kept crashing; the operator decides what happens next
EXIT_STOPPED = 143  # SIGTERM (Pod deletion): not a client shutdown, so never "Succeeded"
EXIT_BAD_CONFIG = 2
