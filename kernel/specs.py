"""Kernel specs, read from standard Jupyter kernelspec directories.

Operator and gateway read the same directories through one `SpecCatalog`: the gateway lists
the specs to clients, the operator renders Pods from them. Pod settings live in kernel.json
under ``metadata.kernelkeeper`` (images/README.md lists them): ``image``, ``resources``,
``nodeSelector``, ``tolerations``, ``serviceAccountName``, ``runAsUser``, ``runAsGroup``,
``readOnlyRootFilesystem``, ``curve``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).with_name("kernelspecs")
PATH_ENV = "KERNELKEEPER_KERNELSPEC_PATH"
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class KernelSpec:
    name: str
    resource_dir: Path
    spec: dict[str, Any]
    pod: dict[str, Any] = field(default_factory=dict)
    # Files other than kernel.json that clients may fetch (logos, kernel.js, ...), listed
    # when the spec is loaded so that serving the spec never touches the disk.
    resources: tuple[str, ...] = ()

    @property
    def argv(self) -> list[str]:
        return list(self.spec.get("argv") or [])

    @property
    def display_name(self) -> str:
        return str(self.spec.get("display_name", self.name))

    def read_resource(self, name: str) -> bytes:
        """One of `resources` (blocking: call it off the event loop)."""
        if name not in self.resources:
            raise FileNotFoundError(name)
        return (self.resource_dir / name).read_bytes()


def search_path(configured: list[str] | None = None) -> list[Path]:
    """Configured dirs, then $KERNELKEEPER_KERNELSPEC_PATH, then the built-in python3 spec."""
    dirs = [Path(p) for p in configured or []]
    env = os.environ.get(PATH_ENV)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(BUILTIN_DIR)
    return dirs


def check_shape(data: Any) -> None:
    """ValueError naming the field unless kernel.json has the shape everything here reads."""
    if not isinstance(data, dict):
        raise ValueError("kernel.json must be a JSON object")
    argv = data.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a non-empty list of strings")
    for name in ("display_name", "language"):
        if name in data and not isinstance(data[name], str):
            raise ValueError(f"{name} must be a string")
    env = data.get("env")
    if env is not None and not (isinstance(env, dict)
                                and all(isinstance(v, str) for v in env.values())):
        raise ValueError("env must be an object of strings")
    meta = data.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("metadata must be an object")
    pod = (meta or {}).get("kernelkeeper")
    if pod is not None and not isinstance(pod, dict):
        raise ValueError("metadata.kernelkeeper must be an object")


def load_kernel_specs(dirs: list[Path]) -> dict[str, KernelSpec]:
    """All valid specs; earlier directories win. Broken specs are logged and skipped."""
    found: dict[str, KernelSpec] = {}
    for base in dirs:
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            spec_file = entry / "kernel.json"
            if entry.name in found or not _NAME_RE.match(entry.name) or not spec_file.is_file():
                continue
            try:
                data = json.loads(spec_file.read_text())
                check_shape(data)
            except (OSError, ValueError, RecursionError) as exc:
                log.warning("skipping kernel spec %s: %s", spec_file, exc)
                continue
            pod = (data.get("metadata") or {}).get("kernelkeeper") or {}
            resources = tuple(sorted(p.name for p in entry.iterdir()
                                     if p.is_file() and p.name != "kernel.json"))
            found[entry.name] = KernelSpec(entry.name, entry, data, dict(pod), resources)
    return found


class SpecCatalog:
    """The kernel specs of `dirs` (see `search_path`), re-read at most every `ttl` seconds.

    `get()` reads the disk on a worker thread, so neither the operator's nor the gateway's
    event loop ever waits on it; until the first load finishes, callers await that load.
    """

    def __init__(self, dirs: list[str] | tuple[str, ...], ttl: float = 5.0) -> None:
        self.dirs = list(dirs)
        self.ttl = ttl
        self._specs: dict[str, KernelSpec] = {}
        self._loaded = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, KernelSpec]:
        if time.monotonic() - self._loaded > self.ttl:
            async with self._lock:  # one reload at a time, however many requests ask
                if time.monotonic() - self._loaded > self.ttl:
                    self._specs = await asyncio.to_thread(load_kernel_specs,
                                                          search_path(self.dirs))
                    self._loaded = time.monotonic()
        return self._specs
