"""Checks on a POST /api/kernels body before anything reaches the API server."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.gateway.errors import bad_request
from kernelkeeper.gateway.identity import Identity
from kernelkeeper.gateway.spec_access import check_may_start
from kernelkeeper.kernel.specs import KernelSpec

_NAME_RE = re.compile(crd.ENV_NAME_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Never forwarded, whatever the allow-list says: the gateway's own secrets.
FORBIDDEN_ENV = {"KERNELKEEPER_GATEWAY_AUTH_TOKEN", "KG_AUTH_TOKEN", "JUPYTER_GATEWAY_AUTH_TOKEN"}


@dataclass
class StartRequest:
    kernel_spec: str
    env: dict[str, str] = field(default_factory=dict)
    username: str = ""
    launch_timeout: float = 40.0


def parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise bad_request(f"Malformed JSON body: {exc}") from None


def validate_start(body: Any, specs: dict[str, KernelSpec], cfg: GatewayConfig,
                   who: Identity) -> StartRequest:
    """The start request a body asks for, on behalf of `who`: a named user's kernel is theirs
    whatever KERNEL_USERNAME says; only the service token may name the user."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    name = body.get("name")
    if name is None or name == "":
        name = cfg.default_kernel_name
    if not isinstance(name, str) or name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise bad_request(f"Unknown kernel spec {name!r} (known: {known})")
    env = body.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise bad_request("env must be a JSON object of name: value strings")
    if len(env) > crd.MAX_ENV_ENTRIES:
        raise bad_request(f"env has {len(env)} entries; at most {crd.MAX_ENV_ENTRIES} are allowed")
    allowed = set(cfg.allowed_envs)
    clean: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not _NAME_RE.match(key):
            raise bad_request(f"env name {key!r} is not a valid variable name")
        if key in FORBIDDEN_ENV or not (key.startswith("KERNEL_") or key in allowed):
            raise bad_request(f"env name {key!r} is not allowed (allowed: KERNEL_* and "
                              f"{', '.join(sorted(allowed)) or 'no others'})")
        if not isinstance(value, str):
            raise bad_request(f"env value of {key} must be a string")
        if len(value) > crd.MAX_ENV_VALUE_LENGTH:
            raise bad_request(f"env value of {key} is longer than {crd.MAX_ENV_VALUE_LENGTH}")
        if _CONTROL.search(value):
            raise bad_request(f"env value of {key} contains control characters")
        clean[key] = value
    timeout = cfg.launch_timeout
    if "KERNEL_LAUNCH_TIMEOUT" in clean:
        try:
            timeout = float(clean["KERNEL_LAUNCH_TIMEOUT"])
        except ValueError:
            raise bad_request("KERNEL_LAUNCH_TIMEOUT must be a number of seconds") from None
        if not 0 < timeout:
            raise bad_request("KERNEL_LAUNCH_TIMEOUT must be positive")
    if who.user:
        clean["KERNEL_USERNAME"] = who.user
    check_may_start(clean.get("KERNEL_USERNAME", ""), name, specs[name].spec,
                    cfg.authorized_users, cfg.unauthorized_users)
    clean["KERNEL_GATEWAY"] = "1"
    return StartRequest(kernel_spec=name, env=clean, username=clean.get("KERNEL_USERNAME", ""),
                        launch_timeout=min(timeout, cfg.max_launch_timeout))
