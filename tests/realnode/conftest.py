"""The real node for a module of tests: control plane, containerd, kubelet, kube-proxy, CoreDNS.

Only one real node can run on a machine at a time (it owns the bridge `kk-br0` and the pod and
Service ranges), so each module that needs one gets its own and takes it down at its end.
The operator and the gateway run as host processes here; kernel Pods are containers of the
kernelkeeper image built from this tree.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernelkeeper.local.environment import LocalEnvironment
from tests.fixtures.cluster import Cluster, report
from tests.fixtures.gateway import GatewayFactory
from tests.fixtures.operator import OperatorHarness

BAD_IMAGE = "kernelkeeper.local/no-such-image:0"


def write_spec(root: Path, name: str, image: str | None) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
    if image:
        meta["image"] = image
    d.joinpath("kernel.json").write_text(json.dumps({
        "display_name": name, "language": "python",
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "interrupt_mode": "message", "metadata": {"kernelkeeper": meta}}))


class RealNode(Cluster):
    @property
    def image(self) -> str:
        return str(self.env.info["image"])

    def ctr(self, *args: str) -> str:
        node = self.env.info["node"]
        out = subprocess.run([node["ctr"], "--address", node["containerd_socket"], "--namespace",
                              "k8s.io", *args], capture_output=True, text=True, check=True,
                             timeout=120)
        return out.stdout

    def wait_pod(self, namespace: str, name: str, phase: str = "Running",
                 timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        pod: dict = {}
        while time.monotonic() < deadline:
            out = self.kubectl("get", "pod", "-n", namespace, name, "-o", "json", check=False)
            if out.returncode == 0:
                pod = json.loads(out.stdout)
                if (pod.get("status") or {}).get("phase") == phase:
                    return pod
            time.sleep(0.5)
        raise AssertionError(f"pod {namespace}/{name} not {phase} in {timeout:.0f}s: "
                             f"{json.dumps(pod.get('status'))[:2000]}")


@pytest.fixture(scope="module")
def real_node(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    env = LocalEnvironment(tmp_path_factory.mktemp("real-node"), real_node=True)
    start = time.monotonic()
    env.up()
    report(request.config, f"[real node] control plane, containerd, kubelet, kube-proxy and "
                           f"CoreDNS up in {time.monotonic() - start:.1f}s (logs: {env.logs})")
    try:
        yield RealNode(env)
    finally:
        env.down(quiet=True)


@pytest.fixture(scope="module")
def kernelspecs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kernelspecs")
    write_spec(root, "python3-bad-image", BAD_IMAGE)
    return root


@pytest.fixture(scope="module")
def real_operator(real_node: RealNode, kernelspecs: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorHarness]:
    harness = OperatorHarness(
        real_node.kubeconfig, tmp_path_factory.mktemp("real-operator-logs"),
        # Kernel Pods run the image's own launcher; nothing of this host is in them.
        extra_args=["--launcher-command", "python -m kernelkeeper.kernel",
                    "--default-image", real_node.image, "--image-pull-policy", "Never",
                    "--kernelspec-path", str(kernelspecs)])
    harness.start_main()
    try:
        yield harness
    finally:
        harness.stop_main()


@pytest.fixture
def real_gateways(real_node: RealNode, real_operator: OperatorHarness, kernelspecs: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(real_node.kubeconfig, tmp_path_factory.mktemp("real-gateways"))
    try:
        yield factory
    finally:
        factory.stop_all()
