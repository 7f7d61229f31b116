"""The chart as `helm lint` and `helm template` see it: no cluster.

The schema rejects wrong types and unknown modes with its message; every Pod of the chart meets
the `restricted` Pod Security Standard; PodDisruptionBudgets, the NetworkPolicy, Service
affinity, Ingress, ServiceMonitor and the kernelspec wiring render as the values say. The
NetworkPolicy's ports are checked against the ports kernel Pods really listen on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract
from kernelkeeper.local.chart import CHART
from tests.fixtures.chart import run_helm

FULLNAME = "kernelkeeper"


def render(helm: tuple[Path, dict[str, str]], *args: str) -> dict[tuple[str, str], Any]:
    out = run_helm(helm, "template", "kernelkeeper", str(CHART), "--namespace", "jupyter", *args)
    assert out.returncode == 0, out.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}


def pod_specs(docs: dict[tuple[str, str], Any]) -> dict[str, dict[str, Any]]:
    """Every Pod spec the chart renders: the Deployments' templates and the helm-test Pod."""
    specs = {name: d["spec"]["template"]["spec"] for (kind, name), d in docs.items()
             if kind == "Deployment"}
    specs.update({name: d["spec"] for (kind, name), d in docs.items() if kind == "Pod"})
    return specs


def test_lint_with_the_schema(helm: tuple[Path, dict[str, str]]) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr
    bad = run_helm(helm, "lint", "--strict", str(CHART), "--set", "gateway.replicas=two")
    assert bad.returncode != 0 and "want integer" in bad.stdout + bad.stderr


@pytest.mark.parametrize(("value", "message"), [
    ("gateway.availabilityMode=bogus",
     "at '/gateway/availabilityMode': value must be one of 'active-active', 'active-passive'"),
    ("gateway.replicas=two", "at '/gateway/replicas': got string, want integer"),
    ("operator.podDisruptionBudget.enabled=maybe",
     "at '/operator/podDisruptionBudget/enabled': got string, want boolean"),
    ("gateway.replica=2", "at '/gateway': additional properties 'replica' not allowed"),
    ("networkPolicy.enable=false",
     "at '/networkPolicy': additional properties 'enable' not allowed"),
])
def test_schema_rejects_with_its_message(helm: tuple[Path, dict[str, str]], value: str,
                                         message: str) -> None:
    out = run_helm(helm, "template", "kernelkeeper", str(CHART), "--set", value)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr
    assert message in out.stderr, out.stderr


def test_every_pod_meets_restricted_pod_security(helm: tuple[Path, dict[str, str]]) -> None:
    specs = pod_specs(render(helm))
    assert set(specs) == {f"{FULLNAME}-operator", f"{FULLNAME}-gateway", f"{FULLNAME}-test"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 1000, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])} or \
                container["name"] == "kernelspecs", f"{where}: no writable /tmp"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"], name
        assert not any("hostPath" in v for v in spec["volumes"]), name


def test_operator_probes_and_health_port(helm: tuple[Path, dict[str, str]]) -> None:
    container = render(helm)[("Deployment", f"{FULLNAME}-operator")][
        "spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    args = container["args"]
    assert args[args.index("--health-port") + 1] == "8081"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


@pytest.mark.parametrize(("replicas", "expected"), [(2, True), (1, False)])
def test_pod_disruption_budgets(helm: tuple[Path, dict[str, str]], replicas: int,
                                expected: bool) -> None:
    docs = render(helm, "--set", f"operator.replicas={replicas}",
                  "--set", f"gateway.replicas={replicas}")
    for component in ("operator", "gateway"):
        pdb = docs.get(("PodDisruptionBudget", f"{FULLNAME}-{component}"))
        assert (pdb is not None) is expected, component
        if pdb is None:
            continue
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
        pod_labels = docs[("Deployment", f"{FULLNAME}-{component}")][
            "spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    docs = render(helm, "--set", "gateway.podDisruptionBudget.minAvailable=50%",
                  "--set", "operator.podDisruptionBudget.enabled=false")
    assert ("PodDisruptionBudget", f"{FULLNAME}-operator") not in docs
    spec = docs[("PodDisruptionBudget", f"{FULLNAME}-gateway")]["spec"]
    assert spec["minAvailable"] == "50%" and "maxUnavailable" not in spec


def test_network_policy_admits_only_gateway_and_operator(
        helm: tuple[Path, dict[str, str]]) -> None:
    docs = render(helm)
    policy = docs[("NetworkPolicy", f"{FULLNAME}-kernels")]["spec"]
    assert policy["podSelector"] == {"matchLabels": {crd.LABEL_COMPONENT: "kernel"}}
    assert policy["policyTypes"] == ["Ingress"]
    gateway_rule, operator_rule = policy["ingress"]
    for rule, component, ports in (
            (gateway_rule, "gateway", {*crd.DEFAULT_PORTS.values(), contract.JOURNAL_PORT,
                                      contract.REPORT_PORT}),
            (operator_rule, "operator", {contract.HEALTH_PORT})):
        pod_labels = docs[("Deployment", f"{FULLNAME}-{component}")][
            "spec"]["template"]["metadata"]["labels"]
        (peer,) = rule["from"]
        assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "kernelkeeper"
        assert {p["port"] for p in rule["ports"]} == ports, component
    assert ("NetworkPolicy", f"{FULLNAME}-kernels") not in render(
        helm, "--set", "networkPolicy.enabled=false")


@pytest.mark.parametrize(("mode", "affinity"), [("active-active", "ClientIP"),
                                                ("active-passive", "None")])
def test_service_affinity_follows_the_mode(helm: tuple[Path, dict[str, str]], mode: str,
                                           affinity: str) -> None:
    spec = render(helm, "--set", f"gateway.availabilityMode={mode}")[
        ("Service", f"{FULLNAME}-gateway")]["spec"]
    assert spec["sessionAffinity"] == affinity
    assert ("sessionAffinityConfig" in spec) is (affinity == "ClientIP")
    spec = render(helm, "--set", f"gateway.availabilityMode={mode}",
                  "--set", "gateway.service.sessionAffinity=None")[
        ("Service", f"{FULLNAME}-gateway")]["spec"]
    assert spec["sessionAffinity"] == "None"


def test_ingress(helm: tuple[Path, dict[str, str]]) -> None:
    assert not [k for k in render(helm) if k[0] == "Ingress"]
    docs = render(helm, "--set", "gateway.ingress.enabled=true",
                  "--set", "gateway.ingress.className=nginx",
                  "--set", "gateway.ingress.host=jupyter.example.org",
                  "--set", "gateway.ingress.tls[0].secretName=jupyter-tls",
                  "--set", "gateway.ingress.tls[0].hosts[0]=jupyter.example.org",
                  "--set-string", "gateway.ingress.annotations.nginx\\.ingress\\.kubernetes\\.io"
                                  "/upstream-hash-by=$kernelkeeper_kernel_id")
    ingress = docs[("Ingress", f"{FULLNAME}-gateway")]
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "jupyter-tls", "hosts": ["jupyter.example.org"]}]
    (rule,) = spec["rules"]
    assert rule["host"] == "jupyter.example.org"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULLNAME}-gateway", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/upstream-hash-by": "$kernelkeeper_kernel_id"}


def test_service_monitor_only_with_the_prometheus_operator_api(
        helm: tuple[Path, dict[str, str]]) -> None:
    kinds = {k[0] for k in render(helm, "--set", "serviceMonitor.enabled=true")}
    assert "ServiceMonitor" not in kinds
    docs = render(helm, "--set", "serviceMonitor.enabled=true",
                  "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    operator = docs[("ServiceMonitor", f"{FULLNAME}-operator")]["spec"]
    gateway = docs[("ServiceMonitor", f"{FULLNAME}-gateway")]["spec"]
    assert operator["endpoints"][0]["port"] == "health"
    assert gateway["endpoints"][0]["authorization"]["credentials"] == {
        "name": f"{FULLNAME}-gateway-token", "key": "token"}
    for monitor in (operator, gateway):
        services = [d for (kind, _), d in docs.items() if kind == "Service" and
                    monitor["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()]
        assert len(services) == 1, monitor["selector"]
    assert "ServiceMonitor" not in {k[0] for k in render(
        helm, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")}


def test_kernelspecs_from_values(helm: tuple[Path, dict[str, str]]) -> None:
    specs = {"python-small": {"spec": {"argv": ["python", "-m", "ipykernel_launcher", "-f",
                                                "{connection_file}"],
                                       "display_name": "Small", "language": "python"},
                              "files": {"kernel.js": "// nothing"}}}
    docs = render(helm, "--set-json", f"kernelspecs={json.dumps(specs)}",
                  "--set", "kernelspecPath=/opt/specs")
    data = docs[("ConfigMap", f"{FULLNAME}-kernelspecs")]["data"]
    assert json.loads(data["kernelspecs.json"]) == specs
    synced = "/var/lib/kernelkeeper/kernelspecs"
    operator = docs[("Deployment", f"{FULLNAME}-operator")]["spec"]["template"]["spec"]
    args = operator["containers"][0]["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--kernelspec-path"] == [
        synced, "/opt/specs"]
    gateway = docs[("Deployment", f"{FULLNAME}-gateway")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    assert env["KERNELKEEPER_GATEWAY_KERNELSPEC_PATH"] == f"{synced}:/opt/specs"
    for spec in (operator, gateway):
        (sidecar,) = spec["initContainers"]
        assert sidecar["name"] == "kernelspecs" and sidecar["restartPolicy"] == "Always"
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts[synced]["readOnly"] is True
        # No checksum annotation: a changed ConfigMap must not roll the Pods.
        assert not (spec.get("metadata") or {}).get("annotations")
    bad = run_helm(helm, "template", "kernelkeeper", str(CHART), "--set-json",
                   'kernelspecs={"x": {"spec": {"argv": []}}}')
    assert bad.returncode != 0 and "/kernelspecs/x/spec/argv" in bad.stderr, bad.stderr


def test_helm_test_pod(helm: tuple[Path, dict[str, str]]) -> None:
    pod = render(helm)[("Pod", f"{FULLNAME}-test")]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["GATEWAY_URL"]["value"] == "http://kernelkeeper-gateway.jupyter.svc:8888"
    assert env["GATEWAY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "kernelkeeper-gateway-token"
