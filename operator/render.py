"""KernelSession -> Secret and Pod manifests, as plain dicts (never templated text).

Everything here is pure: same inputs, same manifest. The handlers decide *when* to create
things; this module decides *what* they look like.
"""

from __future__ import annotations

import json
import posixpath
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import zmq

from kernelkeeper.crds import model as crd
from kernelkeeper.kernel import contract
from kernelkeeper.kernel.specs import KernelSpec
from kernelkeeper.operator.settings import OperatorConfig

ANN_INCARNATION = f"{crd.GROUP}/incarnation"
ANN_RESTARTS_BASE = f"{crd.GROUP}/restarts-base"
COMPONENT_KERNEL = "kernel"
COMPONENT_KEY = "kernel-key"
CONTAINER = "kernel"
USER_ENV_PREFIX = "KERNEL_"
# The kernelkeeper image runs as uid 1000, gid 0, home /home/jovyan (as Jupyter's docker-stacks
# images do); a kernel spec naming another image may say otherwise (runAsUser, runAsGroup).
IMAGE_UID = 1000
IMAGE_GID = 0
HOME_DIR = "/home/jovyan"
TMP_DIR = "/tmp"
VOLUME_HOME = "home"
VOLUME_TMP = "tmp"


class InvalidEnv(ValueError):
    """spec.env names a variable the operator may not pass to a kernel."""


def new_key() -> str:
    return secrets.token_hex(32)


def pod_name(kernel_id: str, incarnation: int) -> str:
    """Each replacement Pod gets a new name, so it can start while a lost one still terminates."""
    return f"{crd.pod_name(kernel_id)}-{incarnation}"


def incarnation_of(name: str | None, kernel_id: str) -> int | None:
    prefix = crd.pod_name(kernel_id) + "-"
    if not name or not name.startswith(prefix) or not name[len(prefix):].isdigit():
        return None
    return int(name[len(prefix):])


def env_allowed(name: str, allow: Iterable[str]) -> bool:
    if name.startswith(contract.RESERVED_PREFIX):
        return False
    return name.startswith(USER_ENV_PREFIX) or name in set(allow)


def check_env(env: Mapping[str, Any] | None, allow: Iterable[str]) -> dict[str, str]:
    """The session's env if every name is allowed; otherwise InvalidEnv saying what to fix."""
    env = dict(env or {})
    allow = tuple(allow)
    bad = sorted(n for n in env if not env_allowed(n, allow))
    if bad:
        allowed = "KERNEL_*" + "".join(f", {n}" for n in sorted(allow))
        raise InvalidEnv(
            f"spec.env names {', '.join(bad)} not allowed; allowed are {allowed} "
            f"(names starting with {contract.RESERVED_PREFIX} are reserved). "
            "Remove them and recreate the session."
        )
    return {k: str(v) for k, v in env.items()}


def labels(ks: crd.KernelSession, component: str) -> dict[str, str]:
    spec = ks.get("spec") or {}
    return {
        crd.LABEL_KERNEL_ID: ks["metadata"]["name"],
        crd.LABEL_USERNAME: crd.label_value(str(spec.get("username") or "")),
        crd.LABEL_KERNEL_SPEC: crd.label_value(str(spec.get("kernelSpec") or "")),
        crd.LABEL_COMPONENT: component,
    }


def owner_reference(ks: crd.KernelSession) -> dict[str, Any]:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "name": ks["metadata"]["name"],
        "uid": ks["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def new_curve_keys() -> tuple[str, str]:
    """A CurveZMQ (public, secret) key pair, Z85."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def wants_curve(spec: KernelSpec, cfg: OperatorConfig) -> bool:
    return cfg.curve and spec.pod.get("curve", True) is not False


def render_secret(ks: crd.KernelSession, key: str,
                  curve: tuple[str, str] | None = None) -> dict[str, Any]:
    kid = ks["metadata"]["name"]
    data = {crd.KEY_SECRET_FIELD: key}
    if curve is not None:
        data[crd.CURVE_PUBLIC_FIELD], data[crd.CURVE_SECRET_FIELD] = curve
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": crd.key_secret_name(kid),
            "namespace": ks["metadata"]["namespace"],
            "labels": labels(ks, COMPONENT_KEY),
            "ownerReferences": [owner_reference(ks)],
        },
        "type": "Opaque",
        "stringData": data,
    }


def _merge_resources(base: Mapping[str, Any] | None,
                     override: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        merged = {**((base or {}).get(part) or {}), **((override or {}).get(part) or {})}
        if merged:
            out[part] = {k: str(v) for k, v in merged.items()}
    return out


def _tolerations(spec: KernelSpec, cfg: OperatorConfig) -> list[dict[str, Any]]:
    given = [dict(t) for t in spec.pod.get("tolerations") or []]
    keys = {t.get("key") for t in given}
    # A kernel on a lost node is useless; move it sooner than the default 300 s.
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if taint not in keys:
            given.append({"key": taint, "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": cfg.node_loss_toleration})
    return given


def read_only_root(spec: KernelSpec) -> bool:
    """Kernel Pods get a read-only root filesystem unless their spec says
    ``"readOnlyRootFilesystem": false`` (an image whose kernel writes outside home and /tmp)."""
    return spec.pod.get("readOnlyRootFilesystem") is not False


def home_directory(spec: KernelSpec, user_env: Mapping[str, str]) -> str:
    """Where the writable home is mounted, and what HOME says: the env's HOME if it is a
    directory of its own, else /home/jovyan."""
    given = user_env.get("HOME") or (spec.spec.get("env") or {}).get("HOME")
    if not given or not posixpath.isabs(str(given)):
        return HOME_DIR
    home = posixpath.normpath(str(given))
    if home == "/" or home == TMP_DIR or home.startswith(TMP_DIR + "/"):
        return HOME_DIR
    return home


def security_contexts(spec: KernelSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pod and container securityContext passing the `restricted` Pod Security Standard.

    The user is the kernel spec's (runAsUser/runAsGroup); with the operator's own image it is
    that image's user, stated so the kubelet need not trust the image to be non-root. Another
    image's own non-root numeric USER is used as it is (runAsNonRoot makes the kubelet refuse
    an image that would run as root).
    """
    pod: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    user, group = spec.pod.get("runAsUser"), spec.pod.get("runAsGroup")
    if not spec.pod.get("image"):
        user = IMAGE_UID if user is None else user
        group = IMAGE_GID if group is None else group
    if user is not None:
        pod["runAsUser"] = int(user)
    if group is not None:
        pod["runAsGroup"] = int(group)
    container = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root(spec),
    }
    return pod, container


def _writable(home: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """emptyDir volumes and their mounts for what a kernel writes under a read-only root:
    HOME (IPython's profile and history, Jupyter's runtime and data dirs, pip --user,
    matplotlib's cache) and /tmp (the launcher's connection file, tempfile)."""
    volumes = [{"name": VOLUME_HOME, "emptyDir": {}}, {"name": VOLUME_TMP, "emptyDir": {}}]
    mounts = [{"name": VOLUME_HOME, "mountPath": home},
              {"name": VOLUME_TMP, "mountPath": TMP_DIR}]
    return volumes, mounts


def _env_list(ks: crd.KernelSession, spec: KernelSpec, cfg: OperatorConfig,
              user_env: Mapping[str, str], home: str | None) -> list[dict[str, Any]]:
    kid = ks["metadata"]["name"]
    kspec = ks.get("spec") or {}
    values: dict[str, str] = {}
    # The kernel spec's env is the admin's; the session's allow-listed env comes next.
    values.update({k: str(v) for k, v in (spec.spec.get("env") or {}).items()
                   if not k.startswith(contract.RESERVED_PREFIX)})
    values.update(user_env)
    if home is not None:
        values["HOME"] = home  # the writable mount; an image's HOME may be elsewhere
    values[contract.ENV_KERNEL_ID] = kid
    values[contract.ENV_USERNAME] = str(kspec.get("username") or user_env.get(contract.ENV_USERNAME)
                                        or "")
    values[contract.ENV_ARGV] = json.dumps(spec.argv)
    values[contract.ENV_PORTS] = json.dumps(crd.DEFAULT_PORTS, sort_keys=True)
    values[contract.ENV_HEALTH_PORT] = str(contract.HEALTH_PORT)
    values[contract.ENV_SPEC_NAME] = spec.name
    values[contract.ENV_MAX_RESTARTS] = str(cfg.launcher_max_crash_restarts)
    journal = kspec.get("journal") or {}
    if journal.get("maxMessages"):
        values[contract.ENV_JOURNAL_MAX_MESSAGES] = str(int(journal["maxMessages"]))
    if journal.get("maxBytes"):
        values[contract.ENV_JOURNAL_MAX_BYTES] = str(int(journal["maxBytes"]))
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env.append({"name": contract.ENV_POD_IP,
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    env.append({"name": contract.ENV_KEY,
                "valueFrom": {"secretKeyRef": {"name": crd.key_secret_name(kid),
                                               "key": crd.KEY_SECRET_FIELD}}})
    # Optional: a Secret made without Curve keys (an opted-out spec, or a session older than
    # Curve) starts a plain Pod; the gateway reads the same Secret and does the same.
    for name, field in ((contract.ENV_CURVE_PUBLIC_KEY, crd.CURVE_PUBLIC_FIELD),
                        (contract.ENV_CURVE_SECRET_KEY, crd.CURVE_SECRET_FIELD)):
        env.append({"name": name, "valueFrom": {"secretKeyRef": {
            "name": crd.key_secret_name(kid), "key": field, "optional": True}}})
    return env


def render_pod(ks: crd.KernelSession, spec: KernelSpec, cfg: OperatorConfig, *,
               user_env: Mapping[str, str], incarnation: int,
               restarts_base: int) -> dict[str, Any]:
    kid = ks["metadata"]["name"]
    pod_cfg = spec.pod
    ports = [{"name": ch, "containerPort": port, "protocol": "TCP"}
             for ch, port in crd.DEFAULT_PORTS.items()]
    ports.append({"name": contract.HEALTH_PORT_NAME, "containerPort": contract.HEALTH_PORT,
                  "protocol": "TCP"})
    ports.append({"name": contract.JOURNAL_PORT_NAME, "containerPort": contract.JOURNAL_PORT,
                  "protocol": "TCP"})
    ports.append({"name": contract.REPORT_PORT_NAME, "containerPort": contract.REPORT_PORT,
                  "protocol": "TCP"})
    pod_security, container_security = security_contexts(spec)
    home = home_directory(spec, user_env) if read_only_root(spec) else None
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": str(pod_cfg.get("image") or cfg.default_image),
        "imagePullPolicy": cfg.image_pull_policy,
        "command": list(cfg.launcher_command),
        "env": _env_list(ks, spec, cfg, user_env, home),
        "ports": ports,
        # Every second: a kernel is ready about 1 s after its start, and Ready waits for the
        # next probe. With 2 s, a start a few tens of milliseconds slower than the first
        # probe cost 2 s more (the bench's start figure came out as either 1.3 s or 3.3 s).
        "readinessProbe": {
            "httpGet": {"path": contract.HEALTH_PATH, "port": contract.HEALTH_PORT_NAME},
            "initialDelaySeconds": 1,
            "periodSeconds": 1,
            "timeoutSeconds": 2,
            "successThreshold": 1,
            "failureThreshold": 1,
        },
        "securityContext": container_security,
    }
    resources = _merge_resources(pod_cfg.get("resources"), (ks.get("spec") or {}).get("resources"))
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        # In-place kernel restarts are the launcher's job and a lost Pod is the operator's:
        # a kubelet restart loop in between would only hide failures from both.
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "containers": [container],
        "tolerations": _tolerations(spec, cfg),
        "securityContext": pod_security,
    }
    if home is not None:
        pod_spec["volumes"], container["volumeMounts"] = _writable(home)
    if pod_cfg.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = str(pod_cfg["serviceAccountName"])
    else:
        # User code runs in this Pod; it gets no API credentials unless the spec asks for them.
        pod_spec["automountServiceAccountToken"] = False
    if pod_cfg.get("nodeSelector"):
        pod_spec["nodeSelector"] = {str(k): str(v) for k, v in pod_cfg["nodeSelector"].items()}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(kid, incarnation),
            "namespace": ks["metadata"]["namespace"],
            "labels": labels(ks, COMPONENT_KERNEL),
            "annotations": {ANN_INCARNATION: str(incarnation),
                            ANN_RESTARTS_BASE: str(restarts_base)},
            "ownerReferences": [owner_reference(ks)],
        },
        "spec": pod_spec,
    }
