"""What the node runs, persisted per pod so that a restarted node can adopt its processes.

One JSON file per pod uid in ``<state dir>/pods/``, replaced atomically on every change that
matters after a restart: the pod IP, each container's process (pid + start ticks), restart
count, last termination and readiness.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ContainerRecord:
    pid: int | None = None
    ticks: int | None = None
    started_at: str | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    last_terminated: dict[str, Any] | None = None
    terminated: dict[str, Any] | None = None  # final state (the container will not run again)
    # It ended while no node watched (lost, or stopped at node exit): the next node start
    # applies the restart policy.
    needs_decision: bool = False


@dataclass
class PodRecord:
    uid: str
    namespace: str
    name: str
    ip: str | None = None
    start_time: str | None = None
    init_done: bool = False
    init_containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    containers: dict[str, ContainerRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PodRecord:
        containers = {k: ContainerRecord(**v) for k, v in data.pop("containers", {}).items()}
        return cls(containers=containers, **data)


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pods_dir = root / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)

    def pod_dir(self, uid: str) -> Path:
        """Per-pod scratch: volumes, the default working directory and HOME."""
        return self.root / "run" / uid

    def log_dir(self, rec: PodRecord) -> Path:
        return self.root / "logs" / f"{rec.namespace}_{rec.name}_{rec.uid}"

    def save(self, rec: PodRecord) -> None:
        path = self.pods_dir / f"{rec.uid}.json"
        tmp = path.with_name(f".{rec.uid}.tmp")
        tmp.write_text(json.dumps(rec.to_json()))
        os.replace(tmp, path)

    def load_all(self) -> list[PodRecord]:
        out = []
        for path in sorted(self.pods_dir.glob("*.json")):
            try:
                out.append(PodRecord.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
        return out

    def remove(self, uid: str) -> None:
        import shutil

        (self.pods_dir / f"{uid}.json").unlink(missing_ok=True)
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)
