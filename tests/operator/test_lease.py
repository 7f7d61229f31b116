"""LeaseElector against the real API server: exclusion, release, expiry, transitions."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from kernelkeeper.kube.client import Kube
from kernelkeeper.kube.lease import LeaseElector


async def test_lease_elector(cluster):
    kube = await Kube.connect(str(cluster.kubeconfig), timeout=10)
    name = f"test-{uuid.uuid4().hex[:8]}"
    one = LeaseElector(kube, name, "default", "one", duration=3, renew_deadline=2, retry=0.5)
    two = LeaseElector(kube, name, "default", "two", duration=3, renew_deadline=2, retry=0.5)
    try:
        await asyncio.wait_for(one.acquire(), 10)
        assert one.is_leader() and one.transitions == 0
        holding = asyncio.create_task(one.hold())
        waiting = asyncio.create_task(two.acquire())
        await asyncio.sleep(4)  # longer than the lease duration: renewals keep it
        assert not waiting.done() and not two.is_leader() and one.is_leader()

        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
        assert await one.release()
        assert not one.is_leader()
        await asyncio.wait_for(waiting, 5)  # released: no need to wait for expiry
        assert two.is_leader() and two.transitions == 1
        lease = await kube.get(two.path)
        assert lease["spec"]["holderIdentity"] == "two"
        assert lease["spec"]["leaseTransitions"] == 1

        # "two" stops renewing: it stops counting itself leader after the renew deadline,
        # before "one" can take over after the full duration.
        takeover = asyncio.create_task(one.acquire())
        while two.is_leader():
            await asyncio.sleep(0.05)
        assert not takeover.done()  # the old holder stands down before anyone takes over
        await asyncio.wait_for(takeover, 10)
        assert one.transitions == 2 and not two.is_leader()
        assert (await kube.get(one.path))["spec"]["holderIdentity"] == "one"
        # A deposed holder does not silently get it back.
        assert not await two.try_acquire_or_renew()
    finally:
        await one.release()
        await kube.delete(one.path)
        await kube.close()


class SlowKube(Kube):
    """The real API server, reached through a slow path: every request waits `delay` first."""

    delay = 0.0

    async def request(self, method: str, path: str, **kw):  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.delay)
        return await super().request(method, path, **kw)


async def test_slow_renewals_keep_the_lease_within_the_renew_window(cluster):
    """A renewal slower than the retry period but inside the renew window keeps leadership
    (a starved API server on a busy node); one that cannot finish inside it loses it, before
    the lease duration runs out."""
    real = await Kube.connect(str(cluster.kubeconfig), timeout=10)
    kube = SlowKube(real.api, timeout=10)
    name = f"test-{uuid.uuid4().hex[:8]}"
    one = LeaseElector(kube, name, "default", "one", duration=6, renew_deadline=4, retry=0.5)
    try:
        await asyncio.wait_for(one.acquire(), 10)
        holding = asyncio.create_task(one.hold())
        kube.delay = 0.6  # GET + PUT: 1.2 s per renewal, more than twice the retry period
        await asyncio.sleep(6)
        assert not holding.done() and one.is_leader()

        kube.delay = 5.0  # longer than the renew window: leadership must end inside it
        await asyncio.wait_for(holding, 4 + 0.5 + 1)
        assert not one.is_leader()
    finally:
        kube.delay = 0.0
        await real.delete(one.path)
        await real.close()
