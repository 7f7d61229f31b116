"""The Helm chart: lints, renders in both availability modes, installs on the real node.

The install runs the operator and the gateways as Pods of the kernelkeeper image built from this
tree (`image.pullPolicy=Never`: it is in the node's containerd), and a kernel started through the
chart's gateway Service runs in a container of the same image.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kernelkeeper.local.chart import CHART, chart_values
from tests.fixtures.chart import Helm, run_helm, service, wait_service_answers
from tests.fixtures.cluster import Cluster
from tests.gateway.client import KernelWS, http, start_kernel
from tests.helpers import token_kubeconfig

REPO = Path(__file__).resolve().parents[2]
MODES = ("active-active", "active-passive")


def _helm(helm: Helm, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    out = run_helm(helm, *args, timeout=timeout)
    assert out.returncode == 0, f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def test_chart_crd_is_a_copy_of_the_crd() -> None:
    chart_crd = CHART / "crds" / "kernelsession.yaml"
    assert chart_crd.read_bytes() == (REPO / "crds" / "kernelsession.yaml").read_bytes(), (
        "charts/kernelkeeper/crds/kernelsession.yaml is stale: "
        "cp crds/kernelsession.yaml charts/kernelkeeper/crds/")


def test_lint(helm: Helm) -> None:
    _helm(helm, "lint", "--strict", str(CHART))


@pytest.mark.parametrize("mode", MODES)
def test_template_renders(helm: Helm, mode: str) -> None:
    out = _helm(helm, "template", "kernelkeeper", str(CHART), "--namespace", "jupyter",
                "--set", f"gateway.availabilityMode={mode}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    gateway = by_kind[("Deployment", "kernelkeeper-gateway")]["spec"]
    operator = by_kind[("Deployment", "kernelkeeper-operator")]["spec"]
    assert gateway["replicas"] == 2 and operator["replicas"] == 2
    # A rollout never takes the serving replica down before a successor is Ready.
    assert gateway["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}

    container = gateway["template"]["spec"]["containers"][0]
    assert container["command"] == ["kernelkeeper", "gateway", "--ip", "0.0.0.0", "--port", "8888"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KERNELKEEPER_GATEWAY_AVAILABILITY_MODE"]["value"] == mode
    assert env["KERNELKEEPER_GATEWAY_NAMESPACE"]["value"] == "jupyter"
    assert "secretKeyRef" in env["KERNELKEEPER_GATEWAY_AUTH_TOKEN"]["valueFrom"]
    assert {"POD_NAME", "POD_NAMESPACE"} <= env.keys()
    # Pod readiness counts an active-passive standby (able to take over) as available.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?standby=1"
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


def test_install_runs_on_the_real_node(cluster: Cluster, operator,
                                       helm: Helm, tmp_path: Path) -> None:
    ns = cluster.new_namespace("helm")
    kube = ("--namespace", ns, "--kubeconfig", str(cluster.kubeconfig))
    # The session's operator watches every namespace; the chart's own must be the only one here.
    with operator.paused():
        try:
            _helm(helm, "install", "kernelkeeper", str(CHART), *kube, "--skip-crds", "--wait",
                  "--timeout", "240s",
                  *chart_values(cluster.image, replicas=2, availability_mode="active-passive"),
                  "--set", "gateway.service.type=ClusterIP", timeout=300)
            _check_objects_and_rbac(cluster, ns)
            _check_the_gateway_pod_policy(cluster, ns, tmp_path)
            _check_a_kernel_through_the_service(cluster, ns)
            _helm(helm, "uninstall", "kernelkeeper", *kube, "--wait", "--timeout", "120s",
                  timeout=180)
            left = cluster.kubectl("get", "-n", ns, "deployment,service,role", "-o",
                                   "name").stdout
            assert left.strip() == ""
        finally:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _check_objects_and_rbac(cluster: Cluster, ns: str) -> None:
    for kind, names in {
        "deployment": ["kernelkeeper-operator", "kernelkeeper-gateway"],
        "service": ["kernelkeeper-gateway"],
        "serviceaccount": ["kernelkeeper-operator", "kernelkeeper-gateway"],
        "role": ["kernelkeeper-operator", "kernelkeeper-operator-lease", "kernelkeeper-gateway"],
        "rolebinding": ["kernelkeeper-operator", "kernelkeeper-operator-lease",
                        "kernelkeeper-gateway"],
        "secret": ["kernelkeeper-gateway-token"],
    }.items():
        cluster.kubectl("get", "-n", ns, kind, *names)
    # Both operator replicas are Ready (one leads), and both active-passive gateways: a
    # standby is Ready for the Deployment, while the Service selects only the Lease holder.
    for name, ready in (("kernelkeeper-operator", 2), ("kernelkeeper-gateway", 2)):
        dep = json.loads(cluster.kubectl("get", "deployment", "-n", ns, name, "-o",
                                         "json").stdout)
        assert dep["status"].get("readyReplicas") == ready, (name, dep["status"])
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == cluster.image
    pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l",
                                      "app.kubernetes.io/component=gateway", "-o", "json").stdout)
    assert len(pods["items"]) == 2
    assert all(p["status"]["phase"] == "Running" for p in pods["items"])
    # The bindings grant what each component needs, and no more (spot checks).
    for sa, verb, resource, allowed in [
        ("operator", "watch", "kernelsessions.kernelkeeper.io", "yes"),
        ("operator", "patch", "kernelsessions.kernelkeeper.io --subresource=status", "yes"),
        ("operator", "create", "pods", "yes"),
        ("operator", "list", "secrets", "no"),
        ("gateway", "create", "kernelsessions.kernelkeeper.io", "yes"),
        ("gateway", "update", "leases.coordination.k8s.io/kernelkeeper-gateway", "yes"),
        ("gateway", "get", "leases.coordination.k8s.io/kernelkeeper-gateway", "yes"),
        # Not the operator's Lease, nor any Lease but its own.
        ("gateway", "update", "leases.coordination.k8s.io/kernelkeeper-operator", "no"),
        ("gateway", "update", "leases.coordination.k8s.io", "no"),
        ("gateway", "delete", "leases.coordination.k8s.io/kernelkeeper-gateway", "no"),
        ("operator", "update", "leases.coordination.k8s.io/kernelkeeper-gateway", "no"),
        ("gateway", "patch", "pods", "yes"),
        ("gateway", "create", "pods", "no"),
        ("gateway", "list", "secrets", "no"),
    ]:
        out = cluster.kubectl("auth", "can-i", verb, *resource.split(), "-n", ns,
                              f"--as=system:serviceaccount:{ns}:kernelkeeper-{sa}", check=False)
        assert out.stdout.strip() == allowed, (sa, verb, resource, out.stdout, out.stderr)


def _check_the_gateway_pod_policy(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    """What the gateway's token may patch, asked of the API server itself (dry run, so the
    admission policy runs and nothing changes)."""
    pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    gateways = [p for p in pods if p["metadata"]["labels"].get(
        "app.kubernetes.io/component") == "gateway"]
    operator = next(p for p in pods if p["metadata"]["labels"].get(
        "app.kubernetes.io/component") == "operator")
    own, other = (p["metadata"]["name"] for p in gateways[:2])
    # A token bound to the first gateway Pod, as that Pod's own projected token is.
    token = cluster.kubectl("create", "token", "kernelkeeper-gateway", "-n", ns,
                            "--bound-object-kind", "Pod", "--bound-object-name", own,
                            "--duration", "10m").stdout.strip()
    kubeconfig = token_kubeconfig(cluster, tmp_path / "gateway.kubeconfig", token, "gateway")

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

    def patch(pod: str, body: dict) -> tuple[bool, str]:
        # A PATCH alone (kubectl would GET the Pod first, which the gateway may not).
        try:
            api.patch_namespaced_pod(pod, ns, body, dry_run="All")
        except ApiException as exc:
            return False, str(exc.body)
        return True, ""

    role = "kernelkeeper.io/role"
    cost = "controller.kubernetes.io/pod-deletion-cost"
    allowed = [
        (own, {"metadata": {"labels": {role: "active"}, "annotations": {cost: "1000"}}}),
        (own, {"metadata": {"labels": {role: None}, "annotations": {cost: None}}}),
        (other, {"metadata": {"labels": {role: None}, "annotations": {cost: None}}}),
    ]
    refused = [
        (own, {"metadata": {"labels": {"app.kubernetes.io/component": "x"}}}, "may change only"),
        (own, {"metadata": {"annotations": {"x": "y"}}}, "may change only"),
        (own, {"spec": {"activeDeadlineSeconds": 5}}, "may change only"),
        (other, {"metadata": {"labels": {role: "active"}}}, "may only take the role label"),
        (operator["metadata"]["name"], {"metadata": {"labels": {role: None}}},
         "may patch only its own release's gateway Pods"),
    ]
    for pod, body in allowed:
        ok, err = patch(pod, body)
        assert ok, (pod, body, err)
    for pod, body, why in refused:
        ok, err = patch(pod, body)
        assert not ok and why in err, (pod, body, err)


def _check_a_kernel_through_the_service(cluster: Cluster, ns: str) -> None:
    url, token = service(cluster, ns)
    wait_service_answers(url, token)
    assert http("GET", f"{url}/api/kernels", timeout=10)[0] in (401, 403), \
        "the gateway answered without its token"
    kid = start_kernel(url, token, timeout=180)
    ws = KernelWS(url.replace("http://", "ws://"), kid, token=token)
    try:
        reply, out, _ = ws.execute("import os; print(os.getuid(), 6 * 7)")
        assert reply["content"]["status"] == "ok", reply
        uid, answer = out.split()
        assert uid != "0" and answer == "42"
    finally:
        ws.close()
    ks = json.loads(cluster.kubectl("get", "ks", "-n", ns, kid, "-o", "json").stdout)
    pod = json.loads(cluster.kubectl("get", "pod", "-n", ns, ks["status"]["podName"], "-o",
                                     "json").stdout)
    assert pod["spec"]["containers"][0]["image"] == cluster.image
    assert http("DELETE", f"{url}/api/kernels/{kid}", token=token)[0] == 204
