"""Pure-function parts of the gateway: configuration from the environment, token parsing,
the kernel model's time format, start-body validation."""

from __future__ import annotations

import datetime as dt

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from kernelkeeper.crds import model as crd
from kernelkeeper.gateway.auth import authorized
from kernelkeeper.gateway.config import GatewayConfig
from kernelkeeper.gateway.errors import GatewayError
from kernelkeeper.gateway.model import LocalActivity, kernel_model
from kernelkeeper.gateway.validation import validate_start


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("KG_PORT", "9999")
    monkeypatch.setenv("KERNELKEEPER_GATEWAY_ALLOWED_ENVS", "FOO, BAR")
    monkeypatch.setenv("KG_LIST_KERNELS", "false")
    monkeypatch.setenv("KERNEL_LAUNCH_TIMEOUT", "55")
    monkeypatch.setenv("KERNELKEEPER_GATEWAY_KERNELSPEC_PATH", "/a:/b")
    cfg = GatewayConfig()
    assert cfg.port == 9999 and cfg.allowed_envs == ["FOO", "BAR"]
    assert cfg.list_kernels is False and cfg.launch_timeout == 55.0
    assert cfg.kernel_spec_path == ["/a", "/b"]
    # The kernelkeeper name wins over the KG one; an explicit value wins over both.
    monkeypatch.setenv("KERNELKEEPER_GATEWAY_PORT", "7777")
    assert GatewayConfig().port == 7777
    assert GatewayConfig(port=1234).port == 1234
    names = {row[0]: row[1] for row in GatewayConfig.env_table()}
    assert all(env.startswith("KERNELKEEPER_GATEWAY_") for env in names.values())


def _request(uri: str, auth: str | None = None) -> HTTPServerRequest:
    headers = HTTPHeaders({"Host": "gw.example"})
    if auth is not None:
        headers["Authorization"] = auth
    return HTTPServerRequest(start_line=RequestStartLine("GET", uri, "HTTP/1.1"), headers=headers)


def test_token_forms():
    assert authorized(_request("/api", "token "), "")  # jupyter_server's empty default
    assert authorized(_request("/api"), "")
    assert authorized(_request("/api", "token s3cret"), "s3cret")
    assert authorized(_request("/api", "Bearer s3cret"), "s3cret")
    assert authorized(_request("/api", "TOKEN s3cret"), "s3cret")
    assert authorized(_request("/api?token=s3cret"), "s3cret")
    assert not authorized(_request("/api", "token "), "s3cret")
    assert not authorized(_request("/api", "token wrong"), "s3cret")
    assert not authorized(_request("/api?token=wrong"), "s3cret")


def test_model_time_always_has_six_digits_and_z():
    obj = {"metadata": {"name": crd.new_kernel_id(), "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"kernelSpec": "python3"},
           "status": {"conditions": crd.set_condition([], status=True, reason="KernelRunning",
                                                      message="", generation=1),
                      "connection": crd.connection_status("127.0.0.2", crd.DEFAULT_PORTS)}}
    model = kernel_model(obj, local=None, replica_id="r", stale_after=60)
    assert model["last_activity"] == "2026-01-01T00:00:00.000000Z"
    assert model["execution_state"] == "idle" and model["connections"] == 0
    local = LocalActivity("busy", dt.datetime(2026, 1, 2, tzinfo=dt.UTC), 2)
    now = crd.now_iso_micro()
    obj["status"]["activity"] = {"replicas": {"other": {"connections": 3, "heartbeat": now},
                                              "stale": {"connections": 5,
                                                        "heartbeat": "2020-01-01T00:00:00Z"}}}
    model = kernel_model(obj, local=local, replica_id="r", stale_after=60)
    assert model["last_activity"] == "2026-01-02T00:00:00.000000Z"
    assert model["execution_state"] == "busy" and model["connections"] == 5


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
