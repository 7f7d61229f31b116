"""The servers under test: start/stop each as a subprocess on a free loopback port.

A target is anything with a Jupyter REST + websocket API at a base URL and a token: a peer server
(jupyter_server, Enterprise Gateway, Kernel Gateway) that the harness starts from its virtualenv,
or kernelkeeper's gateway from a local environment (`kernelkeeper local up --detach`).

Every peer is configured so that nothing is dropped (jupyter_server's iopub rate limits off) and
runs the same kernelspec (bench/kernels.py) in a private JUPYTER_PATH, config and data dirs, so no
user configuration on the machine leaks in.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.kernels import KERNEL_NAME, write_kernelspec, write_no_curve_spec
from bench.peers import PEERS, Peer
from bench.protocol import BenchError
from bench.wsclient import KernelWebSocket

# jupyter_server 2.x (also under Kernel Gateway 3): iopub rate limiting off, nothing dropped.
NO_RATE_LIMIT = [
    "--ZMQChannelsWebsocketConnection.limit_rate=False",
    "--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=0",
    "--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit=0",
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TargetUnavailable(RuntimeError):
    """The target could not be started at all; every scenario reports this reason."""


def http(method: str, url: str, token: str | None, body: Any = None,
         timeout: float = 60.0) -> tuple[int, Any]:
    """One JSON request; returns (status, parsed body or text). Network errors raise BenchError."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"token {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        raise BenchError(f"{method} {url}: {exc!r}") from exc
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass
class Target:
    """A running server speaking the Jupyter kernels API."""

    key: str
    title: str
    base_url: str
    token: str
    kernel_name: str = KERNEL_NAME
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    process: ServerProcess | None = None

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def start_kernel(self, timeout: float = 120.0, env: dict[str, str] | None = None) -> str:
        # EG refuses kernels for its own OS user ("root") unless KERNEL_USERNAME says who.
        body: dict[str, Any] = {"name": self.kernel_name,
                                "env": {"KERNEL_USERNAME": "bench", **(env or {})}}
        status, model = http("POST", self.url("/api/kernels"), self.token, body, timeout)
        if status not in (200, 201) or not isinstance(model, dict) or "id" not in model:
            raise BenchError(f"POST /api/kernels -> {status}: {str(model)[:300]}")
        return str(model["id"])

    def get_kernel(self, kernel_id: str, timeout: float = 60.0) -> tuple[int, Any]:
        return http("GET", self.url(f"/api/kernels/{kernel_id}"), self.token, None, timeout)

    def shutdown_kernel(self, kernel_id: str, timeout: float = 60.0) -> None:
        with contextlib.suppress(BenchError):
            http("DELETE", self.url(f"/api/kernels/{kernel_id}"), self.token, None, timeout)

    def websocket(self, kernel_id: str, timeout: float = 30.0,
                  protocol: str | None = None) -> KernelWebSocket:
        """A websocket to the kernel, already connected."""
        ws = self.client(kernel_id, protocol)
        ws.connect(timeout)
        return ws

    def client(self, kernel_id: str, protocol: str | None = None) -> KernelWebSocket:
        """A websocket to the kernel, not yet connected."""
        return KernelWebSocket(self.base_url, kernel_id, self.token, protocol=protocol)

    def rss_bytes(self) -> int | None:
        """Resident memory of the server process itself (kernels excluded)."""
        if self.process is None:
            return None
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(self.process.pid).memory_info().rss)
        return None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class ServerProcess:
    """A server subprocess in its own session, plus every kernel it spawned.

    Kernels are launched in sessions of their own, so they are tracked as descendants while
    the server lives and stopped explicitly after it, even when the server was SIGKILLed.
    """

    def __init__(self, name: str, cmd: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self._known: dict[int, psutil.Process] = {}

    def track(self) -> None:
        """Remember the current descendants (kernels), to clean them up later."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._known.setdefault(child.pid, child)

    def kernel_pids(self) -> list[int]:
        self.track()
        return [p.pid for p in self._known.values() if _alive(p)]

    def wait_ready(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TargetUnavailable(
                    f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(BenchError):
                status, _ = http("GET", base_url.rstrip("/") + "/api", token, None, 5)
                if status == 200:
                    return
                last = f"GET /api -> {status}"
            time.sleep(0.2)
        raise TargetUnavailable(f"{self.name} not ready after {timeout:.0f}s ({last}): "
                                f"{self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.track()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        self.track()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for child in self._known.values():
            if _alive(child):
                with contextlib.suppress(psutil.Error):
                    child.kill()
        self._log.close()


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _isolated_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "PYTHONPATH", "EG_", "KG_", "VIRTUAL_ENV"))}
    for sub in ("config", "data", "runtime"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    env.update({
        "JUPYTER_PATH": str(workdir / "jupyter_path"),
        "JUPYTER_CONFIG_DIR": str(workdir / "config"),
        "JUPYTER_DATA_DIR": str(workdir / "data"),
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


_KILL_SHIM = """#!/bin/sh
# Written by bench/targets.py for Enterprise Gateway. EG signals kernels it did not launch itself
# (hydrated ones) by running `kill -SIG -PGID`. procps-ng 4.0.x's kill misparses a negative pid
# that is not preceded by "--", and then signals EVERY process (the whole machine, as root).
# Insert "--" and refuse broadcast targets outright.
echo "$(date +%s) kill $*" >> "$(dirname "$0")/kill.log"
if [ "$#" -ne 2 ]; then exec {real} "$@"; fi
case "$2" in -1|0|-0|1|--*) echo "bench kill shim: refusing target $2" >&2; exit 1;; esac
exec {real} "$1" -- "$2"
"""


class UnsafeHost(TargetUnavailable):
    """Running the peer here could signal processes that are not ours."""


def kill_shim(workdir: Path) -> Path:
    """A directory holding a safe `kill` to put first on EG's PATH; verified before use."""
    real = shutil.which("kill")
    if real is None:
        raise UnsafeHost("no `kill` executable on PATH; EG needs one to signal kernels")
    shim_dir = workdir / "bin"
    shim_dir.mkdir(parents=True, exist_ok=True)
    shim = shim_dir / "kill"
    shim.write_text(_KILL_SHIM.format(real=shlex.quote(real)))
    shim.chmod(0o755)
    # Signal 0 to a process group that cannot exist must fail. If it "succeeds", the shim did
    # not stop the misparse and a real signal would reach every process: refuse to run EG.
    probe = subprocess.run([str(shim), "-0", f"-{_unused_pgid()}"], capture_output=True,
                           check=False)
    if probe.returncode == 0:
        raise UnsafeHost(f"`kill -0 -PGID` through the shim reached processes: {real} "
                         "misparses negative pids; not running Enterprise Gateway")
    return shim_dir


def host_kill_misparses() -> bool:
    """True if the host's `kill -0 -PGID` (EG's form) succeeds for a group that does not exist,
    i.e. it would signal every process. Signal 0 only tests, so this probe is harmless."""
    real = shutil.which("kill")
    if real is None:
        return False
    res = subprocess.run([real, "-0", f"-{_unused_pgid()}"], capture_output=True, check=False)
    return res.returncode == 0


def _unused_pgid() -> int:
    pgid = 4_000_000
    while psutil.pid_exists(pgid):
        pgid -= 1
    return pgid


def _prepare(workdir: Path, kernel_python: str | None, detach_kernel: bool,
             all_interfaces: bool = False) -> dict[str, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    write_kernelspec(workdir / "jupyter_path", kernel_python, detach_from_parent=detach_kernel,
                     all_interfaces=all_interfaces)
    return _isolated_env(workdir)


def _launch(peer: Peer, name: str, cmd: list[str], workdir: Path, env: dict[str, str],
            base_url: str, token: str, notes: list[str], startup_timeout: float) -> Target:
    from bench.peers import is_ready, versions

    if not is_ready(peer):
        raise TargetUnavailable(f"{peer.title} virtualenv missing (python -m bench.peers failed?)")
    proc = ServerProcess(name, cmd, workdir, env)
    try:
        proc.wait_ready(base_url, token, startup_timeout)
    except BaseException:
        proc.stop()
        raise
    return Target(peer.key, peer.title, base_url, token, KERNEL_NAME,
                  versions(peer.python, peer.report), notes, proc)


def start_jupyter_server(workdir: Path, kernel_python: str | None = None,
                         startup_timeout: float = 60.0) -> Target:
    peer = PEERS["jupyter_server"]
    port, token = free_port(), secrets.token_hex(16)
    env = _prepare(workdir, kernel_python, False)
    cmd = [str(peer.python), "-m", "jupyter_server",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
           f"--ServerApp.root_dir={workdir}", *NO_RATE_LIMIT]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    notes = ["iopub rate limits off (ZMQChannelsWebsocketConnection.limit_rate=False, "
             "iopub_data_rate_limit=0, iopub_msg_rate_limit=0)"]
    base = f"http://127.0.0.1:{port}"
    return _launch(peer, "jupyter_server", cmd, workdir, env, base, token, notes, startup_timeout)


def start_kernel_gateway(workdir: Path, kernel_python: str | None = None,
                         startup_timeout: float = 60.0) -> Target:
    peer = PEERS["kg"]
    port, token = free_port(), secrets.token_hex(16)
    env = _prepare(workdir, kernel_python, False)
    cmd = [str(peer.python), "-m", "kernel_gateway",
           "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
           "--KernelGatewayApp.port_retries=0", f"--KernelGatewayApp.auth_token={token}",
           "--JupyterWebsocketPersonality.list_kernels=True", *NO_RATE_LIMIT]
    notes = ["iopub rate limits off (same ZMQChannelsWebsocketConnection settings)"]
    base = f"http://127.0.0.1:{port}"
    return _launch(peer, "kernel_gateway", cmd, workdir, env, base, token, notes,
                   startup_timeout)


def start_enterprise_gateway(workdir: Path, kernel_python: str | None = None, *,
                             persistence_root: Path | None = None, name: str = "eg",
                             detach_kernel: bool = False, token: str | None = None,
                             kernel_all_interfaces: bool = False,
                             startup_timeout: float = 60.0) -> Target:
    """EG 3.3.0; with `persistence_root`, `availability_mode=replication` and a
    FileKernelSessionManager in that (shared) directory."""
    peer = PEERS["eg"]
    port, token = free_port(), token or secrets.token_hex(16)
    env = _prepare(workdir, kernel_python, detach_kernel, kernel_all_interfaces)
    env["PATH"] = f"{kill_shim(workdir)}{os.pathsep}{env.get('PATH', os.defpath)}"
    cmd = [str(peer.python), "-m", "enterprise_gateway",
           "--EnterpriseGatewayApp.ip=127.0.0.1", f"--EnterpriseGatewayApp.port={port}",
           "--EnterpriseGatewayApp.port_retries=0", f"--EnterpriseGatewayApp.auth_token={token}",
           "--EnterpriseGatewayApp.list_kernels=True"]
    notes = ["EG's websocket handler (jupyter_server 1.24) applies no iopub rate limit: "
             "EG sets none in its settings",
             "a `kill` shim first on EG's PATH puts `--` before negative pids (see the safety "
             "note)"]
    if persistence_root is not None:
        persistence_root.mkdir(parents=True, exist_ok=True)
        cmd += ["--EnterpriseGatewayApp.availability_mode=replication",
                "--FileKernelSessionManager.enable_persistence=True",
                f"--FileKernelSessionManager.persistence_root={persistence_root}"]
        notes.append("availability_mode=replication, FileKernelSessionManager in a shared dir")
    if kernel_all_interfaces:
        notes.append("kernels listen on all interfaces (connection file ip rewritten to 0.0.0.0)")
    base = f"http://127.0.0.1:{port}"
    target = _launch(peer, name, cmd, workdir, env, base, token, notes, startup_timeout)
    target.title = peer.title if name == "eg" else f"{peer.title} ({name})"
    return target


# jupyter_server as a JupyterLab user runs it in front of a gateway (`--gateway-url`): stock, with
# kernelkeeper.lab explicitly off (even where a config file enables it), or with its connection
# class (lab/README.md). The front runs from kernelkeeper's own virtualenv, whose jupyter_server
# can import kernelkeeper.lab, so both gateways get the very same front.
LAB_CONNECTION_CLASS = "kernelkeeper.lab.connection.KernelkeeperWebsocketConnection"
FRONT_OPTIONS: dict[bool, list[str]] = {
    False: ['--ServerApp.jpserver_extensions={"kernelkeeper.lab": False}'],
    True: [f"--ServerApp.kernel_websocket_connection_class={LAB_CONNECTION_CLASS}"],
}
FRONT_REQUEST_TIMEOUT_S = 120  # generous on a loaded machine; the gateway gets it as launch timeout


def front_command(port: int, token: str, gateway: Target, root: Path, with_lab: bool) -> list[str]:
    """The front jupyter_server's command line (gateway mode)."""
    cmd = [sys.executable, "-m", "jupyter_server",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
           f"--ServerApp.root_dir={root}", f"--gateway-url={gateway.base_url}",
           f"--GatewayClient.auth_token={gateway.token}", *NO_RATE_LIMIT,
           *FRONT_OPTIONS[with_lab]]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def start_jupyter_front(gateway: Target, workdir: Path, key: str, with_lab: bool,
                        startup_timeout: float = 60.0) -> Target:
    """jupyter_server in gateway mode in front of `gateway`; its kernels are the gateway's."""
    from bench.peers import versions

    port, token = free_port(), secrets.token_hex(16)
    env = _isolated_env(workdir)
    # jupyter_server's gateway client sends KERNEL_* variables of its own environment with
    # every start: EG refuses kernels for its OS user ("root") unless KERNEL_USERNAME says who.
    env.update(KERNEL_USERNAME="bench",
               JUPYTER_GATEWAY_REQUEST_TIMEOUT=str(FRONT_REQUEST_TIMEOUT_S))
    proc = ServerProcess(key, front_command(port, token, gateway, workdir, with_lab), workdir,
                         env)
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(base, token, startup_timeout)
    except BaseException:
        proc.stop()
        raise
    front = {f"front {k}": v for k, v in versions(sys.executable, (
        "jupyter_server", "tornado", *(("kernelkeeper",) if with_lab else ()))).items()}
    what = (f"with kernelkeeper.lab ({LAB_CONNECTION_CLASS.rsplit('.', 1)[-1]})" if with_lab
            else "stock (GatewayWebSocketConnection; kernelkeeper.lab off)")
    notes = [f"jupyter_server --gateway-url in front of {gateway.title}, {what}; the "
             "client's websocket goes to jupyter_server, which relays to the gateway"]
    return Target(key, f"{gateway.title} behind jupyter_server", base, token,
                  gateway.kernel_name, {**front, **gateway.versions}, notes, proc)


PEER_STARTERS: dict[str, Callable[[Path], Target]] = {
    "jupyter_server": start_jupyter_server,
    "eg": start_enterprise_gateway,
    "kg": start_kernel_gateway,
}


# --------------------------------------------------------------------------- kernelkeeper


class KernelKeeperEnvironment:
    """kernelkeeper's gateway from `kernelkeeper local up --detach --state-dir <tmp>`.

    Set KK_BENCH_GATEWAY_URL (and KK_BENCH_GATEWAY_TOKEN) to measure an already running gateway
    instead; the harness then starts and stops nothing.
    """

    def __init__(self, state_dir: Path, replicas: int = 1,
                 availability_mode: str = "active-active") -> None:
        self.state_dir = state_dir
        self.replicas = replicas
        self.availability_mode = availability_mode
        self.token = os.environ.get("KK_BENCH_GATEWAY_TOKEN") or secrets.token_hex(16)
        self.external = os.environ.get("KK_BENCH_GATEWAY_URL")
        self.started = False
        self.status: dict[str, Any] = {}

    def _cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        # The operator and the gateways (host processes) also know the Curve-off spec.
        specs = write_no_curve_spec(self.state_dir / "kernelspecs")
        env = {**os.environ, "KERNELKEEPER_GATEWAY_AUTH_TOKEN": self.token,
               "KERNELKEEPER_KERNELSPEC_PATH": str(specs)}
        return subprocess.run(
            [sys.executable, "-m", "kernelkeeper.cli", "local", "--state-dir", str(self.state_dir),
             *args], capture_output=True, text=True, timeout=timeout, env=env,
        )

    def up(self) -> Target:
        from bench.peers import versions

        if self.external:
            return Target("kernelkeeper", "kernelkeeper", self.external, self.token,
                          os.environ.get("KK_BENCH_KERNEL_NAME", "python3"),
                          versions(sys.executable, ("kernelkeeper", "tornado", "ipykernel",
                                                    "jupyter_client", "pyzmq")),
                          ["external gateway from KK_BENCH_GATEWAY_URL"])
        reason = self._not_ready_reason()
        if reason:
            raise TargetUnavailable(reason)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Host processes: the bench signals the gateway's own process (failover scenarios).
        args = ["up", "--detach", "--deploy", "processes"]
        if self.replicas != 1:
            args += ["--replicas", str(self.replicas)]
        args += ["--availability-mode", self.availability_mode]
        self.started = True
        res = self._cli(*args)
        if res.returncode != 0:
            raise TargetUnavailable(f"kernelkeeper local up failed ({res.returncode}): "
                                    f"{res.stderr.strip()[-600:]}")
        st = self._cli("status", "--json", timeout=60)
        try:
            self.status = json.loads(st.stdout)
        except ValueError as exc:
            raise TargetUnavailable(f"local status --json: {st.stdout[:200]!r}") from exc
        url = self.status.get("gateway_url")
        if not url:
            raise TargetUnavailable("`kernelkeeper local up` reported no gateway URL "
                                    f"(local status: {st.stdout[:200]!r})")
        token = self.status.get("gateway_token") or self.token
        return Target("kernelkeeper", "kernelkeeper", url, token,
                      os.environ.get("KK_BENCH_KERNEL_NAME", "python3"),
                      versions(sys.executable, ("kernelkeeper", "tornado", "ipykernel",
                                                "jupyter_client", "pyzmq")),
                      [f"local environment, {self.replicas} gateway replica(s), "
                       f"{self.availability_mode}"])

    def _not_ready_reason(self) -> str | None:
        """Cheap checks before paying for a control plane start."""
        try:
            from kernelkeeper.local import build
        except ImportError as exc:
            return f"kernelkeeper.local not importable ({exc})"
        missing = _missing_binaries(build)
        if missing:
            return (f"control-plane binaries not built ({', '.join(missing)}); "
                    "run `make build`")
        return None

    def down(self) -> None:
        if self.started and not self.external:
            self._cli("down", timeout=120)
            self.started = False


def _missing_binaries(build: Any) -> list[str]:
    """Control-plane binaries that `local up` would have to build first (a long Go build)."""
    from kernelkeeper.local import versions

    wanted = ["etcd", *versions.K8S_BINARIES]
    return [name for name in wanted if not build.binary(name).is_file()]
