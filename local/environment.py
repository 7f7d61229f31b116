"""The local environment: a real control plane plus kernelkeeper's own processes, in a state dir.

`up` starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler on free ports,
waits for /readyz, writes a kubeconfig and installs the CRDs; then the real node
(local/realnode/), and later stages the operator and the gateways (the chart, or host
processes). Everything started is recorded in ``state.json`` so that `status` can report it and
`down` can stop exactly those processes (and, for the node, undo what it did to the host).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelkeeper.crds import CRD_FILE
from kernelkeeper.crds import model as crd
from kernelkeeper.local import build, controlplane, pki
from kernelkeeper.local.processes import ProcessRecord, free_port, spawn, stop

STATE_FILE = "state.json"


class EnvironmentError_(RuntimeError):
    """A user-facing problem with the local environment (already up, not up, ...)."""


def default_state_dir() -> Path:
    env = os.environ.get("KERNELKEEPER_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kernelkeeper" / "local"


def _say(msg: str) -> None:
    print(f"[kernelkeeper local] {msg}", file=sys.stderr, flush=True)


@dataclass
class LocalEnvironment:
    state_dir: Path = field(default_factory=default_state_dir)
    records: list[ProcessRecord] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    # The real node (containerd, kubelet, kube-proxy, CoreDNS); without it only the control
    # plane runs, on loopback. Its network goes up before the control plane, which then
    # listens on the node's address so that pods reach it too.
    real_node: bool = False

    # ------------------------------------------------------------------ state

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def server(self) -> str:
        return str(self.info["server"])

    def load(self) -> bool:
        if not self.state_path.is_file():
            return False
        data = json.loads(self.state_path.read_text())
        self.records = [ProcessRecord.from_json(r) for r in data.get("processes", [])]
        self.info = data.get("info", {})
        return True

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"info": self.info, "processes": [r.to_json() for r in self.records]}, indent=2
            )
        )
        tmp.replace(self.state_path)

    def running(self) -> list[ProcessRecord]:
        return [r for r in self.records if r.alive()]

    def record(self, name: str) -> ProcessRecord | None:
        for r in self.records:
            if r.name == name:
                return r
        return None

    def status(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig) if self.records else None,
            "server": self.info.get("server"),
            "gateway_url": self.info.get("gateway_url"),
            "gateway_token": self.info.get("gateway_token"),
            "components": {
                r.name: {
                    "pid": r.pid,
                    "running": r.alive(),
                    "ports": r.ports,
                    "log": r.log,
                    **r.extra,
                }
                for r in self.records
            },
        }

    # ------------------------------------------------------------------ up

    def start(self, name: str, cmd: list[str], *, ports: dict[str, int] | None = None,
              env: dict[str, str] | None = None, **extra: Any) -> ProcessRecord:
        record, _ = spawn(name, cmd, self.logs / f"{name}.log", ports=ports, env=env,
                          cwd=self.state_dir)
        record.extra.update(extra)
        self.records.append(record)
        self.save()
        return record

    def up(self, *, stages: list[Callable[[LocalEnvironment], None]] | None = None,
           ready_timeout: float = 90.0) -> None:
        if self.load() and self.running():
            names = ", ".join(r.name for r in self.running())
            raise EnvironmentError_(
                f"the local environment in {self.state_dir} is already up ({names}); "
                "run `kernelkeeper local down` first"
            )
        started = time.monotonic()
        self.records, self.info = [], {}
        bins = build.ensure_binaries(node=self.real_node)
        # Stale data from a previous run would resurrect old objects: start from scratch.
        for sub in ("etcd", "pki", "logs", "node"):
            _rmtree(self.state_dir / sub)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.real_node:
                from kernelkeeper.local.realnode import cleanup, layout, network

                self.info["real_node"] = True
                self.save()
                node_bins = [bins[n] for n in ("containerd", "kubelet", "kube-proxy")]
                for note in cleanup.stale_node(self.state_dir, node_bins):
                    _say(f"earlier node not stopped: {note}")
                network.setup(layout.NodeLayout(self.state_dir))
                _say(f"node network {layout.BRIDGE} {layout.NODE_IP} up; pod range "
                     f"{layout.POD_CIDR} and Service range {layout.SERVICE_CIDR} stay local")
            self._start_control_plane(bins, ready_timeout)
            if self.real_node:
                from kernelkeeper.local.realnode import runtime

                runtime.start(self, bins)
            for stage in stages or []:
                stage(self)
        except BaseException:
            _say("start failed; stopping what was started")
            with contextlib.suppress(EnvironmentError_):
                self.down(quiet=True)
            raise
        _say(f"local environment up in {time.monotonic() - started:.1f}s")

    def _start_control_plane(self, bins: dict[str, Path], ready_timeout: float) -> None:
        keys = pki.generate(self.state_dir / "pki")
        host = "127.0.0.1"
        kubelet_client = None
        if self.real_node:
            from kernelkeeper.local.realnode import layout

            host = layout.NODE_IP
            kubelet_client = pki.client_cert(keys, self.state_dir / "pki", "apiserver-kubelet-client",
                                             "kube-apiserver-kubelet-client", "system:masters")
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port(host)
        t0 = time.monotonic()
        self.start("etcd", controlplane.etcd_cmd(bins["etcd"], self.state_dir / "etcd", etcd_port,
                                                 peer_port),
                   ports={"client": etcd_port, "peer": peer_port})
        self.info["server"] = f"https://{host}:{api_port}"
        self.info["kubectl"] = str(bins["kubectl"])
        self.info["pki"] = str(self.state_dir / "pki")
        api = self.start("kube-apiserver",
                         controlplane.apiserver_cmd(bins["kube-apiserver"], keys, etcd_port, api_port,
                                                    host=host, kubelet_client=kubelet_client),
                         ports={"secure": api_port})
        controlplane.write_kubeconfig(self.kubeconfig, self.server, keys.ca_cert, keys.admin_cert,
                                      keys.admin_key, "admin")
        controlplane.wait_ready(self.server, keys, ready_timeout, api.alive, api.log)
        _say(f"kube-apiserver ready at {self.server} in {time.monotonic() - t0:.1f}s")
        for name, user in (("kube-controller-manager", "system:kube-controller-manager"),
                           ("kube-scheduler", "system:kube-scheduler")):
            cert, key = pki.client_cert(keys, self.state_dir / "pki", name, user, None)
            kc = self.state_dir / f"{name}.kubeconfig"
            controlplane.write_kubeconfig(kc, self.server, keys.ca_cert, cert, key, user)
            binary = bins[name]
            cmd = (controlplane.controller_manager_cmd(binary, keys, kc)
                   if name == "kube-controller-manager" else controlplane.scheduler_cmd(binary, kc))
            self.start(name, cmd)
        self.install_crds()
        # The ServiceAccount admission plugin rejects pods until the `default` SA exists,
        # which is the controller-manager's first sign of life.
        controlplane.wait_for(self.server, keys, "/api/v1/namespaces/default/serviceaccounts/default",
                              ready_timeout)
        _say(f"control plane ready in {time.monotonic() - t0:.1f}s")

    def install_crds(self) -> None:
        import subprocess

        out = subprocess.run(
            [self.info["kubectl"], "--kubeconfig", str(self.kubeconfig), "apply",
             "--server-side", "--force-conflicts", "-f", str(CRD_FILE)],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"installing CRDs failed: {out.stderr.strip()}")
        keys = self.pki()
        controlplane.wait_for(
            self.server, keys,
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd.CRD_NAME}", 30.0,
            check=lambda o: any(c.get("type") == "Established" and c.get("status") == "True"
                                for c in (o.get("status") or {}).get("conditions") or []),
        )
        # Established can precede discovery by a moment; clients need the resource listed.
        controlplane.wait_for(self.server, keys, f"/apis/{crd.GROUP}/{crd.VERSION}", 30.0,
                              check=lambda o: any(r.get("name") == crd.PLURAL
                                                  for r in o.get("resources", [])))

    def pki(self) -> pki.Pki:
        d = Path(self.info["pki"])
        return pki.Pki(
            ca_cert=d / "ca.crt", serving_cert=d / "apiserver.crt", serving_key=d / "apiserver.key",
            client_ca_cert=d / "client-ca.crt", client_ca_key=d / "client-ca.key",
            admin_cert=d / "admin.crt", admin_key=d / "admin.key", sa_key=d / "sa.key",
            sa_pub=d / "sa.pub",
        )

    # ------------------------------------------------------------------ down

    def down(self, *, quiet: bool = False) -> list[str]:
        """Stop every recorded process, newest first (gateways before the apiserver)."""
        if not self.records and not self.load():
            raise EnvironmentError_(f"nothing to stop: no local environment in {self.state_dir}")
        if not self.running() and not self.info.get("real_node"):
            self.state_path.unlink(missing_ok=True)
            self.records = []
            raise EnvironmentError_(f"nothing to stop: the local environment in {self.state_dir} "
                                    "is not running")
        lines = [stop(r) for r in reversed(self.records)]
        if self.info.get("real_node"):
            from kernelkeeper.local.realnode import cleanup

            lines += cleanup.cleanup(self.state_dir)
        if not quiet:
            for line in lines:
                _say(line)
        self.state_path.unlink(missing_ok=True)
        self.records = []
        return lines


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
