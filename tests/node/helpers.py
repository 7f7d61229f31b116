"""Small helpers for the process-node tests: pod manifests as dicts, polling, reading."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")
PY = sys.executable


def wait_for(fn: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2,
             what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container that runs a Python script with the test's interpreter."""
    return {"name": name, "image": "python:3.11", "command": [PY, "-c", script], **extra}


def pod_manifest(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 5, **spec}}


def create_pod(core: client.CoreV1Api, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    core.create_namespaced_pod(ns, manifest)
    return wait_for(lambda: get_pod(core, ns, manifest["metadata"]["name"]), 30,
                    what="pod to exist")


def get_pod(core: client.CoreV1Api, ns: str, name: str) -> dict[str, Any] | None:
    try:
        resp = core.read_namespaced_pod(name, ns, _preload_content=False)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(resp.data)


def condition(pod: dict[str, Any] | None, type_: str) -> str | None:
    for c in ((pod or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c.get("status")
    return None


def wait_ready(core: client.CoreV1Api, ns: str, name: str, timeout: float = 90) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = get_pod(core, ns, name)
        return pod if condition(pod, "Ready") == "True" else None

    return wait_for(ready, timeout, what=f"pod {ns}/{name} Ready")


def wait_phase(core: client.CoreV1Api, ns: str, name: str, *phases: str,
               timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        pod = get_pod(core, ns, name)
        return pod if pod and (pod.get("status") or {}).get("phase") in phases else None

    return wait_for(check, timeout, what=f"pod {ns}/{name} phase in {phases}")


def container_status(pod: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for st in statuses:
        if name is None or st["name"] == name:
            return dict(st)
    return {}


def events(core: client.CoreV1Api, ns: str, pod: str) -> list[dict[str, Any]]:
    resp = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={pod}",
                                      _preload_content=False)
    return list(json.loads(resp.data).get("items") or [])


def wait_event(core: client.CoreV1Api, ns: str, pod: str, reason: str,
               contains: str = "", timeout: float = 60) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((e for e in events(core, ns, pod)
                     if e.get("reason") == reason and contains in (e.get("message") or "")), None)

    return wait_for(find, timeout, what=f"event {reason} ({contains!r}) on {ns}/{pod}")


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode(errors="replace")


def read_json(path: os.PathLike[str] | str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
