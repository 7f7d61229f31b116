"""The `node` stage of `kernelkeeper local up`: a process node next to the control plane."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from kernelkeeper.local.environment import LocalEnvironment
from kernelkeeper.local.node.config import DEFAULT_NODE_NAME
from kernelkeeper.local.node.kubelet import READY_FILE

NODE_COMPONENT = "node"


def node_stage(env: LocalEnvironment, *, name: str = DEFAULT_NODE_NAME,
               timeout: float = 60.0) -> None:
    state = env.state_dir / "node"
    ready = state / READY_FILE
    ready.unlink(missing_ok=True)
    record = env.start(
        NODE_COMPONENT,
        [sys.executable, "-m", "kernelkeeper", "node", "--kubeconfig", str(env.kubeconfig),
         "--name", name, "--state-dir", str(state), "--stop-pods-on-exit"],
        node_name=name, state_dir=str(state),
    )
    wait_ready(ready, record.pid, record.alive, timeout)
    print(f"[kernelkeeper local] node {name} Ready", file=sys.stderr, flush=True)


def wait_ready(ready: Path, pid: int, alive: object, timeout: float) -> None:
    """Wait until the node process with `pid` has registered its Node and serves pods."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(ready.read_text()).get("pid") == pid:
                return
        except (OSError, ValueError):
            pass
        if callable(alive) and not alive():
            raise RuntimeError("the process node exited while starting; see its log")
        time.sleep(0.1)
    raise TimeoutError(f"the process node was not ready after {timeout:.0f}s")
