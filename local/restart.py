"""Restart one recorded component of a running local environment in place.

The component is stopped as `down` would stop it (SIGTERM, then SIGKILL) and started again with
the very command line it was recorded with: same ports, same data directory (etcd keeps its
data), its log appended to. The new process replaces the old one in the environment's records,
so `status` shows it and `down` stops it. The chaos soak (bench/soak.py) restarts etcd this way.
"""

from __future__ import annotations

from pathlib import Path

from kernelkeeper.local.environment import EnvironmentError_, LocalEnvironment
from kernelkeeper.local.processes import ProcessRecord, spawn, stop


def restart(env: LocalEnvironment, name: str, *, timeout: float = 10.0) -> ProcessRecord:
    """Stop the component recorded as `name` and start it again; returns its new record."""
    old = env.record(name)
    if old is None:
        raise EnvironmentError_(f"no component named {name!r} in {env.state_dir}")
    stop(old, timeout=timeout)
    new, _ = spawn(name, old.cmd, Path(old.log), ports=old.ports, cwd=env.state_dir)
    new.extra.update(old.extra)
    env.records[env.records.index(old)] = new
    env.save()
    return new
