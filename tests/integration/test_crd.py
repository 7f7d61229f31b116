"""The KernelSession CRD on a real API server: established, validated, status subresource, GC."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml
from kubernetes import client

from kernelkeeper.crds import model as m


def _apply(cluster, obj: dict):
    return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=False)


@pytest.fixture(scope="module")
def ns(cluster):
    return cluster.new_namespace("crd")


def test_crd_is_established(cluster):
    crd = client.ApiextensionsV1Api(cluster.api_client()).read_custom_resource_definition(m.CRD_NAME)
    conds = {c.type: c.status for c in crd.status.conditions}
    assert conds["Established"] == "True"
    assert conds["NamesAccepted"] == "True"


def test_valid_session_is_accepted_and_listed_with_columns(cluster, ns):
    kid = m.new_kernel_id()
    out = _apply(cluster, m.kernel_session(kid, namespace=ns, kernel_spec="python3",
                                           username="alice", env={"KERNEL_FOO": "bar"}))
    assert out.returncode == 0, out.stderr
    table = cluster.kubectl("get", "ks", "-n", ns).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "USER", "KERNEL-SPEC", "READY", "REASON", "RESTARTS",
                      "LAST-ACTIVITY", "AGE"]
    row = [line for line in table.splitlines() if kid in line][0].split()
    assert row[1] == "alice" and row[2] == "python3"
    # The category works too.
    assert kid in cluster.kubectl("get", "kernelkeeper", "-n", ns).stdout


def test_explain_is_useful(cluster):
    out = cluster.kubectl("explain", "ks.spec").stdout
    assert "kernelSpec" in out and "Name of a Jupyter kernel spec" in out


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("not-a-uuid", {"kernelSpec": "python3"}, "metadata.name must be a lower-case UUID"),
        (None, {"username": "bob"}, "spec.kernelSpec: Required value"),
        (None, {"kernelSpec": "python3", "env": {"1BAD": "x"}}, "spec.env names must match"),
        (None, {"kernelSpec": "python3", "env": {"KERNEL_X": "x" * (m.MAX_ENV_VALUE_LENGTH + 1)}},
         "spec.env.KERNEL_X: Too long"),
        (None, {"kernelSpec": "python3", "env": {f"KERNEL_{i}": "x" for i in range(m.MAX_ENV_ENTRIES + 1)}},
         "spec.env: Too many"),
        (None, {"kernelSpec": "python3", "idleTimeoutSeconds": -1}, "spec.idleTimeoutSeconds"),
    ],
    ids=["non-uuid-name", "missing-kernelSpec", "bad-env-name", "oversized-env-value",
         "too-many-env", "negative-timeout"],
)
def test_invalid_sessions_are_rejected_naming_the_field(cluster, ns, name, spec, expected):
    obj = {"apiVersion": m.API_VERSION, "kind": m.KIND,
           "metadata": {"name": name or m.new_kernel_id(), "namespace": ns}, "spec": spec}
    out = _apply(cluster, obj)
    assert out.returncode != 0
    assert expected in out.stderr, out.stderr


def test_kernel_spec_is_immutable(cluster, ns):
    kid = m.new_kernel_id()
    assert _apply(cluster, m.kernel_session(kid, namespace=ns, kernel_spec="python3")).returncode == 0
    out = _apply(cluster, m.kernel_session(kid, namespace=ns, kernel_spec="other"))
    assert out.returncode != 0 and "spec.kernelSpec is immutable" in out.stderr


def test_status_only_through_the_status_subresource(cluster, ns):
    api = client.CustomObjectsApi(cluster.api_client())
    kid = m.new_kernel_id()
    api.create_namespaced_custom_object(m.GROUP, m.VERSION, ns, m.PLURAL,
                                        m.kernel_session(kid, namespace=ns, kernel_spec="python3"))
    status = {"restarts": 3, "conditions": m.set_condition(
        None, status=False, reason=m.REASON_STARTING, message="starting", generation=1)}
    api.patch_namespaced_custom_object_status(m.GROUP, m.VERSION, ns, m.PLURAL, kid,
                                              {"status": status})
    obj = api.get_namespaced_custom_object(m.GROUP, m.VERSION, ns, m.PLURAL, kid)
    assert obj["status"]["restarts"] == 3
    # A write to the main resource ignores status but applies spec.
    obj["status"]["restarts"] = 99
    obj["spec"]["idleTimeoutSeconds"] = 5
    api.replace_namespaced_custom_object(m.GROUP, m.VERSION, ns, m.PLURAL, kid, obj)
    after = api.get_namespaced_custom_object(m.GROUP, m.VERSION, ns, m.PLURAL, kid)
    assert after["status"]["restarts"] == 3
    assert after["spec"]["idleTimeoutSeconds"] == 5
    assert after["metadata"]["generation"] == 2


def test_garbage_collection_deletes_owned_objects(cluster, ns):
    """kube-controller-manager's garbage collector at work: owner gone, dependents gone."""
    api = client.CustomObjectsApi(cluster.api_client())
    core = client.CoreV1Api(cluster.api_client())
    kid = m.new_kernel_id()
    owner = api.create_namespaced_custom_object(
        m.GROUP, m.VERSION, ns, m.PLURAL, m.kernel_session(kid, namespace=ns, kernel_spec="python3"))
    ref = client.V1OwnerReference(api_version=m.API_VERSION, kind=m.KIND, name=kid,
                                  uid=owner["metadata"]["uid"], controller=True,
                                  block_owner_deletion=True)
    cm_name = f"owned-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=cm_name, owner_references=[ref]), data={"a": "b"}))
    api.delete_namespaced_custom_object(m.GROUP, m.VERSION, ns, m.PLURAL, kid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_config_map(cm_name, ns)
        except client.ApiException as exc:
            assert exc.status == 404
            return
        time.sleep(0.25)
    pytest.fail("owned ConfigMap was not garbage-collected within 60s")


def test_kubectl_reports_server_version(cluster):
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.36")
