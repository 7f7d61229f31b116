"""Availability modes: every replica serves (active-active), or only the Lease holder does.

active-passive uses kube/lease.py's LeaseElector (the one Lease implementation
in this code base). The gate is `serving()`: a monotonic-clock check that the last successful
renew started less than `renew_deadline` ago. Handlers call it before every side effect, so a
holder that was paused (SIGSTOP, a long GC, a hung apiserver call) refuses work the moment it
resumes, before its election loop has even run. When the loop sees leadership gone it fences
the process: stop serving, close websockets, exit non-zero; the Deployment (or the operator of
the local environment) starts a fresh standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

from kernelkeeper.crds import model as crd
from kernelkeeper.kube.client import ApiError, Kube
from kernelkeeper.kube.lease import LeaseElector
from kernelkeeper.kube.paths import core_path

log = logging.getLogger("kernelkeeper.gateway.availability")

ACTIVE_ACTIVE = "active-active"
ACTIVE_PASSIVE = "active-passive"
# Enterprise Gateway 3.x spells the modes differently; accept its names.
ALIASES = {"replication": ACTIVE_ACTIVE, "standalone": ACTIVE_PASSIVE}
MODES = (ACTIVE_ACTIVE, ACTIVE_PASSIVE)

# Exit status of a replica that lost its Lease: distinct, so logs and restarts tell it apart.
EXIT_LEASE_LOST = 3

# The holder's Pod is the last one a ReplicaSet removes (rolling update, scale down): a rollout
# then replaces the standbys first and hands the Lease over once, not once per old Pod.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
HOLDER_DELETION_COST = "1000"


def normalize_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode in ALIASES:
        log.info("availability mode %r is Enterprise Gateway's name for %r", value, ALIASES[mode])
        return ALIASES[mode]
    if mode not in MODES:
        raise ValueError(
            f"availability_mode must be one of {', '.join(MODES)} "
            f"(or {', '.join(ALIASES)}), got {value!r}"
        )
    return mode


class Availability:
    """Decides whether this replica may serve right now."""

    def __init__(
        self,
        mode: str,
        kube: Kube | None = None,
        *,
        identity: str = "",
        lease_name: str = "kernelkeeper-gateway",
        lease_namespace: str = "default",
        duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
        on_lost: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.mode = normalize_mode(mode)
        self.kube = kube
        self.on_lost = on_lost
        self.elector: LeaseElector | None = None
        if self.mode == ACTIVE_PASSIVE:
            if kube is None:
                raise ValueError("active-passive needs a Kubernetes client for its Lease")
            self.elector = LeaseElector(kube, lease_name, lease_namespace, identity,
                                        duration=duration, renew_deadline=renew_deadline,
                                        retry=retry)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.became_active = asyncio.Event()
        if self.elector is None:
            self.became_active.set()

    @property
    def epoch(self) -> int:
        """leaseTransitions of our tenure: grows with every takeover (0 in active-active)."""
        return self.elector.transitions if self.elector else 0

    def serving(self) -> bool:
        if self._stopping:
            return False
        return self.elector is None or self.elector.is_leader()

    def can_take_over(self) -> bool:
        """Serving now, or a standby able to take over at the next handover.

        This is what a Deployment must count as available: in active-passive mode the standby is
        the replica a rolling update brings up first, and if it counted as unavailable the
        rollout could never remove the holder. A standby qualifies while its election loop
        runs and it has never held the Lease; a process that held it and stopped serving is
        fencing itself (it exits), so it does not.
        """
        if self.serving():
            return True
        if self._stopping or self.elector is None or self.became_active.is_set():
            return False
        return self._task is not None and not self._task.done()

    def holder_hint(self) -> str | None:
        return self.elector.holder_hint() if self.elector else None

    def retry_after(self) -> float:
        return self.elector.retry if self.elector else 1.0

    def why_not_serving(self) -> str:
        if self._stopping:
            return "this gateway replica is shutting down; retry to reach another replica"
        if self.elector is not None and self.elector.holder_hint() == self.elector.identity:
            return "this replica lost its Lease and is fencing itself; retry to reach the new holder"
        holder = self.holder_hint() or "unknown"
        return (f"this replica is a standby (active-passive); the active replica is {holder}; "
                "retry shortly")

    def start(self) -> None:
        if self.elector is not None:
            self._task = asyncio.create_task(self._run(), name="lease-election")

    async def _run(self) -> None:
        assert self.elector is not None
        # Poll faster than the holder renews: a released Lease (holder emptied on SIGTERM) is
        # then taken within a fraction of the retry period; an expired one still needs the
        # full lease duration of unchanged observations.
        poll = max(0.1, self.elector.retry / 4)
        # A container restarted in the same Pod (after a crash of the holder) still carries
        # its last life's role=active label: a standby must not be selected by the Service.
        await self._label_pod(active=False)
        previous = None
        while not await self.elector.try_acquire_or_renew():
            hint = self.elector.holder_hint()
            if hint and hint != self.elector.identity:
                previous = hint
            await asyncio.sleep(poll)
        log.info("active: holding Lease %s/%s as %s (epoch %d)", self.elector.namespace,
                 self.elector.name, self.elector.identity, self.epoch)
        self.became_active.set()
        await self._label_pod(active=True)
        if previous:
            # A holder that died could not take its label off; its Pod may still be selected.
            await self._label_pod(active=False, pod=pod_of_identity(previous))
        await self.elector.hold()
        if self._stopping:
            return
        log.error("lost the Lease (no successful renew within %.0fs): fencing this replica",
                  self.elector.renew_deadline)
        if self.on_lost is not None:
            await self.on_lost()

    async def stop(self) -> None:
        """Stop serving first, then hand the Lease over so a standby takes over in ~retry s."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.elector is not None and await self.elector.release():
            await self._label_pod(active=False)

    async def _label_pod(self, *, active: bool, pod: str | None = None) -> None:
        """Label our own Pod role=active so a Service can select the holder (only in a Pod),
        and give it the highest deletion cost; with `pod`, take both off that (previous
        holder's) Pod instead."""
        own, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
        if pod == own:
            return
        pod = pod or own
        if not (pod and namespace and self.kube):
            return
        value = "active" if active else None
        cost = HOLDER_DELETION_COST if active else None
        try:
            async with asyncio.timeout(5):
                await self.kube.merge_patch(core_path(namespace, "pods", pod), {"metadata": {
                    "labels": {crd.LABEL_ROLE: value}, "annotations": {DELETION_COST: cost}}})
        except ApiError as exc:
            if exc.status != 404:  # a previous holder's Pod may be gone: nothing to undo
                log.warning("could not label pod %s/%s role=%s: %s", namespace, pod, value, exc)
        except (TimeoutError, OSError) as exc:
            log.warning("could not label pod %s/%s role=%s: %s", namespace, pod, value, exc)


def pod_of_identity(identity: str) -> str:
    """The Pod name in a Lease identity (`<replica id>_<per-process suffix>`, see gateway.app)."""
    return identity.rsplit("_", 1)[0]
