"""The Helm chart: lints, renders in both availability modes, installs against a real API server.

Pods are not run (there is no container runtime and the image is not pullable here): the install
proves that the API server accepts every object (server-side validation, RBAC escalation checks).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from kernelkeeper.local import build
from tests.fixtures.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kernelkeeper"
MODES = ("active-active", "active-passive")


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    binary = build.binary("helm")
    if not binary.is_file():
        pytest.skip("helm is built by `make test` (kernelkeeper local build --helm)")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ,
           "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    return binary, env


def _helm(helm: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    binary, env = helm
    out = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env,
                         timeout=60, check=False)
    assert out.returncode == 0, f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def test_chart_crd_is_a_copy_of_the_crd() -> None:
    chart_crd = CHART / "crds" / "kernelsession.yaml"
    assert chart_crd.read_bytes() == (REPO / "crds" / "kernelsession.yaml").read_bytes(), (
        "charts/kernelkeeper/crds/kernelsession.yaml is stale: "
        "cp crds/kernelsession.yaml charts/kernelkeeper/crds/")


def test_lint(helm: tuple[Path, dict[str, str]]) -> None:
    _helm(helm, "lint", "--strict", str(CHART))


@pytest.mark.parametrize("mode", MODES)
def test_template_renders(helm: tuple[Path, dict[str, str]], mode: str) -> None:
    out = _helm(helm, "template", "kernelkeeper", str(CHART), "--namespace", "jupyter",
                "--set", f"gateway.availabilityMode={mode}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    gateway = by_kind[("Deployment", "kernelkeeper-gateway")]["spec"]
    operator = by_kind[("Deployment", "kernelkeeper-operator")]["spec"]
    assert gateway["replicas"] == 2 and operator["replicas"] == 2
    assert gateway["strategy"]["rollingUpdate"]["maxUnavailable"] == 1

    container = gateway["template"]["spec"]["containers"][0]
    assert container["command"] == ["kernelkeeper", "gateway", "--ip", "0.0.0.0", "--port", "8888"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KERNELKEEPER_GATEWAY_AVAILABILITY_MODE"]["value"] == mode
    assert env["KERNELKEEPER_GATEWAY_NAMESPACE"]["value"] == "jupyter"
    assert "secretKeyRef" in env["KERNELKEEPER_GATEWAY_AUTH_TOKEN"]["valueFrom"]
    assert {"POD_NAME", "POD_NAMESPACE"} <= env.keys()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    args = operator["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--identity") + 1] == "$(POD_NAME)"
    assert args[args.index("--namespace") + 1] == "jupyter"

    selector = by_kind[("Service", "kernelkeeper-gateway")]["spec"]["selector"]
    pod_labels = gateway["template"]["metadata"]["labels"]
    if mode == "active-passive":
        assert selector.pop("kernelkeeper.io/role") == "active"
    assert "kernelkeeper.io/role" not in selector
    assert selector.items() <= pod_labels.items()


def test_install_against_the_api_server(cluster: Cluster,
                                        helm: tuple[Path, dict[str, str]]) -> None:
    ns = cluster.new_namespace("helm")
    kube = ("--namespace", ns, "--kubeconfig", str(cluster.kubeconfig))
    try:
        _helm(helm, "install", "kernelkeeper", str(CHART), *kube, "--skip-crds", "--wait=false",
              "--set", "gateway.availabilityMode=active-passive", "--timeout", "50s")
        for kind, names in {
            "deployment": ["kernelkeeper-operator", "kernelkeeper-gateway"],
            "service": ["kernelkeeper-gateway"],
            "serviceaccount": ["kernelkeeper-operator", "kernelkeeper-gateway"],
            "role": ["kernelkeeper-operator", "kernelkeeper-operator-lease",
                     "kernelkeeper-gateway"],
            "rolebinding": ["kernelkeeper-operator", "kernelkeeper-operator-lease",
                            "kernelkeeper-gateway"],
            "secret": ["kernelkeeper-gateway-token"],
        }.items():
            cluster.kubectl("get", "-n", ns, kind, *names)
        # The bindings grant what each component needs, and no more (spot checks).
        for sa, verb, resource, allowed in [
            ("operator", "watch", "kernelsessions.kernelkeeper.io", "yes"),
            ("operator", "patch", "kernelsessions.kernelkeeper.io --subresource=status", "yes"),
            ("operator", "create", "pods", "yes"),
            ("operator", "list", "secrets", "no"),
            ("gateway", "create", "kernelsessions.kernelkeeper.io", "yes"),
            ("gateway", "update", "leases.coordination.k8s.io", "yes"),
            ("gateway", "patch", "pods", "yes"),
            ("gateway", "create", "pods", "no"),
            ("gateway", "list", "secrets", "no"),
        ]:
            out = cluster.kubectl("auth", "can-i", verb, *resource.split(), "-n", ns,
                                  f"--as=system:serviceaccount:{ns}:kernelkeeper-{sa}", check=False)
            assert out.stdout.strip() == allowed, (sa, verb, resource, out.stdout, out.stderr)
        _helm(helm, "uninstall", "kernelkeeper", *kube, "--wait=false")
        left = cluster.kubectl("get", "-n", ns, "deployment,service,role", "-o", "name").stdout
        assert left.strip() == ""
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
