"""The KernelSession API in one place: names, schema, and status helpers.

Operator, gateway and tests take every group, version, field and condition name from
here, so a rename is a one-line change and the committed CRD YAML can be checked against
this module (``tests/unit/test_crd_model.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any, Required, TypedDict, cast

GROUP = "kernelkeeper.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "KernelSession"
PLURAL = "kernelsessions"
SINGULAR = "kernelsession"
SHORT_NAMES = ["ks"]
CATEGORIES = ["kernelkeeper"]
CRD_NAME = f"{PLURAL}.{GROUP}"

# Labels put on everything the operator creates for a session.
LABEL_KERNEL_ID = f"{GROUP}/kernel-id"
LABEL_USERNAME = f"{GROUP}/username"
LABEL_KERNEL_SPEC = f"{GROUP}/kernel-spec"
LABEL_COMPONENT = f"{GROUP}/component"
LABEL_ROLE = f"{GROUP}/role"

# The Secret that carries a session's HMAC key.
KEY_SECRET_SUFFIX = "-key"
KEY_SECRET_FIELD = "key"
# CurveZMQ: the kernel Pod's server key pair (Z85), in the same Secret. Whoever can read the
# Secret can reach the kernel; without the public key no handshake completes.
CURVE_PUBLIC_FIELD = "curve-public-key"
CURVE_SECRET_FIELD = "curve-secret-key"

# The five ZMQ channels, as named container ports (port names are at most 15 chars).
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
DEFAULT_PORTS = {"shell": 52001, "iopub": 52002, "stdin": 52003, "control": 52004, "hb": 52005}
SIGNATURE_SCHEME = "hmac-sha256"
TRANSPORT = "tcp"

CONDITION_READY = "Ready"

# Reasons for the Ready condition; users see them in `kubectl get ks`.
REASON_RUNNING = "KernelRunning"
REASON_STARTING = "Starting"
REASON_RESTARTING = "KernelRestarting"
REASON_POD_LOST = "PodLost"
REASON_UNKNOWN_SPEC = "UnknownKernelSpec"
REASON_INVALID_ENV = "InvalidEnv"
REASON_UNSCHEDULABLE = "Unschedulable"
# The kernel's image cannot be had (ErrImageNeverPull, ImagePullBackOff, ...); the message
# carries the kubelet's reason and words.
REASON_IMAGE_ERROR = "ImageError"
REASON_FAILED = "Failed"
REASON_CULLED = "Culled"
REASON_TERMINATING = "Terminating"

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_ENV_ENTRIES = 64
MAX_ENV_VALUE_LENGTH = 4096
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_UUID_RE = re.compile(UUID_PATTERN)


# ---------------------------------------------------------------- the objects, as typed dicts
# Wire form (camelCase, as the API server sends them). The schema below makes every field
# optional on the way in, so code reads them with .get(); the Kubernetes layer returns plain
# dicts, and `as_session` is where a KernelSession gets its type.


class ObjectMeta(TypedDict, total=False):
    name: Required[str]  # every object the API server returns has both
    namespace: Required[str]
    uid: str
    resourceVersion: str
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[dict[str, Any]]
    creationTimestamp: str
    deletionTimestamp: str


class Condition(TypedDict, total=False):
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    observedGeneration: int | None
    lastTransitionTime: str


class ConnectionStatus(TypedDict, total=False):
    ip: str
    transport: str
    signatureScheme: str
    shellPort: int
    iopubPort: int
    stdinPort: int
    controlPort: int
    hbPort: int


class KeySecretRef(TypedDict, total=False):
    name: str
    key: str


class ReplicaActivity(TypedDict, total=False):
    connections: int
    executionState: str
    lastActivity: str
    heartbeat: str


class Activity(TypedDict, total=False):
    lastActivity: str
    executionState: str
    replicas: dict[str, ReplicaActivity]


class JournalSpec(TypedDict, total=False):
    maxMessages: int
    maxBytes: int


class KernelSessionSpec(TypedDict, total=False):
    kernelSpec: str
    username: str
    env: dict[str, str]
    idleTimeoutSeconds: int
    resources: dict[str, dict[str, str]]
    journal: JournalSpec


class KernelSessionStatus(TypedDict, total=False):
    observedGeneration: int
    conditions: list[Condition]
    podName: str
    podIP: str
    connection: ConnectionStatus
    keySecretRef: KeySecretRef
    restarts: int
    startedAt: str
    culledAt: str
    activity: Activity
    kopf: dict[str, Any]


class KernelSession(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Required[ObjectMeta]
    spec: KernelSessionSpec
    status: KernelSessionStatus


def as_session(obj: Mapping[str, Any]) -> KernelSession:
    """A KernelSession from the API server's JSON (the one place the type is asserted)."""
    if obj.get("kind", KIND) != KIND or not isinstance(obj.get("metadata"), dict):
        raise ValueError(f"not a {KIND}: {str(obj)[:200]}")
    return cast(KernelSession, obj)


def is_kernel_id(name: str) -> bool:
    """A kernel id is a lower-case hyphenated UUID, as jupyter_server routes them."""
    return bool(_UUID_RE.match(name))


def owner(obj: KernelSession) -> str:
    """The user the kernel belongs to: `spec.username` ("" for none; only admins see it)."""
    return str((obj.get("spec") or {}).get("username") or "")


def new_kernel_id() -> str:
    return str(uuid.uuid4())


def key_secret_name(kernel_id: str) -> str:
    return f"kernel-{kernel_id}{KEY_SECRET_SUFFIX}"


def pod_name(kernel_id: str) -> str:
    return f"kernel-{kernel_id}"


def format_time(value: dt.datetime | None = None, *, micro: bool = False) -> str:
    """`value` (default now) as RFC 3339 in UTC with a literal Z, the way Kubernetes writes times.

    Seconds precision by default, as `date-time` fields such as a condition's lastTransitionTime
    are written; `micro` gives the six fractional digits of a MicroTime (a Lease's renewTime)
    and of activity times, which jupyter_server parses with ``%Y-%m-%dT%H:%M:%S.%fZ``.
    """
    value = dt.datetime.now(dt.UTC) if value is None else value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time as an aware datetime; None if absent or not a time.

    Lenient on purpose: status fields are written by other processes (and other versions), and
    one malformed stamp must not break whoever reads the object.
    """
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------- status helpers


def get_condition(status: KernelSessionStatus | None,
                  ctype: str = CONDITION_READY) -> Condition | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def set_condition(
    conditions: list[Condition] | None,
    *,
    ctype: str = CONDITION_READY,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[Condition]:
    """Return a new conditions list with `ctype` set.

    lastTransitionTime only moves when the status flips, as the API conventions ask.
    """
    value = "True" if status else "False"
    old = next((c for c in conditions or [] if c.get("type") == ctype), None)
    stamp = now or format_time()
    if old is not None and old.get("status") == value:
        stamp = old.get("lastTransitionTime", stamp)
    fresh = Condition(type=ctype, status=value, reason=reason, message=message,
                      observedGeneration=generation, lastTransitionTime=stamp)
    out = [fresh if c is old else Condition(**c) for c in conditions or []]
    if old is None:
        out.append(fresh)
    return out


def is_ready(obj: KernelSession) -> bool:
    cond = get_condition(obj.get("status"))
    return bool(cond and cond.get("status") == "True")


def connection_info(status: KernelSessionStatus, key: bytes | str, *,
                    curve_public: str = "", curve_secret: str = "") -> dict[str, Any]:
    """A jupyter_client connection dict from status.connection and the session key (and the
    Curve keys, as jupyter_client reads them from a connection file, when given)."""
    conn = status["connection"]
    curve = {name: value for name, value in (("curve_publickey", curve_public),
                                             ("curve_secretkey", curve_secret)) if value}
    return {
        **curve,
        "ip": conn["ip"],
        "transport": conn.get("transport", TRANSPORT),
        "signature_scheme": conn.get("signatureScheme", SIGNATURE_SCHEME),
        "key": key.decode() if isinstance(key, bytes) else key,
        "shell_port": conn["shellPort"],
        "iopub_port": conn["iopubPort"],
        "stdin_port": conn["stdinPort"],
        "control_port": conn["controlPort"],
        "hb_port": conn["hbPort"],
    }


def connection_from_secret(status: KernelSessionStatus,
                           data: Mapping[str, str]) -> dict[str, Any]:
    """connection_info() from the key Secret's (base64) data, Curve keys included: what a
    direct jupyter_client needs to reach the kernel Pod."""
    def field(name: str) -> str:
        raw = data.get(name)
        return base64.b64decode(raw).decode() if raw else ""

    return connection_info(status, field(KEY_SECRET_FIELD),
                           curve_public=field(CURVE_PUBLIC_FIELD),
                           curve_secret=field(CURVE_SECRET_FIELD))


def connection_status(ip: str, ports: dict[str, int]) -> ConnectionStatus:
    return ConnectionStatus(
        ip=ip, transport=TRANSPORT, signatureScheme=SIGNATURE_SCHEME,
        shellPort=ports["shell"], iopubPort=ports["iopub"], stdinPort=ports["stdin"],
        controlPort=ports["control"], hbPort=ports["hb"],
    )


def kernel_session(
    kernel_id: str,
    *,
    namespace: str,
    kernel_spec: str,
    username: str = "",
    env: dict[str, str] | None = None,
    idle_timeout_seconds: int | None = None,
) -> KernelSession:
    """A KernelSession manifest as a structured object (never templated text)."""
    spec = KernelSessionSpec(kernelSpec=kernel_spec, username=username, env=dict(env or {}))
    if idle_timeout_seconds is not None:
        spec["idleTimeoutSeconds"] = idle_timeout_seconds
    return KernelSession(
        apiVersion=API_VERSION,
        kind=KIND,
        metadata=ObjectMeta(
            name=kernel_id,
            namespace=namespace,
            labels={LABEL_USERNAME: label_value(username),
                    LABEL_KERNEL_SPEC: label_value(kernel_spec)},
        ),
        spec=spec,
    )


_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]")


def label_value(value: str) -> str:
    """Squash a free-form string into a valid label value (63 chars, alnum at both ends)."""
    cleaned = _LABEL_BAD.sub("_", value)[:63].strip("._-")
    return cleaned


# ---------------------------------------------------------------- the CRD itself


def _str(desc: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": desc, **extra}


def _int(desc: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": desc, **extra}


def _quantity_map(desc: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": desc,
        "maxProperties": 8,
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        },
    }


def _spec_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "What kernel the user asked for. Immutable except idleTimeoutSeconds.",
        "required": ["kernelSpec"],
        "properties": {
            "kernelSpec": _str(
                "Name of a Jupyter kernel spec known to the operator (for example python3).",
                minLength=1,
                maxLength=128,
                pattern=r"^[A-Za-z0-9._-]+$",
            ),
            "username": _str(
                "The user the kernel belongs to: with per-user tokens, the gateway sets it to the "
                "authenticated user and shows the kernel to that user only (and to admins). "
                "Immutable.", maxLength=253),
            "env": {
                "type": "object",
                "description": (
                    "Environment for the kernel. Names must match "
                    f"{ENV_NAME_PATTERN}; the operator passes only allow-listed names "
                    "(KERNEL_* and configured ones)."
                ),
                "maxProperties": MAX_ENV_ENTRIES,
                "additionalProperties": {"type": "string", "maxLength": MAX_ENV_VALUE_LENGTH},
                "x-kubernetes-validations": [
                    {
                        "rule": f"self.all(k, k.matches('{ENV_NAME_PATTERN}'))",
                        "message": f"spec.env names must match {ENV_NAME_PATTERN}",
                    }
                ],
            },
            "idleTimeoutSeconds": _int(
                "Cull the kernel after this many seconds without activity (0 = never). "
                "Defaults to the operator's setting.",
                minimum=0,
                maximum=31536000,
            ),
            "resources": {
                "type": "object",
                "description": "Overrides for the kernel container's resources.",
                "properties": {
                    "requests": _quantity_map("Resource requests, e.g. cpu: 500m."),
                    "limits": _quantity_map("Resource limits, e.g. memory: 2Gi."),
                },
            },
            "journal": {
                "type": "object",
                "description": (
                    "Bounds of the kernel Pod's output journal, from which a client that "
                    "reconnects (to any gateway replica) gets what it missed. The oldest "
                    "messages go first; a client that missed more is told how many were lost. "
                    "Defaults: 10000 messages, 32 MiB."
                ),
                "properties": {
                    "maxMessages": _int("Messages the journal keeps.", minimum=10,
                                        maximum=1000000),
                    "maxBytes": _int("Bytes the journal keeps (64 KiB to 1 GiB).",
                                     minimum=65536, maximum=1073741824),
                },
            },
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.kernelSpec == oldSelf.kernelSpec",
                "message": "spec.kernelSpec is immutable",
            },
            {
                # Absent and "" are one owner (none); anything else may never change.
                "rule": "(has(self.username) ? self.username : '') == "
                        "(has(oldSelf.username) ? oldSelf.username : '')",
                "message": "spec.username is immutable: it is the kernel's owner",
            },
        ],
    }


def _status_schema() -> dict[str, Any]:
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    return {
        "type": "object",
        "description": "Observed state, written by the operator and (activity) by gateways.",
        "properties": {
            "observedGeneration": _int("The spec generation this status was computed from."),
            "conditions": {
                "type": "array",
                "description": "Ready is True only when a client can execute code now.",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {
                    "type": "object",
                    "required": ["type", "status"],
                    "properties": {
                        "type": _str("Condition type, e.g. Ready."),
                        "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
                        "reason": _str("Machine-readable CamelCase reason."),
                        "message": _str("What happened, for humans."),
                        "lastTransitionTime": _str("When status last changed.", format="date-time"),
                        "observedGeneration": _int("Generation this condition reflects."),
                    },
                },
            },
            "podName": _str("The kernel Pod currently serving this session."),
            "podIP": _str("IP of that Pod."),
            "connection": {
                "type": "object",
                "description": "How to reach the kernel over ZMQ (the key is in keySecretRef).",
                "properties": {
                    "ip": _str("Pod IP the kernel listens on."),
                    "transport": _str("ZMQ transport.", enum=["tcp"]),
                    "signatureScheme": _str("Message signing scheme."),
                    **{f"{ch}Port": dict(port) for ch in CHANNELS},
                },
            },
            "keySecretRef": {
                "type": "object",
                "description": "The Secret holding the session's HMAC key.",
                "properties": {"name": _str("Secret name."), "key": _str("Data key.")},
            },
            "restarts": _int("Kernel restarts (in place or with a new Pod).", minimum=0),
            "startedAt": _str("When the kernel first became Ready.", format="date-time"),
            "culledAt": _str("When the operator culled the session.", format="date-time"),
            "activity": {
                "type": "object",
                "description": "Kernel activity reported by gateway replicas at a bounded rate.",
                "properties": {
                    "lastActivity": _str("Latest activity any replica saw.", format="date-time"),
                    "executionState": _str("Latest execution state (idle, busy, ...)."),
                    "replicas": {
                        "type": "object",
                        "description": "Per gateway replica: connections, state, heartbeat.",
                        "maxProperties": 64,
                        "additionalProperties": {
                            "type": "object",
                            "properties": {
                                "connections": _int("Open websockets.", minimum=0),
                                "executionState": _str("State this replica last saw."),
                                "lastActivity": _str("Activity seen by it.", format="date-time"),
                                "heartbeat": _str("When the replica wrote this.", format="date-time"),
                            },
                        },
                    },
                },
            },
            "kopf": {
                "type": "object",
                "description": "Operator framework bookkeeping.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
    }


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "User", "type": "string", "jsonPath": ".spec.username"},
    {"name": "Kernel-Spec", "type": "string", "jsonPath": ".spec.kernelSpec"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
    {"name": "Last-Activity", "type": "date", "jsonPath": ".status.activity.lastActivity"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition, as committed in crds/kernelsession.yaml."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "A Jupyter kernel. The name is the kernel id (a UUID); the "
                                "operator runs it as a Pod with its key in a Secret."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _spec_schema(),
                                "status": _status_schema(),
                            },
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"self.metadata.name.matches('{UUID_PATTERN}')",
                                    "messageExpression": (
                                        "'metadata.name must be a lower-case UUID (the kernel id), "
                                        "got: ' + self.metadata.name"
                                    ),
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }
