"""The chart on the real node, as users install it: in each availability mode, in a namespace
that enforces the `restricted` Pod Security Standard.

One release per mode (a module-scoped fixture, so the modes run one after the other; an install
costs about a minute here), with its own operator: the session's operator, which watches every
namespace, is paused meanwhile. On each release:
- every Pod becomes Ready, each of its containers running (the kernelspecs sidecars too), and
  `helm test` passes (a kernel through the Service executes 1+1);
- evicting gateway Pods through the Eviction API (what `kubectl drain` does) is refused with
  429 once the PodDisruptionBudget would be violated;
- (active-active) a kernel spec added through values shows up in GET /api/kernelspecs after
  `helm upgrade`, with no Pod restarted, and a kernel of it starts and executes; `helm rollback`
  brings the previous values back;
- `helm uninstall` removes operator and gateway, while a running kernel's KernelSession and
  Pod stay, and the kernel keeps its state.
Values the schema rejects fail `helm install` with the schema's message.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kernelkeeper.crds import model as crd
from kernelkeeper.local import build
from kernelkeeper.local.chart import CHART, chart_values, helm_env
from tests.fixtures.chart import DEPLOYMENT, service, wait_service_answers
from tests.fixtures.cluster import Cluster
from tests.gateway.client import KernelWS, http
from tests.helpers import core, execute, get_session, kernel_client, wait_ready, wait_until

pytestmark = pytest.mark.timeout(900)

RELEASE = "kernelkeeper"
MODES = ("active-active", "active-passive")
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
SYNCED_SPECS = "/var/lib/kernelkeeper/kernelspecs"
SPEC_NAME = "python-from-values"
SPEC = {"spec": {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                 "display_name": "Python 3 (from chart values)", "language": "python",
                 "env": {"KERNEL_FROM_VALUES": "yes"},
                 "metadata": {"kernelkeeper": {"resources": {"requests": {"cpu": "50m",
                                                                          "memory": "128Mi"}}}}}}


@dataclass
class Release:
    cluster: Cluster
    namespace: str
    mode: str
    helm_bin: Path
    helm_home: Path

    def helm(self, *args: str, check: bool = True,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
        out = run_helm(self.helm_bin, self.helm_home, *args, "--namespace", self.namespace,
                       "--kubeconfig", str(self.cluster.kubeconfig), timeout=timeout)
        assert not check or out.returncode == 0, \
            f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return out

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.cluster.kubectl(*args, "-n", self.namespace, "-o", "json").stdout)

    def pods(self, selector: str = INSTANCE) -> list[dict[str, Any]]:
        return [p for p in self.kubectl_json("get", "pods", "-l", selector)["items"]
                if not p["metadata"].get("deletionTimestamp")]

    def service(self) -> tuple[str, str]:
        return service(self.cluster, self.namespace)

    def describe(self) -> str:
        """What a failed install left: Pods, Events, and the logs of containers not Ready."""
        kubectl, ns = self.cluster.kubectl, self.namespace
        parts = [kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout,
                 kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp",
                         check=False).stdout[-6000:]]
        for pod in self.pods():
            for cs in (pod["status"].get("containerStatuses", []) +
                       pod["status"].get("initContainerStatuses", [])):
                if not cs.get("ready") or cs.get("restartCount") or cs["name"] == "gateway":
                    name = f"{pod['metadata']['name']}/{cs['name']}"
                    logs = kubectl("logs", "-n", ns, pod["metadata"]["name"], "-c", cs["name"],
                                   "--tail=40", *(["--previous"] if cs.get("restartCount") else []),
                                   check=False)
                    parts.append(f"--- {name}: {json.dumps(cs['state'])}\n"
                                 f"{logs.stdout}{logs.stderr}")
        return "\n".join(parts)


def run_helm(binary: Path, home: Path, *args: str,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True,
                          env=helm_env(home), timeout=timeout, check=False)


def restricted_namespace(cluster: Cluster, prefix: str) -> str:
    ns = cluster.new_namespace(prefix)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")
    return ns


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    binary = build.binary("helm")
    if not binary.is_file():
        pytest.skip("helm is built by `make build` (kernelkeeper local build --helm)")
    return binary


@pytest.fixture(scope="module", params=MODES)
def release(request: pytest.FixtureRequest, cluster: Cluster, operator, helm_bin: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    mode: str = request.param
    rel = Release(cluster, restricted_namespace(cluster, "chart"), mode, helm_bin,
                  tmp_path_factory.mktemp("helm-home"))
    with operator.paused():
        try:
            out = rel.helm("install", RELEASE, str(CHART), "--skip-crds", "--wait",
                           "--timeout", "240s",
                           *chart_values(cluster.image, replicas=2, availability_mode=mode),
                           "--set", "gateway.service.type=ClusterIP", check=False)
            assert out.returncode == 0, f"helm install failed: {out.stderr}\n{rel.describe()}"
            yield rel
        finally:
            rel.helm("uninstall", RELEASE, "--wait", "--timeout", "120s", check=False)
            cluster.kubectl("delete", "namespace", rel.namespace, "--wait=false", check=False)


def start_kernel(release: Release, url: str, token: str, name: str) -> str:
    """POST /api/kernels through the Service; a failure says what the release looked like."""
    try:
        status, model = http("POST", f"{url}/api/kernels", {"name": name}, token=token)
    except OSError as exc:
        raise AssertionError(f"POST /api/kernels: {exc!r}\n{release.describe()}") from exc
    assert status == 201, f"{status} {model}\n{release.describe()}"
    return str(model["id"])


def test_values_the_schema_rejects_fail_install(cluster: Cluster, helm_bin: Path,
                                                tmp_path: Path) -> None:
    ns = cluster.new_namespace("badvalues")
    try:
        for value, message in (
                ("gateway.availabilityMode=bogus", "at '/gateway/availabilityMode': value must "
                                                   "be one of 'active-active', 'active-passive'"),
                ("gateway.replicas=two", "at '/gateway/replicas': got string, want integer")):
            out = run_helm(helm_bin, tmp_path, "install", RELEASE, str(CHART), "--namespace", ns,
                           "--kubeconfig", str(cluster.kubeconfig), "--skip-crds",
                           "--set", value)
            assert out.returncode != 0, out.stdout
            assert "values don't meet the specifications of the schema" in out.stderr
            assert message in out.stderr, out.stderr
        listed = run_helm(helm_bin, tmp_path, "list", "--namespace", ns, "--kubeconfig",
                          str(cluster.kubeconfig), "-q")
        assert listed.stdout.strip() == "", "a rejected install left a release"
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_pods_ready_and_helm_test_passes(release: Release) -> None:
    pods = release.pods()
    by_component: dict[str, list[str]] = {}
    for pod in pods:
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        by_component.setdefault(component, []).append(pod["metadata"]["name"])
        status = pod["status"]
        assert status["phase"] == "Running", (pod["metadata"]["name"], status)
        ready = {c["type"]: c["status"] for c in status["conditions"]}
        assert ready["Ready"] == "True", (pod["metadata"]["name"], status["conditions"])
        for cs in status["containerStatuses"] + status.get("initContainerStatuses", []):
            assert cs["ready"] and "running" in cs["state"], (pod["metadata"]["name"], cs)
        names = {cs["name"] for cs in status.get("initContainerStatuses", [])}
        assert names == {"kernelspecs"}, names
    assert {k: len(v) for k, v in by_component.items()} == {"operator": 2, "gateway": 2}, \
        by_component
    # Admitted under `restricted`: the namespace enforces it.
    labels = json.loads(release.cluster.kubectl("get", "namespace", release.namespace, "-o",
                                                "json").stdout)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    url, token = release.service()
    wait_service_answers(url, token)
    # No --logs: the hook deletes a Pod that succeeded (a failed one stays for kubectl logs).
    out = release.helm("test", RELEASE, "--timeout", "180s", check=False, timeout=240)
    assert out.returncode == 0, f"helm test failed:\n{out.stdout}\n{out.stderr}\n" + \
        release.cluster.kubectl("logs", "-n", release.namespace, f"{RELEASE}-test",
                                check=False).stdout
    assert "Phase:          Succeeded" in out.stdout, out.stdout
    # The test deleted its kernel.
    assert http("GET", f"{url}/api/kernels", token=token)[1] == []


def _pdb(release: Release, component: str) -> dict[str, Any]:
    status: dict[str, Any] = release.kubectl_json(
        "get", "pdb", f"{RELEASE}-{component}")["status"]
    return status


def _evict(release: Release, name: str) -> client.ApiException | None:
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=name,
                                                              namespace=release.namespace))
    try:
        core(release.cluster).create_namespaced_pod_eviction(name, release.namespace, eviction)
    except client.ApiException as exc:
        return exc
    return None


def test_eviction_is_refused_while_the_budget_would_be_violated(release: Release) -> None:
    assert _pdb(release, "operator")["disruptionsAllowed"] == 1
    wait_until(lambda: _pdb(release, "gateway").get("disruptionsAllowed") == 1, 60,
               "both gateway Pods healthy for the PodDisruptionBudget",
               detail=lambda: json.dumps(_pdb(release, "gateway")))
    first, second = (p["metadata"]["name"]
                     for p in release.pods("app.kubernetes.io/component=gateway"))
    assert _evict(release, first) is None, "the first eviction is within the budget"
    refused = _evict(release, second)
    assert refused is not None and refused.status == 429, refused
    assert "disruption budget" in str(refused.body), refused.body
    pod = release.kubectl_json("get", "pod", second)
    assert not pod["metadata"].get("deletionTimestamp") and pod["status"]["phase"] == "Running"
    # The Deployment replaces the evicted Pod; then the budget allows one disruption again.
    wait_until(lambda: _pdb(release, "gateway").get("disruptionsAllowed") == 1, 120,
               "the gateway Deployment back to two healthy Pods",
               detail=lambda: json.dumps(_pdb(release, "gateway")))
    url, token = release.service()
    wait_service_answers(url, token)


def _pod_restarts(release: Release) -> dict[str, int]:
    """Every chart Pod's name -> restarts of all its containers."""
    return {p["metadata"]["name"]: sum(cs.get("restartCount", 0) for cs in
                                       p["status"]["containerStatuses"] +
                                       p["status"].get("initContainerStatuses", []))
            for p in release.pods()}


def _lists_spec(url: str, token: str) -> bool:
    status, body = http("GET", f"{url}/api/kernelspecs", token=token, timeout=10)
    return status == 200 and SPEC_NAME in body["kernelspecs"]


def _operator_has_spec(release: Release, pod: str) -> bool:
    out = release.cluster.kubectl("exec", "-n", release.namespace, pod, "-c", "operator", "--",
                                  "test", "-f", f"{SYNCED_SPECS}/{SPEC_NAME}/kernel.json",
                                  check=False)
    return out.returncode == 0


def test_kernel_spec_from_values_without_a_restart(release: Release) -> None:
    if release.mode != "active-active":
        pytest.skip("the ConfigMap path does not depend on the mode: active-active covers it")
    before = _pod_restarts(release)
    generations = {d["metadata"]["name"]: d["metadata"]["generation"]
                   for d in release.kubectl_json("get", "deployments", "-l", INSTANCE)["items"]}
    release.helm("upgrade", RELEASE, str(CHART), "--reuse-values", "--wait", "--timeout", "120s",
                 "--set-json", f"kernelspecs={json.dumps({SPEC_NAME: SPEC})}",
                 "--set", "gateway.service.annotations.example\\.org/revision=two")

    url, token = release.service()
    # Each replica and operator Pod sees the spec once the kubelet has refreshed its volume
    # (about a minute) and its SpecCatalog has re-read the directory.
    for pod in release.pods("app.kubernetes.io/component=gateway"):
        pod_url = f"http://{pod['status']['podIP']}:8888"
        wait_until(lambda u=pod_url: _lists_spec(u, token), 180,
                   f"{SPEC_NAME} in GET /api/kernelspecs of {pod['metadata']['name']}",
                   interval=2)
    for pod in release.pods("app.kubernetes.io/component=operator"):
        wait_until(lambda p=pod["metadata"]["name"]: _operator_has_spec(release, p), 180,
                   f"{SPEC_NAME} in {pod['metadata']['name']}'s kernelspec directory", interval=2)
    status, body = http("GET", f"{url}/api/kernelspecs/{SPEC_NAME}", token=token)
    assert status == 200 and body["spec"]["display_name"] == SPEC["spec"]["display_name"]

    assert _pod_restarts(release) == before, "a Pod was replaced or restarted"
    after = {d["metadata"]["name"]: d["metadata"]["generation"]
             for d in release.kubectl_json("get", "deployments", "-l", INSTANCE)["items"]}
    assert after == generations, "the upgrade changed a Pod template"

    kid = start_kernel(release, url, token, SPEC_NAME)
    ws = KernelWS(url.replace("http://", "ws://"), kid, token=token)
    try:
        reply, out, _ = ws.execute("import os; print(os.environ['KERNEL_FROM_VALUES'], 6 * 7)")
        assert reply["content"]["status"] == "ok", reply
        assert out.split() == ["yes", "42"]
    finally:
        ws.close()
    ks = get_session(release.cluster, release.namespace, kid)
    assert ks is not None and ks["spec"]["kernelSpec"] == SPEC_NAME
    pod = release.kubectl_json("get", "pod", ks["status"]["podName"])
    assert pod["metadata"]["labels"][crd.LABEL_KERNEL_SPEC] == SPEC_NAME
    assert http("DELETE", f"{url}/api/kernels/{kid}", token=token)[0] == 204


def test_rollback_restores_the_previous_release(release: Release) -> None:
    if release.mode != "active-active":
        pytest.skip("the upgrade this rolls back runs in active-active only")
    history = json.loads(release.helm("history", RELEASE, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2], history
    release.helm("rollback", RELEASE, "1", "--wait", "--timeout", "120s")
    history = json.loads(release.helm("history", RELEASE, "-o", "json").stdout)
    assert history[-1]["revision"] == 3 and history[-1]["description"] == "Rollback to 1"
    data = release.kubectl_json("get", "configmap", f"{RELEASE}-kernelspecs")["data"]
    assert json.loads(data["kernelspecs.json"]) == {}
    svc = release.kubectl_json("get", "service", DEPLOYMENT)["metadata"]
    assert "example.org/revision" not in (svc.get("annotations") or {}), svc
    values = json.loads(release.helm("get", "values", RELEASE, "-o", "json").stdout)
    assert "kernelspecs" not in values and values["gateway"]["availabilityMode"] == release.mode


def test_uninstall_leaves_kernels_running(release: Release) -> None:
    cluster, ns = release.cluster, release.namespace
    url, token = release.service()
    wait_service_answers(url, token)
    kid = start_kernel(release, url, token, "python3")
    ws = KernelWS(url.replace("http://", "ws://"), kid, token=token)
    try:
        assert ws.execute("x = 41")[0]["content"]["status"] == "ok"
    finally:
        ws.close()
    pod_name = wait_ready(cluster, ns, kid)["status"]["podName"]

    release.helm("uninstall", RELEASE, "--wait", "--timeout", "120s")
    left = cluster.kubectl("get", "-n", ns, "deployment,service,pdb,networkpolicy,configmap,"
                           "role,rolebinding,serviceaccount", "-l", INSTANCE, "-o", "name")
    assert left.stdout.strip() == "", left.stdout
    assert not release.pods("app.kubernetes.io/component in (operator,gateway)")
    # The CRD is in crds/, so Helm keeps it, and with it every KernelSession; nothing deletes
    # the kernel Pods, which keep running with no operator and no gateway.
    ks = get_session(cluster, ns, kid)
    assert ks is not None and crd.is_ready(ks), ks
    pod = release.kubectl_json("get", "pod", pod_name)
    assert pod["status"]["phase"] == "Running" and not pod["metadata"].get("deletionTimestamp")
    kc = kernel_client(cluster, ns, ks)
    try:
        assert execute(kc, "x + 1")["result"] == "42"
    finally:
        kc.stop_channels()
    # The generated token is kept (helm.sh/resource-policy: keep) for a reinstall.
    cluster.kubectl("get", "secret", "-n", ns, f"{RELEASE}-gateway-token")
