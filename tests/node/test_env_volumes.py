"""Env from Secrets, ConfigMaps and the downward API; secret volumes; in-cluster credentials."""

from __future__ import annotations

import json
import os
import sys

from kubernetes import client

from tests.node.helpers import (
    container,
    create_pod,
    get_pod,
    pod_manifest,
    read_json,
    wait_event,
    wait_for,
    wait_phase,
)

DUMP = """
import json, os, ssl, sys, urllib.request
out = {"env": dict(os.environ), "argv": sys.argv[1:], "cwd": os.getcwd()}
def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError as e:
        return "ERROR: %s" % e
out["secret_file"] = read(os.environ["SECRET_DIR"] + "/password")
out["secret_listing"] = sorted(os.listdir(os.environ["SECRET_DIR"]))
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
out["sa_namespace"] = read(sa + "/namespace")
try:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
    req = urllib.request.Request("https://%s:%s/version" % (host, port),
                                 headers={"Authorization": "Bearer " + read(sa + "/token")})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        out["apiserver"] = json.loads(r.read()).get("gitVersion")
except Exception as e:
    out["apiserver"] = "ERROR: %r" % e
tmp = os.environ["OUT"] + ".tmp"
with open(tmp, "w") as f:
    json.dump(out, f)
os.replace(tmp, os.environ["OUT"])
"""


def test_env_sources_and_secret_volume_reach_the_process(core, ns, node, tmp_path):
    core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"), string_data={"password": "hunter2"}))
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings"), data={"color": "blue", "size": "L"}))
    out = tmp_path / "out.json"
    mount = tmp_path / "mnt" / "secret"
    c = container("dump", DUMP, args=["$(COLOR)", "$$(COLOR)", "$(UNDEFINED)"], env=[
        {"name": "OUT", "value": str(out)},
        {"name": "SECRET_DIR", "value": str(mount)},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "COMPOSED", "value": "$(COLOR)-$(POD_NAME)"},
        {"name": "ESCAPED", "value": "$$(COLOR)"},
    ], envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CM_"},
                {"secretRef": {"name": "creds"}}],
        volumeMounts=[{"name": "creds", "mountPath": str(mount)}])
    manifest = pod_manifest("dump", [c], restartPolicy="Never",
                            volumes=[{"name": "creds", "secret": {"secretName": "creds"}}])
    create_pod(core, ns, manifest)
    pod = wait_phase(core, ns, "dump", "Succeeded", "Failed")
    status = pod["status"]
    if not node_mount_namespaces(node):
        # This host forbids private mount namespaces: the pod must say so, never skip the mount.
        print("mount namespaces unavailable: the pod failed with a clear reason")
        assert status["phase"] == "Failed"
        assert status["reason"] == "MountNamespaceUnavailable"
        wait_event(core, ns, "dump", "Failed", "mount namespace")
        return
    print("mount namespaces available: the secret volume was bind-mounted at its mountPath")
    assert status["phase"] == "Succeeded", json.dumps(status)
    got = wait_for(lambda: read_json(out), 10, what="the pod's output file")
    env = got["env"]
    assert env["PASSWORD"] == "hunter2"
    assert env["password"] == "hunter2"  # envFrom secretRef
    assert env["COLOR"] == "blue"
    assert env["CM_color"] == "blue" and env["CM_size"] == "L"
    assert env["POD_NAME"] == "dump"
    assert env["POD_NS"] == ns
    assert env["POD_UID"] == pod["metadata"]["uid"]
    assert env["POD_IP"] == status["podIP"] and env["POD_IP"].startswith("127.")
    assert env["NODE"] == node.name
    assert env["COMPOSED"] == "blue-dump"
    assert env["ESCAPED"] == "$(COLOR)"
    assert got["argv"] == ["blue", "$(COLOR)", "$(UNDEFINED)"]
    # A kubelet's service variables, pointing at the real API server.
    server = node_server(node)
    assert f"{env['KUBERNETES_SERVICE_HOST']}:{env['KUBERNETES_SERVICE_PORT']}" == server
    assert env["HOSTNAME"] == "dump"
    # Bare `python` in a pod command finds the interpreter that runs the node.
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    # The secret volume inside the pod, not on the host.
    assert got["secret_file"] == "hunter2"
    assert got["secret_listing"] == ["password"]
    assert list(mount.iterdir()) == []
    # The injected service account volume works as in-cluster config does.
    assert got["sa_namespace"] == ns
    assert got["apiserver"].startswith("v1.36"), got["apiserver"]


def node_mount_namespaces(node) -> bool:
    return "private mount namespaces are unavailable" not in node.log_text()


def node_server(node) -> str:
    import yaml

    cfg = yaml.safe_load(node.kubeconfig.read_text())
    return cfg["clusters"][0]["cluster"]["server"].removeprefix("https://")


def test_configmap_volume_items_and_downward_api_volume(core, ns, tmp_path):
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="files"), data={"a.txt": "alpha", "b.txt": "beta"}))
    out = tmp_path / "out.json"
    script = """
import json, os
root = os.environ["ROOT"]
def read(p):
    with open(p) as f:
        return f.read()
json.dump({"renamed": read(root + "/cm/sub/renamed.txt"),
           "listing": sorted(os.listdir(root + "/cm")),
           "name": read(root + "/info/name"), "labels": read(root + "/info/labels"),
           "scratch": os.access(root + "/scratch", os.W_OK)}, open(os.environ["OUT"], "w"))
"""
    root = tmp_path / "root"
    c = container("files", script, env=[{"name": "OUT", "value": str(out)},
                                        {"name": "ROOT", "value": str(root)}],
                  volumeMounts=[{"name": "cm", "mountPath": str(root / "cm")},
                                {"name": "info", "mountPath": str(root / "info")},
                                {"name": "scratch", "mountPath": str(root / "scratch")}])
    manifest = pod_manifest("files", [c], restartPolicy="Never", volumes=[
        {"name": "cm", "configMap": {"name": "files",
                                     "items": [{"key": "a.txt", "path": "sub/renamed.txt"}]}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "scratch", "emptyDir": {}}])
    manifest["metadata"]["labels"] = {"app": "files"}
    create_pod(core, ns, manifest)
    pod = wait_phase(core, ns, "files", "Succeeded", "Failed")
    assert pod["status"]["phase"] == "Succeeded", json.dumps(pod["status"])
    got = read_json(out)
    assert got == {"renamed": "alpha", "listing": ["sub"], "name": "files",
                   "labels": 'app="files"', "scratch": True}
    assert get_pod(core, ns, "files")["status"]["containerStatuses"][0]["state"][
        "terminated"]["reason"] == "Completed"
