"""Pod and Secret rendering and the env allow-list (pure functions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract
from kernelkeeper.kernel.specs import KernelSpec
from kernelkeeper.operator import render
from kernelkeeper.operator.settings import OperatorConfig

KID = "0b7cbd8e-58a5-4e0f-9a4b-6c7e0d3c2a11"


def _ks(**spec) -> dict:
    ks = crd.kernel_session(KID, namespace="ns1", kernel_spec="python3", username="bob",
                            env=spec.pop("env", {}))
    ks["spec"].update(spec)
    ks["metadata"]["uid"] = "uid-1"
    return ks


def _spec(**pod) -> KernelSpec:
    data = {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Py", "env": {"SPEC_VAR": "1", "KERNELKEEPER_KEY": "nope"}}
    return KernelSpec("python3", Path("/nonexistent"), data, pod)


CFG = OperatorConfig(launcher_command=("/venv/bin/python", "-m", "kernelkeeper.kernel"),
                     identity="t", env_allow=("LANG",))


def test_env_allow_list():
    assert render.check_env({"KERNEL_X": "1", "LANG": "C"}, ["LANG"]) == {"KERNEL_X": "1",
                                                                           "LANG": "C"}
    with pytest.raises(render.InvalidEnv) as err:
        render.check_env({"PATH": "/x", "KERNELKEEPER_POD_IP": "1.2.3.4", "KERNEL_OK": "1"},
                         ["LANG"])
    msg = str(err.value)
    assert "KERNELKEEPER_POD_IP, PATH" in msg and "KERNEL_*, LANG" in msg
    assert not render.env_allowed("KERNELKEEPER_X", ["KERNELKEEPER_X"])


def test_reserved_names_cannot_be_allow_listed():
    with pytest.raises(ValueError):
        OperatorConfig(env_allow=("KERNELKEEPER_KEY",), identity="t")


def test_secret():
    secret = render.render_secret(_ks(), "k" * 64)
    assert secret["metadata"]["name"] == crd.key_secret_name(KID)
    assert secret["stringData"] == {crd.KEY_SECRET_FIELD: "k" * 64}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert secret["metadata"]["labels"][crd.LABEL_COMPONENT] == render.COMPONENT_KEY
    assert len(render.new_key()) == 64 and render.new_key() != render.new_key()


def test_pod_shape():
    ks = _ks(env={"KERNEL_LANG": "fr", "LANG": "C"}, resources={"limits": {"memory": "4Gi"}})
    spec = _spec(image="img:1", resources={"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
                 nodeSelector={"pool": "kernels"},
                 tolerations=[{"key": "dedicated", "operator": "Exists"}])
    pod = render.render_pod(ks, spec, CFG, user_env={"KERNEL_LANG": "fr", "LANG": "C"},
                            incarnation=2, restarts_base=5)
    meta, pspec = pod["metadata"], pod["spec"]
    assert meta["name"] == f"kernel-{KID}-2"
    assert meta["annotations"] == {render.ANN_INCARNATION: "2", render.ANN_RESTARTS_BASE: "5"}
    assert meta["labels"] == {crd.LABEL_KERNEL_ID: KID, crd.LABEL_USERNAME: "bob",
                              crd.LABEL_KERNEL_SPEC: "python3",
                              crd.LABEL_COMPONENT: render.COMPONENT_KERNEL}
    owner = meta["ownerReferences"][0]
    assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
    assert owner["kind"] == crd.KIND and owner["uid"] == "uid-1"
    assert pspec["restartPolicy"] == "Never"
    assert pspec["automountServiceAccountToken"] is False
    assert pspec["nodeSelector"] == {"pool": "kernels"}
    keys = [t["key"] for t in pspec["tolerations"]]
    assert keys == ["dedicated", "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    (c,) = pspec["containers"]
    assert c["image"] == "img:1"
    assert c["command"] == ["/venv/bin/python", "-m", "kernelkeeper.kernel"]
    assert c["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "4Gi"}}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {**crd.DEFAULT_PORTS, contract.HEALTH_PORT_NAME: contract.HEALTH_PORT,
                     contract.JOURNAL_PORT_NAME: contract.JOURNAL_PORT,
                     contract.REPORT_PORT_NAME: contract.REPORT_PORT}
    probe = c["readinessProbe"]["httpGet"]
    assert probe == {"path": contract.HEALTH_PATH, "port": contract.HEALTH_PORT_NAME}
    env = {e["name"]: e for e in c["env"]}
    assert len(env) == len(c["env"]), "no duplicate names"
    assert env["KERNEL_ID"]["value"] == KID and env["KERNEL_USERNAME"]["value"] == "bob"
    assert env["KERNEL_LANG"]["value"] == "fr" and env["LANG"]["value"] == "C"
    assert env["SPEC_VAR"]["value"] == "1"
    assert env[contract.ENV_KEY] == {"name": contract.ENV_KEY, "valueFrom": {"secretKeyRef": {
        "name": crd.key_secret_name(KID), "key": crd.KEY_SECRET_FIELD}}}
    assert env[contract.ENV_POD_IP]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert json.loads(env[contract.ENV_ARGV]["value"]) == spec.argv
    assert json.loads(env[contract.ENV_PORTS]["value"]) == crd.DEFAULT_PORTS


def test_pod_with_service_account_and_default_image():
    pod = render.render_pod(_ks(), _spec(serviceAccountName="kernels"), CFG, user_env={},
                            incarnation=0, restarts_base=0)
    assert pod["spec"]["serviceAccountName"] == "kernels"
    assert "automountServiceAccountToken" not in pod["spec"]
    assert pod["spec"]["containers"][0]["image"] == CFG.default_image


def test_pod_names_and_incarnations():
    assert render.incarnation_of(render.pod_name(KID, 7), KID) == 7
    assert render.incarnation_of(f"kernel-{KID}", KID) is None
    assert render.incarnation_of(None, KID) is None
    assert render.incarnation_of(f"kernel-{KID}-x", KID) is None


def _render(spec: KernelSpec, user_env: dict[str, str] | None = None) -> dict:
    return render.render_pod(_ks(), spec, CFG, user_env=user_env or {}, incarnation=0,
                             restarts_base=0)


def test_pod_is_restricted_with_a_read_only_root_and_writable_home_and_tmp():
    pod = _render(_spec())
    pspec = pod["spec"]
    (c,) = pspec["containers"]
    # The operator's own image: its user stated, so the kubelet need not trust the image.
    assert pspec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000,
                                        "runAsGroup": 0,
                                        "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True}
    assert pspec["volumes"] == [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    assert c["volumeMounts"] == [{"name": "home", "mountPath": "/home/jovyan"},
                                 {"name": "tmp", "mountPath": "/tmp"}]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HOME"] == "/home/jovyan"
    assert "hostNetwork" not in pspec and "hostPID" not in pspec and "hostIPC" not in pspec
    assert not any("hostPath" in v for v in pspec["volumes"])
    assert "ports" not in c or not any("hostPort" in p for p in c["ports"])


def test_another_image_keeps_its_user_unless_the_spec_names_one():
    pod = _render(_spec(image="other:1"))
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True,
                                              "seccompProfile": {"type": "RuntimeDefault"}}
    pod = _render(_spec(image="other:1", runAsUser=1234, runAsGroup=100))
    sc = pod["spec"]["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (1234, 100, True)
    pod = _render(_spec(runAsUser=2000))  # the default image, another uid: group stays 0
    sc = pod["spec"]["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (2000, 0)


def test_a_kernel_spec_may_opt_out_of_the_read_only_root():
    pod = _render(_spec(readOnlyRootFilesystem=False))
    (c,) = pod["spec"]["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is False
    # Still restricted; the image's home and /tmp are used as they are, HOME is the image's.
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "volumes" not in pod["spec"] and "volumeMounts" not in c
    assert "HOME" not in {e["name"] for e in c["env"]}
    # Anything but an explicit false keeps the root read-only.
    assert _render(_spec(readOnlyRootFilesystem=True))["spec"]["volumes"]


@pytest.mark.parametrize(("spec_home", "user_home", "mounted"), [
    (None, None, "/home/jovyan"),
    ("/home/alice/", None, "/home/alice"),
    ("/home/alice", "/work/bob", "/work/bob"),  # an allow-listed session HOME wins
    ("/", None, "/home/jovyan"),  # no emptyDir over the whole root
    ("/tmp/home", None, "/home/jovyan"),  # nor inside /tmp's own mount
    ("relative", None, "/home/jovyan"),
])
def test_home_is_mounted_where_home_points(spec_home, user_home, mounted):
    spec = _spec()
    if spec_home is not None:
        spec.spec["env"]["HOME"] = spec_home
    user_env = {"HOME": user_home} if user_home else {}
    (c,) = _render(spec, user_env)["spec"]["containers"]
    assert c["volumeMounts"][0] == {"name": "home", "mountPath": mounted}
    assert [e["value"] for e in c["env"] if e["name"] == "HOME"] == [mounted]


def test_journal_bounds_reach_the_launcher_only_when_the_session_sets_them():
    def env_of(ks: dict) -> dict[str, str]:
        pod = render.render_pod(ks, _spec(), CFG, user_env={}, incarnation=0, restarts_base=0)
        return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}

    plain = env_of(_ks())
    assert contract.ENV_JOURNAL_MAX_MESSAGES not in plain  # the launcher's defaults apply
    bounded = env_of(_ks(journal={"maxMessages": 50, "maxBytes": 65536}))
    assert bounded[contract.ENV_JOURNAL_MAX_MESSAGES] == "50"
    assert bounded[contract.ENV_JOURNAL_MAX_BYTES] == "65536"


def test_curve_keys_in_the_secret_and_optional_in_the_pod():
    public, secret = render.new_curve_keys()
    assert len(public) == len(secret) == 40 and render.new_curve_keys()[0] != public
    data = render.render_secret(_ks(), "k" * 64, (public, secret))["stringData"]
    assert data == {crd.KEY_SECRET_FIELD: "k" * 64, crd.CURVE_PUBLIC_FIELD: public,
                    crd.CURVE_SECRET_FIELD: secret}
    assert render.wants_curve(_spec(), CFG)
    assert not render.wants_curve(_spec(curve=False), CFG)
    assert not render.wants_curve(_spec(), OperatorConfig(identity="t", curve=False))
    pod = render.render_pod(_ks(), _spec(), CFG, user_env={}, incarnation=0, restarts_base=0)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    for name, field in ((contract.ENV_CURVE_PUBLIC_KEY, crd.CURVE_PUBLIC_FIELD),
                        (contract.ENV_CURVE_SECRET_KEY, crd.CURVE_SECRET_FIELD)):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": crd.key_secret_name(KID), "key": field, "optional": True}
