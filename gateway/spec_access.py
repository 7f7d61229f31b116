"""Who may start which kernel spec, as Enterprise Gateway's kernel specs say it.

A kernel spec's `metadata.process_proxy.config` may hold `authorized_users` (only these may
start it) and `unauthorized_users` (these never may); the gateway adds its own lists, whose
deny list holds `root` by default. A refusal is a 403 that names the user and the spec.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kernelkeeper.gateway.errors import GatewayError


def _names(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        return {v for v in value if isinstance(v, str)}
    return set()


def spec_lists(kernel_json: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(authorized, unauthorized) from a kernel.json; a malformed entry counts as absent."""
    meta = kernel_json.get("metadata")
    proxy = meta.get("process_proxy") if isinstance(meta, dict) else None
    config = proxy.get("config") if isinstance(proxy, dict) else None
    if not isinstance(config, dict):
        return set(), set()
    return _names(config.get("authorized_users")), _names(config.get("unauthorized_users"))


def check_may_start(username: str, spec_name: str, kernel_json: dict[str, Any],
                    authorized: Iterable[str], unauthorized: Iterable[str]) -> None:
    """Raise 403 unless `username` may start this spec."""
    spec_allowed, spec_denied = spec_lists(kernel_json)
    display = kernel_json.get("display_name") or spec_name
    who = repr(username) if username else "an unnamed user"
    if username in set(unauthorized) | spec_denied:
        raise GatewayError(403, "Forbidden",
                           f"User {who} is not authorized to start kernel {display!r} "
                           f"(spec {spec_name}): the user is on its deny list")
    for allowed, whose in ((set(authorized), "the gateway's"), (spec_allowed, "the spec's")):
        if allowed and username not in allowed:
            raise GatewayError(403, "Forbidden",
                               f"User {who} is not authorized to start kernel {display!r} "
                               f"(spec {spec_name}): not in {whose} authorized users")
