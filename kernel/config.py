"""The launcher's settings, read from the environment the operator put into the Pod."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract


class ConfigError(ValueError):
    """The Pod environment is missing or malformed: the launcher cannot start a kernel."""


@dataclass(frozen=True)
class LauncherConfig:
    kernel_id: str
    ip: str
    key: str
    argv: list[str]
    ports: dict[str, int] = field(default_factory=lambda: dict(crd.DEFAULT_PORTS))
    health_port: int = contract.HEALTH_PORT
    max_crash_restarts: int = 5
    spec_name: str = ""
    ready_timeout: float = 60.0
    journal_port: int = contract.JOURNAL_PORT
    report_port: int = contract.REPORT_PORT
    journal_max_messages: int = contract.JOURNAL_MAX_MESSAGES
    journal_max_bytes: int = contract.JOURNAL_MAX_BYTES
    # (public, secret) Z85 keys: the public ports are CurveZMQ servers.
    curve: tuple[bytes, bytes] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LauncherConfig:
        env = os.environ if environ is None else environ
        missing = [n for n in (contract.ENV_KERNEL_ID, contract.ENV_POD_IP, contract.ENV_KEY,
                               contract.ENV_ARGV) if not env.get(n)]
        if missing:
            raise ConfigError(f"missing environment: {', '.join(missing)}")
        try:
            argv = json.loads(env[contract.ENV_ARGV])
        except ValueError as exc:
            raise ConfigError(f"{contract.ENV_ARGV} is not JSON: {exc}") from None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(f"{contract.ENV_ARGV} must be a non-empty JSON list of strings")
        ports = dict(crd.DEFAULT_PORTS)
        if env.get(contract.ENV_PORTS):
            try:
                given = json.loads(env[contract.ENV_PORTS])
                ports.update({ch: int(given[ch]) for ch in crd.CHANNELS if ch in given})
            except (ValueError, TypeError, KeyError) as exc:
                raise ConfigError(f"{contract.ENV_PORTS} is malformed: {exc}") from None
        try:
            health = int(env.get(contract.ENV_HEALTH_PORT) or contract.HEALTH_PORT)
            max_restarts = int(env.get(contract.ENV_MAX_RESTARTS) or 5)
            ready_timeout = float(env.get(contract.ENV_READY_TIMEOUT) or 60)
            if ready_timeout <= 0:
                raise ValueError(f"{contract.ENV_READY_TIMEOUT} must be positive")
            journal_messages = int(env.get(contract.ENV_JOURNAL_MAX_MESSAGES)
                                   or contract.JOURNAL_MAX_MESSAGES)
            journal_bytes = int(env.get(contract.ENV_JOURNAL_MAX_BYTES)
                                or contract.JOURNAL_MAX_BYTES)
            if journal_messages < 1 or journal_bytes < 1:
                raise ValueError("the journal's bounds must be positive")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        public = env.get(contract.ENV_CURVE_PUBLIC_KEY, "")
        secret = env.get(contract.ENV_CURVE_SECRET_KEY, "")
        if bool(public) != bool(secret):
            raise ConfigError(f"{contract.ENV_CURVE_PUBLIC_KEY} and "
                              f"{contract.ENV_CURVE_SECRET_KEY} must be set together")
        if public and (len(public) != 40 or len(secret) != 40):
            raise ConfigError("the Curve keys must be 40-character Z85 strings")
        return cls(
            kernel_id=env[contract.ENV_KERNEL_ID],
            ip=env[contract.ENV_POD_IP],
            key=env[contract.ENV_KEY],
            argv=argv,
            ports=ports,
            health_port=health,
            max_crash_restarts=max_restarts,
            spec_name=env.get(contract.ENV_SPEC_NAME, ""),
            ready_timeout=ready_timeout,
            journal_max_messages=journal_messages,
            journal_max_bytes=journal_bytes,
            curve=(public.encode(), secret.encode()) if public else None,
        )

    def connection_info(self, ip: str, ports: Mapping[str, int]) -> dict[str, Any]:
        """The kernel's connection file: where it binds (the launcher relays from the Pod's
        address to it)."""
        return {
            "ip": ip,
            "transport": crd.TRANSPORT,
            "signature_scheme": crd.SIGNATURE_SCHEME,
            "key": self.key,
            "kernel_name": self.spec_name,
            **{f"{ch}_port": ports[ch] for ch in crd.CHANNELS},
        }

    def write_connection_file(self, directory: Path, ip: str, ports: Mapping[str, int]) -> Path:
        """Write the connection file readable by this user only (it holds the key)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / f"kernel-{self.kernel_id}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.connection_info(ip, ports), out)
        return path


def kernel_command(argv: list[str], connection_file: Path) -> list[str]:
    """The kernel spec's argv made runnable here, the way jupyter_client does it.

    A bare ``python``/``python3`` means "the Python this launcher runs on", so a kernel spec
    written for an image also works in a virtualenv (tests run the launcher on the host).
    """
    pythons = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    cmd = [a.replace("{connection_file}", str(connection_file)) for a in argv]
    if cmd[0] in pythons:
        cmd[0] = sys.executable
    return cmd


def kernel_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The kernel's environment: the Pod's, minus the launcher's own settings and the key."""
    return {k: v for k, v in environ.items() if not k.startswith(contract.RESERVED_PREFIX)}
