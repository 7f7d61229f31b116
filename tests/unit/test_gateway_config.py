"""The gateway's configuration from the environment: kernelkeeper and KG names, explicit values."""

from __future__ import annotations

from kernelkeeper.gateway.config import GatewayConfig


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
