"""The websocket rate limit's bucket: a burst, then the average rate, on a controlled clock."""

from __future__ import annotations

from kernelkeeper.gateway.rate import TokenBucket


def test_a_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.1  # one token's worth
    assert bucket.take() and not bucket.take()
    now[0] += 100  # a long pause refills the burst, no more
    assert sum(bucket.take() for _ in range(50)) == 5


def test_sustained_traffic_at_the_rate_is_never_refused():
    now = [0.0]
    bucket = TokenBucket(rate=128, burst=1, clock=lambda: now[0])
    for _ in range(1000):
        now[0] += 1 / 128  # exact in binary: no rounding below one token
        assert bucket.take()
