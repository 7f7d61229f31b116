"""The gateway's start-body validation: allowed env names, the client's launch timeout, whose
kernel it is, and who may start which spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.gateway.errors import GatewayError
from kernelkeeper.gateway.identity import SERVICE, Identity
from kernelkeeper.gateway.validation import validate_start
from kernelkeeper.kernel.specs import KernelSpec


def _spec(name: str = "python3", **proxy_config: Any) -> KernelSpec:
    meta = {"process_proxy": {"config": proxy_config}} if proxy_config else {}
    return KernelSpec(name, Path("."), {"display_name": name.title(), "metadata": meta})


SPECS = {"python3": _spec()}


def test_validation_keeps_allowed_env_and_honours_launch_timeout():
    cfg = GatewayConfig(allowed_envs=["JPY_SESSION_NAME"], launch_timeout=40.0)
    req = validate_start({"name": None, "env": {"KERNEL_USERNAME": "al", "JPY_SESSION_NAME": "n",
                                                "KERNEL_LAUNCH_TIMEOUT": "90"}},
                         SPECS, cfg, SERVICE)
    assert req.kernel_spec == "python3" and req.username == "al" and req.launch_timeout == 90
    assert req.env["KERNEL_GATEWAY"] == "1" and req.env["JPY_SESSION_NAME"] == "n"
    with pytest.raises(GatewayError) as exc:
        validate_start({"env": {"KERNEL_LAUNCH_TIMEOUT": "soon"}}, SPECS, cfg, SERVICE)
    assert exc.value.status_code == 400


def test_a_named_user_cannot_claim_another_name():
    cfg = GatewayConfig()
    req = validate_start({"env": {"KERNEL_USERNAME": "bob"}}, SPECS, cfg, Identity("alice"))
    assert req.username == "alice" and req.env["KERNEL_USERNAME"] == "alice"
    req = validate_start({}, SPECS, cfg, Identity("alice"))
    assert req.username == "alice" and req.env["KERNEL_USERNAME"] == "alice"
    # An admin with a name starts kernels as itself too; only the service token names users.
    req = validate_start({"env": {"KERNEL_USERNAME": "bob"}}, SPECS, cfg,
                         Identity("ops", admin=True))
    assert req.username == "ops"


def _refusal(body: dict[str, Any], specs: dict[str, KernelSpec], cfg: GatewayConfig,
             who: Identity) -> str:
    with pytest.raises(GatewayError) as exc:
        validate_start(body, specs, cfg, who)
    assert exc.value.status_code == 403 and exc.value.reason == "Forbidden"
    return exc.value.message


def test_root_is_denied_by_default_and_the_lists_are_configurable():
    cfg = GatewayConfig()
    message = _refusal({"env": {"KERNEL_USERNAME": "root"}}, SPECS, cfg, SERVICE)
    assert "User 'root' is not authorized to start kernel 'Python3'" in message
    assert "deny list" in message
    assert _refusal({}, SPECS, cfg, Identity("root")).startswith("User 'root'")
    assert validate_start({}, SPECS, GatewayConfig(unauthorized_users=[]), Identity("root"))
    only = GatewayConfig(authorized_users=["alice"])
    assert validate_start({}, SPECS, only, Identity("alice")).username == "alice"
    assert "not in the gateway's authorized users" in _refusal({}, SPECS, only, Identity("bob"))
    assert "an unnamed user" in _refusal({}, SPECS, only, SERVICE)


def test_a_spec_narrows_who_may_start_it():
    specs = {"python3": _spec(), "secret": _spec("secret", authorized_users=["alice", "carol"],
                                                 unauthorized_users=["carol"])}
    cfg = GatewayConfig()
    assert validate_start({"name": "secret"}, specs, cfg, Identity("alice")).username == "alice"
    assert "not in the spec's authorized users" in \
        _refusal({"name": "secret"}, specs, cfg, Identity("bob"))
    assert "deny list" in _refusal({"name": "secret"}, specs, cfg, Identity("carol"))
    # Other specs are unaffected.
    assert validate_start({}, specs, cfg, Identity("bob")).kernel_spec == "python3"


@pytest.mark.parametrize("config", [None, "x", {"authorized_users": 3},
                                    {"authorized_users": "alice"}])
def test_odd_spec_metadata_is_read_safely(config: Any):
    spec = KernelSpec("odd", Path("."), {"metadata": {"process_proxy": {"config": config}}})
    req_or_refusal: Any
    try:
        req_or_refusal = validate_start({"name": "odd"}, {"odd": spec}, GatewayConfig(),
                                        Identity("bob"))
    except GatewayError as exc:
        req_or_refusal = exc
    if config == {"authorized_users": "alice"}:  # a single name is a list of one
        assert isinstance(req_or_refusal, GatewayError) and req_or_refusal.status_code == 403
    else:
        assert req_or_refusal.username == "bob"
