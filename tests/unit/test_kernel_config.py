"""The launcher's environment contract and kernel command (pure parts)."""

from __future__ import annotations

import json
import stat
import sys

import pytest
import zmq

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract, health
from kernelkeeper.kernel.config import ConfigError, LauncherConfig, kernel_command, kernel_env

ENV = {contract.ENV_KERNEL_ID: "k1", contract.ENV_POD_IP: "127.1.2.3", contract.ENV_KEY: "s3cret",
       contract.ENV_ARGV: json.dumps(["python3", "-m", "ipykernel_launcher", "-f",
                                      "{connection_file}"])}


def test_from_env_defaults_and_connection_file(tmp_path):
    cfg = LauncherConfig.from_env(ENV)
    assert cfg.ports == crd.DEFAULT_PORTS and cfg.health_port == contract.HEALTH_PORT
    assert cfg.journal_port == contract.JOURNAL_PORT
    assert cfg.journal_max_messages == contract.JOURNAL_MAX_MESSAGES
    # The kernel binds where the launcher's relays reach it, not the Pod's address.
    inner = {ch: 40000 + n for n, ch in enumerate(crd.CHANNELS)}
    path = cfg.write_connection_file(tmp_path / "rt", "127.0.0.1", inner)
    info = json.loads(path.read_text())
    assert info["ip"] == "127.0.0.1" and info["key"] == "s3cret"
    assert info["shell_port"] == inner["shell"]
    assert info["signature_scheme"] == crd.SIGNATURE_SCHEME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_ports_override_and_errors():
    cfg = LauncherConfig.from_env({**ENV, contract.ENV_PORTS: json.dumps({"shell": 6000})})
    assert cfg.ports["shell"] == 6000 and cfg.ports["hb"] == crd.DEFAULT_PORTS["hb"]
    with pytest.raises(ConfigError, match="KERNELKEEPER_KEY"):
        LauncherConfig.from_env({k: v for k, v in ENV.items() if k != contract.ENV_KEY})
    with pytest.raises(ConfigError, match="JSON"):
        LauncherConfig.from_env({**ENV, contract.ENV_ARGV: "python -m x"})
    with pytest.raises(ConfigError, match="non-empty"):
        LauncherConfig.from_env({**ENV, contract.ENV_ARGV: "[]"})
    with pytest.raises(ConfigError, match="journal"):
        LauncherConfig.from_env({**ENV, contract.ENV_JOURNAL_MAX_BYTES: "0"})
    assert LauncherConfig.from_env(
        {**ENV, contract.ENV_JOURNAL_MAX_MESSAGES: "50"}).journal_max_messages == 50


def test_kernel_command_uses_own_python(tmp_path):
    cmd = kernel_command(["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                         tmp_path / "c.json")
    assert cmd == [sys.executable, "-m", "ipykernel_launcher", "-f", str(tmp_path / "c.json")]
    assert kernel_command(["/opt/r/bin/R", "{connection_file}"], tmp_path / "c.json")[0] == \
        "/opt/r/bin/R"


def test_kernel_env_drops_launcher_settings():
    env = kernel_env({**ENV, "KERNEL_X": "1", "HOME": "/h"})
    assert env == {"KERNEL_ID": "k1", "KERNEL_X": "1", "HOME": "/h"}


def test_health_responses():
    st = {"ready": False, "state": "restarting", "restarts": 2}
    code, body = health.respond(contract.HEALTH_PATH, "GET", lambda: st)
    assert code == 503 and json.loads(body)["state"] == "restarting"
    code, _ = health.respond(contract.HEALTH_PATH, "GET", lambda: {**st, "ready": True})
    assert code == 200
    code, body = health.respond(contract.STATUS_PATH + "?x=1", "GET", lambda: st)
    assert code == 200 and json.loads(body)["restarts"] == 2
    assert health.respond("/other", "GET", lambda: st)[0] == 404
    assert health.respond(contract.HEALTH_PATH, "POST", lambda: st)[0] == 405


def test_curve_keys_come_together_and_stay_out_of_the_kernel():
    public, secret = (k.decode() for k in zmq.curve_keypair())
    cfg = LauncherConfig.from_env({**ENV, contract.ENV_CURVE_PUBLIC_KEY: public,
                                   contract.ENV_CURVE_SECRET_KEY: secret})
    assert cfg.curve == (public.encode(), secret.encode())
    assert LauncherConfig.from_env(ENV).curve is None
    with pytest.raises(ConfigError, match="set together"):
        LauncherConfig.from_env({**ENV, contract.ENV_CURVE_PUBLIC_KEY: public})
    with pytest.raises(ConfigError, match="40-character"):
        LauncherConfig.from_env({**ENV, contract.ENV_CURVE_PUBLIC_KEY: "x",
                                 contract.ENV_CURVE_SECRET_KEY: "y"})
    # The kernel process never sees the secret key.
    assert contract.ENV_CURVE_SECRET_KEY not in kernel_env(
        {contract.ENV_CURVE_SECRET_KEY: secret, "HOME": "/h"})
