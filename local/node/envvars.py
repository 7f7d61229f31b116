"""A container's environment and command line, resolved the way the kubelet does it.

Order: envFrom sources, then `env` entries in order (each may use $(VAR) of the ones before it
and of the service variables), then the service variables that are not set yet. Command and
args are expanded with the final environment: $(VAR) is replaced when VAR is defined, kept as
written when it is not, and $$ is a literal $.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

# (kind, namespace, name) -> the object's data (Secret decoded, ConfigMap data + binaryData),
# or None when the object does not exist.
Fetch = Callable[[str, str, str], Awaitable[dict[str, bytes] | None]]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container cannot be configured yet (a missing Secret, ConfigMap or key).

    Like the kubelet's CreateContainerConfigError it is retried: the object may appear later.
    """


class SpecError(Exception):
    """The pod can never start as specified (retrying would not help): it fails, with `reason`."""

    def __init__(self, message: str, reason: str = "CreateContainerError") -> None:
        super().__init__(message)
        self.reason = reason


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : end]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def object_data(kind: str, obj: dict[str, Any]) -> dict[str, bytes]:
    """Secret or ConfigMap contents as bytes per key."""
    if kind == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}


def parse_quantity(q: str | int | float) -> Decimal:
    s = str(q).strip()
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", s)
    if not m or m.group(2) not in _SUFFIXES:
        raise SpecError(f"invalid quantity {q!r}")
    return Decimal(m.group(1)) * Decimal(_SUFFIXES[m.group(2)])


def field_value(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in simple:
        raise SpecError(f"unsupported fieldRef {path!r}")
    return str(simple[path])


def resource_value(container: dict[str, Any], ref: dict[str, Any],
                   allocatable: dict[str, str]) -> str:
    kind, _, res = ref.get("resource", "").partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(res)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(res)
    if value is None:
        # As the kubelet does: without a limit, the node's allocatable is the limit.
        value = allocatable.get(res, "0")
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


async def _source(fetch: Fetch, kind: str, ns: str, name: str, optional: bool) -> dict[str, str]:
    data = await fetch(kind, ns, name)
    if data is None:
        if optional:
            return {}
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    return {k: v.decode("utf-8", errors="replace") for k, v in data.items()}


async def resolve_env(pod: dict[str, Any], container: dict[str, Any], *, pod_ip: str,
                      host_ip: str, service_env: dict[str, str], fetch: Fetch,
                      allocatable: dict[str, str]) -> dict[str, str]:
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        if "configMapRef" in src:
            ref, kind = src["configMapRef"], "ConfigMap"
        elif "secretRef" in src:
            ref, kind = src["secretRef"], "Secret"
        else:
            raise SpecError("envFrom entry without configMapRef or secretRef")
        data = await _source(fetch, kind, ns, ref.get("name", ""), bool(ref.get("optional")))
        for key, value in data.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value

    def lookup(name: str) -> str | None:
        return env.get(name, service_env.get(name))

    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), lookup)
            continue
        vf = var["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in vf:
            env[name] = resource_value(container, vf["resourceFieldRef"], allocatable)
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "ConfigMap" if "configMapKeyRef" in vf else "Secret"
            ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
            optional = bool(ref.get("optional"))
            data = await _source(fetch, kind, ns, ref.get("name", ""), optional)
            key = ref.get("key", "")
            if key in data:
                env[name] = data[key]
            elif not optional:
                raise ConfigError(f"couldn't find key {key} in {kind} {ns}/{ref.get('name')}")
        else:
            raise SpecError(f"env {name}: unsupported valueFrom {sorted(vf)}")
    for key, value in service_env.items():
        env.setdefault(key, value)
    return env


def command_line(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        raise SpecError(
            f"container {container.get('name')!r} has no command: the process node runs the "
            "command as written on the host and cannot use an image's entrypoint",
            reason="MissingCommand")
    return [expand(str(a), env.get) for a in command + args]


def service_env(server_url: str) -> dict[str, str]:
    """KUBERNETES_SERVICE_* pointing at the real API server (the ClusterIP does not route here)."""
    from urllib.parse import urlparse

    u = urlparse(server_url)
    host = u.hostname or "127.0.0.1"
    port = str(u.port or (443 if u.scheme == "https" else 80))
    addr = f"tcp://{host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": addr,
        f"KUBERNETES_PORT_{port}_TCP": addr,
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": port,
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }
