"""Loopback pod IPs, unique among running pods on this host.

Every address of 127.0.0.0/8 is local on Linux, so a pod process can bind its own 127.x.y.z
and two pods can listen on the same port. Several nodes may run on one host (two test runs,
`local up` next to a test fixture), so each address is claimed host-wide with an exclusive
file in a shared directory. A claim names its node (state dir, pid + start time) and the pod's
processes; it is stale once its state dir is gone, or once node and processes are all dead and
it is old enough that a restarting node would have renewed it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernelkeeper.local.node import procs

DEFAULT_POD_CIDR = "127.64.0.0/10"
STALE_AFTER = 300.0


def default_ipam_dir() -> Path:
    env = os.environ.get("KERNELKEEPER_IPAM_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / "kernelkeeper-ipam"


class IpamError(RuntimeError):
    pass


class Allocator:
    def __init__(self, cidr: str, owner: Path, claims_dir: Path | None = None) -> None:
        self.net = ipaddress.IPv4Network(cidr)
        if not self.net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise IpamError(f"pod CIDR {cidr} is not inside the loopback range 127.0.0.0/8")
        self.owner = str(owner.resolve())
        self.dir = claims_dir or default_ipam_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node = [os.getpid(), procs.start_ticks(os.getpid())]
        # Each node starts at its own place in the range so that concurrent nodes rarely race.
        digest = hashlib.sha256(self.owner.encode()).digest()
        self._cursor = int.from_bytes(digest[:4], "big") % self.net.num_addresses

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _usable(self, ip: ipaddress.IPv4Address) -> bool:
        last = int(ip) & 0xFF
        return ip != ipaddress.IPv4Address("127.0.0.1") and last not in (0, 255)

    def _claim_path(self, ip: str) -> Path:
        return self.dir / ip

    def _read(self, ip: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._claim_path(ip).read_text()))
        except (OSError, ValueError):
            return None

    def _write(self, ip: str, claim: dict[str, Any]) -> None:
        path = self._claim_path(ip)
        tmp = path.with_name(f".{ip}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(claim))
        tmp.replace(path)

    def _stale(self, claim: dict[str, Any] | None, path: Path) -> bool:
        if claim is None:
            return True
        if claim.get("owner") == self.owner:
            return False
        if not Path(claim.get("owner", "")).is_dir():
            return True
        node = claim.get("node") or [0, None]
        if procs.alive(int(node[0]), node[1]):
            return False
        if any(procs.alive(int(p), t) for p, t in claim.get("pids", [])):
            return False
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > STALE_AFTER
        return True

    def allocate(self, pod_uid: str) -> str:
        with self._locked():
            for _ in range(self.net.num_addresses):
                ip = self.net.network_address + self._cursor
                self._cursor = (self._cursor + 1) % self.net.num_addresses
                if not self._usable(ip):
                    continue
                key = str(ip)
                path = self._claim_path(key)
                if path.exists() and not self._stale(self._read(key), path):
                    continue
                self._write(key, {"owner": self.owner, "node": self.node, "pod": pod_uid,
                                  "pids": []})
                return key
        raise IpamError(f"no free pod IP left in {self.net}")

    def reclaim(self, ip: str, pod_uid: str, pids: list[tuple[int, int | None]]) -> bool:
        """Take back `ip` for a pod this node ran before it restarted; False if someone else has it."""
        with self._locked():
            claim = self._read(ip)
            path = self._claim_path(ip)
            if claim is not None and claim.get("owner") != self.owner and not self._stale(claim, path):
                return False
            self._write(ip, {"owner": self.owner, "node": self.node, "pod": pod_uid,
                             "pids": [list(p) for p in pids]})
            return True

    def note_pids(self, ip: str, pod_uid: str, pids: list[tuple[int, int | None]]) -> None:
        """Record the pod's processes, so a claim outlives a dead node while they run."""
        with self._locked():
            claim = self._read(ip)
            if claim is None or claim.get("owner") != self.owner:
                return
            claim.update(node=self.node, pod=pod_uid, pids=[list(p) for p in pids])
            self._write(ip, claim)

    def release(self, ip: str) -> None:
        with self._locked():
            claim = self._read(ip)
            if claim is not None and claim.get("owner") == self.owner:
                self._claim_path(ip).unlink(missing_ok=True)

    def forget_unused(self, keep: set[str]) -> None:
        """Drop this node's claims that no pod record references any more (after a crash)."""
        with self._locked():
            for path in self.dir.iterdir():
                if path.name.startswith(".") or path.name in keep:
                    continue
                claim = self._read(path.name)
                if claim is not None and claim.get("owner") == self.owner:
                    path.unlink(missing_ok=True)
