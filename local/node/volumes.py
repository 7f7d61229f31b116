"""Pod volumes as host directories, and the bind mounts that put them at their mountPath.

emptyDir is a per-pod directory; secret, configMap, downwardAPI and projected volumes (with the
service account token the API server injects into every pod) are files written into one;
hostPath is the host path itself. Every other volume type is refused with a clear reason
instead of being skipped: a pod that silently lacks a volume is worse than one that fails.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelkeeper.local.node.envvars import (
    ConfigError,
    Fetch,
    SpecError,
    expand,
    field_value,
    resource_value,
)

SUPPORTED = ("emptyDir", "secret", "configMap", "downwardAPI", "projected", "hostPath")
# (namespace, serviceAccountName, audience, expirationSeconds, pod) -> (token, expiry epoch)
TokenRequest = Callable[[str, str, str | None, int, dict[str, Any]], Awaitable[tuple[str, float]]]


@dataclass
class Volumes:
    paths: dict[str, Path] = field(default_factory=dict)
    read_only: set[str] = field(default_factory=set)  # API data volumes are always read-only
    refresh_at: float | None = None  # when projected tokens must be renewed (epoch seconds)


def volume_type(vol: dict[str, Any]) -> str:
    kinds = [k for k in vol if k != "name"]
    return kinds[0] if kinds else "<none>"


def check_supported(pod: dict[str, Any]) -> None:
    """Refuse the pod up front if any volume or mount cannot be provided."""
    for vol in pod["spec"].get("volumes") or []:
        kind = volume_type(vol)
        if kind not in SUPPORTED:
            raise SpecError(f'volume "{vol.get("name")}": {kind} volumes are not supported by the '
                            f"process node (supported: {', '.join(SUPPORTED)})", reason="UnsupportedVolume")
        if kind == "projected":
            for src in vol["projected"].get("sources") or []:
                skind = volume_type(dict(src, name=""))
                if skind not in ("secret", "configMap", "downwardAPI", "serviceAccountToken"):
                    raise SpecError(f'volume "{vol.get("name")}": projected {skind} sources are '
                                    "not supported by the process node", reason="UnsupportedVolume")
    names = {v.get("name") for v in pod["spec"].get("volumes") or []}
    for c in (pod["spec"].get("initContainers") or []) + pod["spec"].get("containers", []):
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in names:
                raise SpecError(f'container "{c.get("name")}": volumeMount "{m.get("name")}" '
                                "names no volume of the pod")
        if c.get("volumeDevices"):
            raise SpecError(f'container "{c.get("name")}": volumeDevices are not supported')


def _safe_join(root: Path, rel: str) -> Path:
    norm = posixpath.normpath(rel)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise SpecError(f"volume item path {rel!r} must be relative and stay inside the volume")
    return root / norm


def _write_file(root: Path, rel: str, data: bytes, mode: int) -> None:
    path = _safe_join(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


async def _object_files(fetch: Fetch, kind: str, ns: str, src: dict[str, Any], root: Path,
                        default_mode: int, what: str) -> None:
    name = src.get("secretName") if kind == "Secret" else src.get("name")
    data = await fetch(kind, ns, name or "")
    optional = bool(src.get("optional"))
    if data is None:
        if optional:
            return
        raise ConfigError(f'MountVolume.SetUp failed for volume "{what}": '
                          f'{kind.lower()} "{name}" not found')
    items = src.get("items")
    if not items:
        for key, value in data.items():
            _write_file(root, key, value, default_mode)
        return
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise ConfigError(f'MountVolume.SetUp failed for volume "{what}": couldn\'t find '
                              f"key {key} in {kind} {ns}/{name}")
        _write_file(root, item.get("path") or key, data[key], item.get("mode") or default_mode)


def _downward_files(pod: dict[str, Any], src: dict[str, Any], root: Path, default_mode: int,
                    pod_ip: str, host_ip: str, allocatable: dict[str, str]) -> None:
    containers = {c["name"]: c for c in pod["spec"].get("containers", [])}
    for item in src.get("items") or []:
        if "fieldRef" in item:
            path = item["fieldRef"].get("fieldPath", "")
            if path in ("metadata.labels", "metadata.annotations"):
                values = pod["metadata"].get(path.split(".")[1]) or {}
                value = "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
            else:
                value = field_value(pod, path, pod_ip, host_ip)
        elif "resourceFieldRef" in item:
            ref = item["resourceFieldRef"]
            container = containers.get(ref.get("containerName") or "") or {}
            value = resource_value(container, ref, allocatable)
        else:
            raise SpecError(f"downwardAPI item {item.get('path')!r} has no fieldRef")
        _write_file(root, item["path"], value.encode(), item.get("mode") or default_mode)


def _host_path(vol: dict[str, Any]) -> Path:
    spec = vol["hostPath"]
    path = Path(spec.get("path", ""))
    kind = spec.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind == "Directory" and not path.is_dir():
        raise ConfigError(f'hostPath volume "{vol["name"]}": {path} is not a directory')
    elif kind == "File" and not path.is_file():
        raise ConfigError(f'hostPath volume "{vol["name"]}": {path} is not a file')
    elif kind in ("Socket", "CharDevice", "BlockDevice") and not path.exists():
        raise ConfigError(f'hostPath volume "{vol["name"]}": {path} does not exist')
    return path


async def prepare(pod: dict[str, Any], pod_dir: Path, *, fetch: Fetch, token: TokenRequest,
                  pod_ip: str, host_ip: str, allocatable: dict[str, str]) -> Volumes:
    """Create (or refresh) every volume of the pod under pod_dir/volumes."""
    ns = pod["metadata"]["namespace"]
    out = Volumes()
    for vol in pod["spec"].get("volumes") or []:
        name = vol["name"]
        kind = volume_type(vol)
        if kind == "hostPath":
            out.paths[name] = _host_path(vol)
            continue
        root = pod_dir / "volumes" / name
        root.mkdir(parents=True, exist_ok=True)
        out.paths[name] = root
        spec = vol[kind] or {}
        mode = int(spec.get("defaultMode") or 0o644)
        if kind != "emptyDir":
            out.read_only.add(name)
        if kind in ("secret", "configMap"):
            await _object_files(fetch, "Secret" if kind == "secret" else "ConfigMap", ns, spec,
                                root, mode, name)
        elif kind == "downwardAPI":
            _downward_files(pod, spec, root, mode, pod_ip, host_ip, allocatable)
        elif kind == "projected":
            for src in spec.get("sources") or []:
                if "secret" in src:
                    await _object_files(fetch, "Secret", ns, dict(src["secret"],
                                        secretName=src["secret"].get("name")), root, mode, name)
                elif "configMap" in src:
                    await _object_files(fetch, "ConfigMap", ns, src["configMap"], root, mode,
                                        name)
                elif "downwardAPI" in src:
                    _downward_files(pod, src["downwardAPI"], root, mode, pod_ip, host_ip,
                                    allocatable)
                elif "serviceAccountToken" in src:
                    sat = src["serviceAccountToken"]
                    ttl = int(sat.get("expirationSeconds") or 3600)
                    value, expiry = await token(ns, pod["spec"].get("serviceAccountName")
                                                or "default", sat.get("audience"), ttl, pod)
                    _write_file(root, sat.get("path") or "token", value.encode(), mode)
                    # Renew at 80% of the lifetime, as the kubelet does.
                    due = time.time() + 0.8 * max(expiry - time.time(), 0)
                    out.refresh_at = due if out.refresh_at is None else min(out.refresh_at, due)
    return out


def mounts_for(container: dict[str, Any], volumes: Volumes,
               env: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(host source, mountPath, read-only) for one container, parents before children."""
    out = []
    for m in container.get("volumeMounts") or []:
        src = volumes.paths[m["name"]]
        sub = m.get("subPath") or ""
        if m.get("subPathExpr"):
            sub = expand(m["subPathExpr"], env.get)
        if sub:
            src = _safe_join(src, sub)
            if not src.exists():
                src.mkdir(parents=True, exist_ok=True)
        out.append((str(src), posixpath.normpath(m["mountPath"]), bool(m.get("readOnly")) or m["name"] in volumes.read_only))
    return sorted(out, key=lambda t: t[1].count("/"))
