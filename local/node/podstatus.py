"""The pod status a kubelet would write, computed from what the node knows, and its writer.

``compute`` is a pure function of the pod worker's state. ``StatusWriter`` PATCHes
pods/<name>/status (strategic merge, uid precondition) only when the computed status differs
from the last one written, with a few concurrent writers so hundreds of pods do not queue
behind one slow request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from kernelkeeper.local.node.events import now_rfc3339
from kernelkeeper.local.node.kube import STRATEGIC_PATCH, Kube, KubeError

if TYPE_CHECKING:
    from kernelkeeper.local.node.pod import PodWorker

log = logging.getLogger(__name__)

OWN_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
STATUS_KEYS = ("phase", "conditions", "containerStatuses", "initContainerStatuses", "startTime",
               "hostIP", "hostIPs", "podIP", "podIPs", "reason", "message")


def phase(w: PodWorker) -> str:
    if w.failure is not None:
        return "Failed"
    if not w.record.init_done:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for r in w.runners.values():
        if "running" in r.state:
            running += 1
        elif "terminated" in r.state:
            stopped += 1
            succeeded += r.state["terminated"].get("exitCode") == 0
        elif r.rec.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if w.restart_policy == "Always":
            return "Running"
        if stopped == succeeded and all("terminated" in r.state for r in w.runners.values()):
            return "Succeeded"
        if w.restart_policy == "Never" and all("terminated" in r.state
                                                for r in w.runners.values()):
            return "Failed"
        return "Running"
    return "Pending"


def _container_status(r: Any, spec: dict[str, Any]) -> dict[str, Any]:
    st: dict[str, Any] = {
        "name": r.name,
        "image": spec.get("image") or "",
        "imageID": "",
        "ready": bool(r.rec.ready) and "running" in r.state,
        "started": bool(r.rec.started) and "running" in r.state,
        "restartCount": r.rec.restart_count,
        "state": r.state,
        "lastState": {"terminated": r.rec.last_terminated} if (
            r.rec.last_terminated and "terminated" not in r.state) else {},
    }
    if r.process is not None and r.process.pid:
        st["containerID"] = f"process://{r.process.pid}"
    return st


def _condition(w: PodWorker, type_: str, ok: bool, reason: str | None = None,
               message: str | None = None) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = w.condition_times.get(type_)
    if prev is None or prev[0] != status:
        w.condition_times[type_] = (status, now_rfc3339())
    c: dict[str, Any] = {"type": type_, "status": status,
                         "lastTransitionTime": w.condition_times[type_][1],
                         "lastProbeTime": None}
    gen = w.pod["metadata"].get("generation")
    if gen is not None:
        c["observedGeneration"] = gen
    # Explicit nulls: a strategic merge keeps a stale reason or message otherwise.
    c["reason"] = reason or None
    c["message"] = message or None
    return c


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def compute(w: PodWorker) -> dict[str, Any]:
    spec = w.pod["spec"]
    specs = {c["name"]: c for c in spec.get("containers", [])}
    init_specs = {c["name"]: c for c in spec.get("initContainers") or []}
    ph = phase(w)
    terminal = ph in ("Succeeded", "Failed")
    statuses = [_container_status(r, specs[n]) for n, r in w.runners.items()]
    if w.failure is not None:
        reason, message = w.failure
        for st in statuses:
            if "terminated" not in st["state"]:
                st["state"] = {"terminated": {"exitCode": 128, "reason": reason,
                                              "message": message}}
                st["ready"] = st["started"] = False
    all_ready = bool(statuses) and all(s["ready"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    if w.failure is not None:
        cr_reason, cr_msg = w.failure
    elif terminal:
        cr_reason, cr_msg = "PodCompleted", None
    else:
        cr_reason = None if all_ready else "ContainersNotReady"
        cr_msg = None if all_ready else f"containers with unready status: [{' '.join(not_ready)}]"
    existing = {c.get("type"): c for c in (w.pod.get("status") or {}).get("conditions") or []}
    gates_ok = all(existing.get(g["conditionType"], {}).get("status") == "True"
                   for g in spec.get("readinessGates") or [])
    ready = all_ready and gates_ok and not terminal
    ready_reason = cr_reason if not all_ready or terminal else (
        None if gates_ok else "ReadinessGatesNotReady")
    conditions = [
        _condition(w, "PodScheduled", True),
        _condition(w, "Initialized", w.record.init_done or terminal,
                   None if w.record.init_done else "ContainersNotInitialized"),
        _condition(w, "ContainersReady", all_ready and not terminal, cr_reason, cr_msg),
        _condition(w, "Ready", ready, ready_reason, cr_msg if not ready else None),
    ]
    status: dict[str, Any] = {
        "phase": ph,
        "conditions": conditions,
        "containerStatuses": statuses,
        "hostIP": w.node.host_ip,
        "hostIPs": [{"ip": w.node.host_ip}],
        "startTime": w.record.start_time,
        "reason": w.failure[0] if w.failure else None,
        "message": w.failure[1] if w.failure else None,
    }
    if w.record.ip:
        status["podIP"] = w.record.ip
        status["podIPs"] = [{"ip": w.record.ip}]
    if init_specs:
        status["initContainerStatuses"] = [
            _container_status(r, init_specs[n]) for n, r in w.init_runners.items()]
    gen = w.pod["metadata"].get("generation")
    if gen is not None:
        status["observedGeneration"] = gen
    return status


def owned(status: dict[str, Any]) -> dict[str, Any]:
    """The part of an API pod status this node writes, for comparison with compute()."""
    out = {k: status[k] for k in STATUS_KEYS if status.get(k) is not None}
    out["conditions"] = [c for c in status.get("conditions") or []
                         if c.get("type") in OWN_CONDITIONS]
    if status.get("observedGeneration") is not None:
        out["observedGeneration"] = status["observedGeneration"]
    return _strip(out)


class StatusWriter:
    def __init__(self, kube: Kube, concurrency: int = 4) -> None:
        self.kube = kube
        self.dirty: dict[str, PodWorker] = {}
        self._event = asyncio.Event()
        self.concurrency = concurrency
        self.writes = 0

    def mark(self, w: PodWorker) -> None:
        self.dirty[w.uid] = w
        self._event.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._loop() for _ in range(self.concurrency)))

    async def _loop(self) -> None:
        while True:
            while not self.dirty:
                self._event.clear()
                await self._event.wait()
            _, w = self.dirty.popitem()
            try:
                await self.write(w)
            except KubeError as exc:
                if exc.status == 422:
                    # Invalid: retrying the same status cannot help; the next change will.
                    log.error("status of %s/%s rejected: %s", w.namespace, w.name, exc)
                    continue
                log.warning("status of %s/%s not written (%s); will retry", w.namespace, w.name,
                            exc)
                await asyncio.sleep(1.0)
                if not w.done:
                    self.mark(w)
            except (OSError, TimeoutError) as exc:
                log.warning("status of %s/%s not written (%s); will retry", w.namespace, w.name,
                            exc)
                await asyncio.sleep(1.0)
                if not w.done:
                    self.mark(w)

    async def write(self, w: PodWorker) -> None:
        # One write per pod at a time: two in flight could land out of order and leave the
        # older status in the API while the node believes the newer one is there.
        async with w.status_lock:
            await self._write(w)

    async def _write(self, w: PodWorker) -> None:
        if w.done or w.deleted:
            return
        desired = compute(w)
        comparable = _strip(desired)
        if comparable == w.last_status:
            return
        body = {"metadata": {"uid": w.uid}, "status": desired}
        try:
            obj = await self.kube.request(
                "PATCH", f"/api/v1/namespaces/{w.namespace}/pods/{w.name}/status",
                body=body, content_type=STRATEGIC_PATCH)
        except KubeError as exc:
            if exc.status in (404, 409):
                # Gone, or a new pod of the same name: the watch will tell the worker.
                return
            raise
        self.writes += 1
        log.debug("status of %s/%s written: %s", w.namespace, w.name, desired.get("phase"))
        w.last_status = comparable
        w.observe(obj)
