"""Acceptance of the real node: kubelet + containerd, kernels in containers of the kernelkeeper
image, Services and cluster DNS, and image errors that reach the client as errors."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from kernelkeeper.crds import model as crd
from kernelkeeper.local import versions
from kernelkeeper.local.processes import free_port
from kernelkeeper.local.realnode import images, network
from kernelkeeper.local.realnode import layout as L
from tests.fixtures.cluster import Cluster
from tests.fixtures.operator import BAD_IMAGE, write_spec
from tests.gateway.client import KernelWS, http
from tests.helpers import http_status, wait_reason, wait_until

pytestmark = pytest.mark.timeout(900)


def _start_gateway(real_gateways, kernelspecs: Path, namespace: str):
    return real_gateways.start(namespace, env={"KERNELKEEPER_KERNELSPEC_PATH": str(kernelspecs)})


def test_node_is_a_real_kubelet_on_containerd(cluster: Cluster) -> None:
    wide = cluster.kubectl("get", "node", "-o", "wide").stdout
    print(wide)
    row = next(line for line in wide.splitlines() if line.startswith(L.NODE_NAME))
    assert " Ready " in row
    assert f"v{versions.KUBERNETES}" in row
    assert f"containerd://{versions.CONTAINERD}" in row
    node = json.loads(cluster.kubectl("get", "node", L.NODE_NAME, "-o", "json").stdout)
    assert node["status"]["nodeInfo"]["kubeletVersion"] == f"v{versions.KUBERNETES}"
    assert {"type": "InternalIP", "address": L.NODE_IP} in node["status"]["addresses"]


def test_kernel_runs_in_a_container_of_the_image_as_non_root(cluster: Cluster, real_gateways,
                                                             operator, kernelspecs: Path) -> None:
    ns = cluster.new_namespace("rn")
    gw = _start_gateway(real_gateways, kernelspecs, ns)
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"}, timeout=180)
    assert status == 201, model
    kid = model["id"]
    ws = KernelWS(gw.ws_url, kid)
    try:
        reply, out, _ = ws.execute("import os, sys; print(os.getuid(), sys.executable)")
        assert reply["content"]["status"] == "ok"
        uid, exe = out.split()
        assert uid != "0" and exe.startswith("/opt/kernelkeeper/"), out
    finally:
        ws.close()
    ks = json.loads(cluster.kubectl("get", "ks", "-n", ns, kid, "-o", "json").stdout)
    pod_name = ks["status"]["podName"]
    pod = json.loads(cluster.kubectl("get", "pod", "-n", ns, pod_name, "-o", "json").stdout)
    assert pod["spec"]["nodeName"] == L.NODE_NAME
    assert pod["spec"]["containers"][0]["image"] == cluster.image
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    assert container_id.startswith("containerd://")
    # containerd itself lists the kernel's container, from the kernelkeeper image.
    listed = cluster.ctr("containers", "ls")
    row = next(line for line in listed.splitlines()
               if line.startswith(container_id.removeprefix("containerd://")))
    assert cluster.image in row
    # The ipykernel process, seen from inside the container by `kubectl exec`.
    probe = ("import pathlib\n"
             "for p in pathlib.Path('/proc').iterdir():\n"
             "    if p.name.isdigit():\n"
             "        cmd = (p / 'cmdline').read_bytes().replace(b'\\0', b' ').decode()\n"
             "        if 'ipykernel_launcher' in cmd:\n"
             "            uid = next(l.split()[1] for l in (p / 'status').read_text().splitlines()"
             " if l.startswith('Uid:'))\n"
             "            print(p.name, uid, cmd)\n")
    out = cluster.kubectl("exec", "-n", ns, pod_name, "-c", "kernel", "--", "python", "-c",
                            probe).stdout
    print(out)
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert lines, "no ipykernel process in the kernel container"
    assert all(fields[1] != "0" for fields in lines), out
    assert http("DELETE", f"{gw.url}/api/kernels/{kid}")[0] == 204


def test_pods_reach_the_api_server_and_dns_and_cluster_ip_services(cluster: Cluster) -> None:
    ns = cluster.new_namespace("net")
    server = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": cluster.image,
                                 "imagePullPolicy": "Never",
                                 "command": ["python", "-m", "http.server", "8000"],
                                 "ports": [{"containerPort": 8000}]}]},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(server))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(service))
    cluster.wait_pod(ns, "web")
    client_code = (
        "import socket, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "print('dns', socket.gethostbyname('kubernetes.default.svc.cluster.local'))\n"
        "ctx = ssl.create_default_context(cafile=sa + 'ca.crt')\n"
        "req = urllib.request.Request('https://kubernetes.default/version',"
        " headers={'Authorization': 'Bearer ' + open(sa + 'token').read()})\n"
        "print('api', urllib.request.urlopen(req, context=ctx, timeout=10).status)\n"
        f"print('svc', urllib.request.urlopen('http://web.{ns}.svc.cluster.local/',"
        " timeout=10).status)\n")
    client = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "client", "image": cluster.image,
                                 "imagePullPolicy": "Never",
                                 "command": ["python", "-c", client_code]}]},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(client))
    cluster.wait_pod(ns, "client", phase="Succeeded")
    logs = cluster.kubectl("logs", "-n", ns, "client").stdout
    print(logs)
    assert f"dns {L.KUBERNETES_SERVICE_IP}" in logs
    assert "api 200" in logs
    assert "svc 200" in logs
    # From the host too: kube-proxy DNATs the ClusterIP to the pod.
    ip = cluster.kubectl("get", "svc", "-n", ns, "web", "-o",
                           "jsonpath={.spec.clusterIP}").stdout
    with urllib.request.urlopen(f"http://{ip}/", timeout=10) as resp:
        assert resp.status == 200
    # port-forward through the API server and the kubelet's streaming server.
    port = free_port()
    pf = subprocess.Popen([cluster.env.info["kubectl"], "--kubeconfig",
                           str(cluster.kubeconfig), "port-forward", "-n", ns, "pod/web",
                           f"{port}:8000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/", timeout=5) == 200, 30,
                   "the port-forward answers 200")
    finally:
        pf.terminate()
        pf.wait(10)
    # Nothing of either range ever left through the default route.
    assert network.guard_drops() == 0


def test_coredns_answers_cluster_local_only(cluster: Cluster) -> None:
    corefile = json.loads(cluster.kubectl("get", "cm", "-n", "kube-system", "coredns", "-o",
                                            "json").stdout)["data"]["Corefile"]
    assert "forward" not in corefile
    ns = cluster.new_namespace("dns")
    code = ("import socket\n"
            "try:\n"
            "    socket.gethostbyname('example.org')\n"
            "    print('outside resolved')\n"
            "except OSError as exc:\n"
            "    print('outside refused', exc)\n")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dns"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "dns", "image": cluster.image,
                                    "imagePullPolicy": "Never", "command": ["python", "-c", code]}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    cluster.wait_pod(ns, "dns", phase="Succeeded")
    assert "outside refused" in cluster.kubectl("logs", "-n", ns, "dns").stdout


def test_bad_image_fails_the_session_and_the_client_gets_the_reason(
        cluster: Cluster, operator, real_gateways, kernelspecs: Path) -> None:
    ns = cluster.new_namespace("img")
    kid = str(uuid.uuid4())
    ks = {"apiVersion": crd.API_VERSION, "kind": crd.KIND,
          "metadata": {"name": kid, "namespace": ns},
          "spec": {"kernelSpec": "python3-bad-image", "username": "alice"}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(ks))
    cond = crd.get_condition(wait_reason(cluster, ns, kid, crd.REASON_IMAGE_ERROR, 120)["status"])
    assert "ErrImageNeverPull" in cond["message"] and BAD_IMAGE in cond["message"], cond
    # Through the gateway: an error naming the reason, well inside the launch timeout.
    gw = _start_gateway(real_gateways, kernelspecs, ns)
    t0 = time.monotonic()
    status, body = http("POST", f"{gw.url}/api/kernels", {"name": "python3-bad-image"},
                        timeout=180)
    took = time.monotonic() - t0
    assert status == 500, body
    assert "ErrImageNeverPull" in json.dumps(body), body
    assert took < 60, f"the gateway took {took:.1f}s to report the image error"


def test_a_kernel_spec_with_its_own_image(cluster: Cluster, real_gateways, operator, kernelspecs: Path,
                                          tmp_path: Path) -> None:
    """A second image, built the way a user builds one (FROM a kernel image), for its own spec."""
    # The spec first: the operator re-reads its kernel specs every few seconds, and the image
    # build below takes longer than that.
    name = f"{L.IMAGE_DOMAIN}/second-kernel:{uuid.uuid4().hex[:8]}"
    write_spec(kernelspecs, "python3-second", name)
    context = tmp_path / "second-image"
    context.mkdir()
    context.joinpath("Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nUSER 0\n"
        "RUN mkdir -p /opt/second && echo 'second kernel image' > /opt/second/marker\n"
        "USER 1000:0\n")
    archive = images.build_dockerfile(context, name, tmp_path / "second.tar",
                                      build_args={"BASE_IMAGE": cluster.image})
    node = cluster.env.info["node"]
    images.import_archive(Path(node["ctr"]), Path(node["containerd_socket"]), archive,
                          tmp_path / "import.log")
    ns = cluster.new_namespace("spec")
    gw = _start_gateway(real_gateways, kernelspecs, ns)
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3-second"},
                         timeout=180)
    assert status == 201, model
    ws = KernelWS(gw.ws_url, model["id"])
    try:
        reply, out, _ = ws.execute("print(open('/opt/second/marker').read().strip())")
        assert reply["content"]["status"] == "ok", reply
        assert out.strip() == "second kernel image"
    finally:
        ws.close()
    ks = json.loads(cluster.kubectl("get", "ks", "-n", ns, model["id"], "-o", "json").stdout)
    pod = json.loads(cluster.kubectl("get", "pod", "-n", ns, ks["status"]["podName"], "-o",
                                       "json").stdout)
    assert pod["spec"]["containers"][0]["image"] == name


def test_an_absent_image_is_never_pulled_from_anywhere(cluster: Cluster) -> None:
    """IfNotPresent with an image the node lacks: the pull fails on this machine, at once."""
    ns = cluster.new_namespace("pull")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "absent"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "kernelkeeper.local/absent:1",
                                    "imagePullPolicy": "IfNotPresent"}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    waiting: dict = {}

    def pull_failed() -> bool:
        obj = json.loads(cluster.kubectl("get", "pod", "-n", ns, "absent", "-o", "json").stdout)
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        waiting.clear()
        waiting.update((statuses[0].get("state") or {}).get("waiting") or {} if statuses else {})
        return waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff")

    wait_until(pull_failed, 60, "the image pull failed", interval=0.5, detail=lambda: str(waiting))
    events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    # containerd's only way out is the closed loopback proxy.
    assert "127.0.0.1:9" in events, events[-2000:]
