"""The gateway's start-body validation: allowed env names, the client's launch timeout."""

from __future__ import annotations

import pytest

from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.gateway.errors import GatewayError
from kernelkeeper.gateway.validation import validate_start


def test_validation_keeps_allowed_env_and_honours_launch_timeout():
    cfg = GatewayConfig(allowed_envs=["JPY_SESSION_NAME"], launch_timeout=40.0)
    req = validate_start({"name": None, "env": {"KERNEL_USERNAME": "al", "JPY_SESSION_NAME": "n",
                                                "KERNEL_LAUNCH_TIMEOUT": "90"}},
                         {"python3": object()}, cfg)
    assert req.kernel_spec == "python3" and req.username == "al" and req.launch_timeout == 90
    assert req.env["KERNEL_GATEWAY"] == "1" and req.env["JPY_SESSION_NAME"] == "n"
    with pytest.raises(GatewayError) as exc:
        validate_start({"env": {"KERNEL_LAUNCH_TIMEOUT": "soon"}}, {"python3": object()}, cfg)
    assert exc.value.status_code == 400
