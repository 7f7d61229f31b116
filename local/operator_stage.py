"""The `operator` stage of `kernelkeeper local up --deploy processes`: a host-process operator."""

from __future__ import annotations

import sys
from pathlib import Path

from kernelkeeper.local.environment import LocalEnvironment
from kernelkeeper.local.processes import free_port
from kernelkeeper.local.wait import Pending, wait_until

OPERATOR_COMPONENT = "operator"
LEADING = "is the leader"


def operator_stage(env: LocalEnvironment, *, timeout: float = 60.0) -> None:
    if not env.info.get("real_node"):
        raise RuntimeError("the operator's kernel Pods need the real node")
    # Kernel pods are containers of the locally built image, which no registry serves.
    pods = ["--default-image", str(env.info["image"]), "--image-pull-policy", "Never"]
    record = env.start(
        OPERATOR_COMPONENT,
        # Supervised: an operator that loses its Lease exits non-zero on purpose, and in a
        # cluster its Deployment would start a fresh one.
        [sys.executable, "-m", "kernelkeeper.local.supervise", "--",
         sys.executable, "-m", "kernelkeeper", "operator", "--kubeconfig", str(env.kubeconfig),
         *pods, "--identity", "local-operator",
         "--lease-namespace", "default",
         # On the host, the health endpoint answers on loopback only.
         "--health-ip", "127.0.0.1", "--health-port", str(free_port())],
    )
    log = Path(record.log)

    def leading() -> bool | Pending:
        if log.exists() and LEADING in log.read_text(errors="replace"):
            return True
        return Pending(f"no {LEADING!r} in its log yet")

    wait_until(leading, what="the operator", timeout=timeout, alive=record.alive, log=log)
    print("[kernelkeeper local] operator leading", file=sys.stderr, flush=True)
