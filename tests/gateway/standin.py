"""A stepping stone until the operator and node fixtures land: plays the operator's part for
KernelSessions in one namespace by running the real in-pod launcher (real ipykernel) as a host
process on 127.0.0.1 and writing the status the operator would write. Not used once
tests/fixtures/operator.py exists."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time

from kubernetes import client

from kernelkeeper.crds import model as crd


class StandinOperator:
    def __init__(self, api: client.ApiClient, namespace: str, log_dir: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.ns = namespace
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> StandinOperator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                items = self.custom.list_namespaced_custom_object(
                    crd.GROUP, crd.VERSION, self.ns, crd.PLURAL)["items"]
                names = {o["metadata"]["name"] for o in items}
                for o in items:
                    name = o["metadata"]["name"]
                    if name not in self.procs:
                        self._launch(o)
                for name in list(self.procs):
                    if name not in names:
                        self.procs.pop(name).terminate()
            except Exception as exc:  # noqa: BLE001
                print("standin:", exc, file=sys.stderr)
            self._stop.wait(0.2)

    def _launch(self, obj: dict) -> None:
        name = obj["metadata"]["name"]
        key = secrets.token_hex(32)
        self.core.create_namespaced_secret(self.ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name=crd.key_secret_name(name)),
            data={crd.KEY_SECRET_FIELD: base64.b64encode(key.encode()).decode()}))
        # Like the process node: a loopback address of its own, the default ports.
        self.count = getattr(self, "count", 0) + 1
        ip = f"127.77.{(os.getpid() + self.count) % 250 + 1}.{self.count % 250 + 1}"
        ports = dict(crd.DEFAULT_PORTS)
        env = {**os.environ, "KERNEL_ID": name, "KERNELKEEPER_POD_IP": ip,
               "KERNELKEEPER_KEY": key, "KERNELKEEPER_PORTS": json.dumps(ports),
               "KERNELKEEPER_KERNEL_ARGV": json.dumps(
                   [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]),
               "KERNELKEEPER_HEALTH_PORT": "52006"}
        log = open(os.path.join(self.log_dir, f"kernel-{name}.log"), "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "kernelkeeper.kernel"],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        status = {
            "conditions": crd.set_condition([], status=True, reason=crd.REASON_RUNNING,
                                            message="standin", generation=1),
            "connection": crd.connection_status(ip, ports),
            "keySecretRef": {"name": crd.key_secret_name(name), "key": crd.KEY_SECRET_FIELD},
            "restarts": 0,
        }
        self.custom.patch_namespaced_custom_object_status(
            crd.GROUP, crd.VERSION, self.ns, crd.PLURAL, name, {"status": status})
