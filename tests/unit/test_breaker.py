"""Circuit breakers: the in-process one and the one shared through the real
Redis run the same scenarios, on a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.support.redis import REDIS_URL
from voxgate.serving.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerState,
    LocalBreakers,
    Outcome,
    RedisBreakers,
)
from voxgate.serving.redis import RedisConnection

POLICY = BreakerPolicy(
    failure_rate=0.05, window_s=30.0, min_calls=20, cooldown_s=60.0, half_open_calls=2
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeBreaker = Callable[[BreakerPolicy], Breaker]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["local", "redis"])
async def make(
    request: pytest.FixtureRequest, clock: Clock, redis_prefix: str
) -> AsyncIterator[MakeBreaker]:
    if request.param == "local":
        yield lambda policy: LocalBreakers(policy, clock).breaker("sim#0")
        return
    redis = RedisConnection(REDIS_URL, redis_prefix)
    yield lambda policy: RedisBreakers(policy, redis, clock).breaker("sim#0")
    await redis.close()


async def calls(breaker: Breaker, outcomes: str) -> None:
    """One call per letter: s succeeds, f fails, i is ignored."""
    kinds = {"s": Outcome.SUCCESS, "f": Outcome.FAILURE, "i": Outcome.IGNORED}
    for letter in outcomes:
        permit = await breaker.acquire()
        assert permit is not None, "the breaker refused a call it should have allowed"
        await breaker.record(permit, kinds[letter])


async def state(breaker: Breaker) -> BreakerState:
    return (await breaker.snapshot()).state


async def trip(breaker: Breaker) -> None:
    await calls(breaker, "s" * 18 + "ff")
    assert await state(breaker) is BreakerState.OPEN


async def test_opens_above_the_rate_once_the_window_holds_enough_calls(make: MakeBreaker) -> None:
    breaker = make(POLICY)
    await calls(breaker, "s" * 18 + "f")
    assert await state(breaker) is BreakerState.CLOSED  # 1 of 19: below the minimum volume
    await calls(breaker, "f")  # 2 of 20 = 10 % > 5 %
    snap = await breaker.snapshot()
    assert snap.state is BreakerState.OPEN
    assert not snap.allows
    assert snap.retry_after_s == pytest.approx(60.0)
    assert await breaker.acquire() is None


async def test_failures_below_the_minimum_volume_never_open(make: MakeBreaker) -> None:
    breaker = make(POLICY)
    await calls(breaker, "f" * 19)  # every call failed, but only 19 of them
    snap = await breaker.snapshot()
    assert snap.state is BreakerState.CLOSED
    assert (snap.calls, snap.failures) == (19, 19)


async def test_a_rate_at_the_threshold_does_not_open(make: MakeBreaker) -> None:
    breaker = make(POLICY)
    await calls(breaker, "s" * 19 + "f")  # exactly 5 %: not above it
    assert await state(breaker) is BreakerState.CLOSED
    await calls(breaker, "f")  # 2 of 21
    assert await state(breaker) is BreakerState.OPEN


async def test_ignored_outcomes_do_not_count(make: MakeBreaker) -> None:
    breaker = make(POLICY)
    await calls(breaker, "i" * 30 + "ff")
    snap = await breaker.snapshot()
    assert snap.state is BreakerState.CLOSED
    assert (snap.calls, snap.failures) == (2, 2)


async def test_the_window_forgets_old_failures(make: MakeBreaker, clock: Clock) -> None:
    breaker = make(POLICY)
    await calls(breaker, "f" * 10)
    clock.advance(31.0)  # those ten are out of the 30 s window now
    assert (await breaker.snapshot()).calls == 0
    await calls(breaker, "s" * 18 + "f")
    assert await state(breaker) is BreakerState.CLOSED  # 1 of 19 counted, not 11 of 29
    clock.advance(15.0)  # within the window: still counted
    await calls(breaker, "f")
    assert await state(breaker) is BreakerState.OPEN


async def test_cooldown_then_half_open_probes_close_it(make: MakeBreaker, clock: Clock) -> None:
    breaker = make(POLICY)
    await trip(breaker)
    clock.advance(59.0)
    assert await breaker.acquire() is None
    assert (await breaker.snapshot()).retry_after_s == pytest.approx(1.0)
    clock.advance(1.0)
    assert (await breaker.snapshot()).state is BreakerState.HALF_OPEN
    first = await breaker.acquire()
    second = await breaker.acquire()
    assert first is not None
    assert first.probe
    assert second is not None
    assert second.probe
    assert await breaker.acquire() is None  # only half_open_calls probes at once
    await breaker.record(first, Outcome.SUCCESS)
    assert await state(breaker) is BreakerState.HALF_OPEN  # one success of two
    await breaker.record(second, Outcome.SUCCESS)
    snap = await breaker.snapshot()
    assert snap.state is BreakerState.CLOSED
    assert snap.calls == 0  # a fresh window
    permit = await breaker.acquire()
    assert permit is not None
    assert not permit.probe


async def test_a_failed_probe_reopens_for_another_cooldown(make: MakeBreaker, clock: Clock) -> None:
    breaker = make(POLICY)
    await trip(breaker)
    clock.advance(60.0)
    probe = await breaker.acquire()
    assert probe is not None
    assert probe.probe
    clock.advance(5.0)
    await breaker.record(probe, Outcome.FAILURE)
    snap = await breaker.snapshot()
    assert snap.state is BreakerState.OPEN
    assert snap.retry_after_s == pytest.approx(60.0)
    clock.advance(59.0)
    assert await breaker.acquire() is None
    clock.advance(1.0)
    assert await breaker.acquire() is not None


async def test_an_ignored_probe_frees_its_slot(make: MakeBreaker, clock: Clock) -> None:
    breaker = make(BreakerPolicy(min_calls=2, cooldown_s=10.0, half_open_calls=1))
    await calls(breaker, "ff")
    clock.advance(10.0)
    probe = await breaker.acquire()
    assert probe is not None
    assert await breaker.acquire() is None
    await breaker.record(probe, Outcome.IGNORED)  # the client went away
    again = await breaker.acquire()
    assert again is not None
    assert again.probe


async def test_lost_probes_are_forgotten_after_a_cooldown(make: MakeBreaker, clock: Clock) -> None:
    breaker = make(BreakerPolicy(min_calls=2, cooldown_s=10.0, half_open_calls=1))
    await calls(breaker, "ff")
    clock.advance(10.0)
    assert await breaker.acquire() is not None  # a probe whose caller dies
    assert await breaker.acquire() is None
    clock.advance(10.0)
    assert await breaker.acquire() is not None


async def test_results_from_before_a_state_change_are_ignored(
    make: MakeBreaker, clock: Clock
) -> None:
    breaker = make(BreakerPolicy(min_calls=2, cooldown_s=10.0, half_open_calls=1))
    slow = await breaker.acquire()  # a long call that started while closed
    assert slow is not None
    await calls(breaker, "ff")
    clock.advance(10.0)
    probe = await breaker.acquire()
    assert probe is not None
    await breaker.record(slow, Outcome.FAILURE)  # arrives while half open: stale
    assert await state(breaker) is BreakerState.HALF_OPEN
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is BreakerState.CLOSED


async def test_redis_breakers_are_shared_between_gateways(clock: Clock, redis_prefix: str) -> None:
    a = RedisConnection(REDIS_URL, redis_prefix)
    b = RedisConnection(REDIS_URL, redis_prefix)
    try:
        on_a = RedisBreakers(POLICY, a, clock).breaker("sim#0")
        on_b = RedisBreakers(POLICY, b, clock).breaker("sim#0")
        other = RedisBreakers(POLICY, b, clock).breaker("sim#1")
        await calls(on_a, "s" * 10 + "f")
        await calls(on_b, "s" * 8 + "f")  # 2 of 20 between the two gateways
        assert await state(on_a) is BreakerState.OPEN
        assert await on_b.acquire() is None
        assert on_b.last_known().state is BreakerState.OPEN
        assert await state(other) is BreakerState.CLOSED  # another endpoint's own
        clock.advance(60.0)
        probe_a = await on_a.acquire()
        probe_b = await on_b.acquire()
        assert probe_a is not None
        assert probe_b is not None
        assert await on_b.acquire() is None  # two probe slots, shared by both gateways
        assert await on_a.acquire() is None
        await on_a.record(probe_a, Outcome.SUCCESS)
        assert await state(on_b) is BreakerState.HALF_OPEN  # one success of two
        await on_b.record(probe_b, Outcome.SUCCESS)
        assert await state(on_a) is BreakerState.CLOSED
    finally:
        await a.close()
        await b.close()


async def test_redis_breakers_keep_time_by_redis_not_by_the_gateway(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gateways whose clocks are an hour apart open and cool down together:
    without a test clock, the scripts read Redis's ``TIME``."""
    redis = RedisConnection(REDIS_URL, redis_prefix)
    try:
        breaker = RedisBreakers(POLICY, redis).breaker("sim#0")
        await calls(breaker, "f" * POLICY.min_calls)
        seconds, micros = await redis.client.time()
        server_now = seconds + micros / 1e6
        opened_at = float(await redis.client.hget(redis.key("breaker", "sim#0"), "opened_at"))
        assert abs(opened_at - server_now) < 1.0
        monkeypatch.setattr("time.time", lambda: server_now + 3600.0)  # a skewed gateway
        skewed = RedisBreakers(POLICY, redis).breaker("sim#0")
        snap = await skewed.snapshot()
        assert snap.state is BreakerState.OPEN  # not "cooled down an hour ago"
        assert snap.retry_after_s is not None
        assert 58.0 < snap.retry_after_s <= 60.0
        assert await skewed.acquire() is None
    finally:
        await redis.close()


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        BreakerPolicy(failure_rate=1.5)
    with pytest.raises(ValueError, match="min_calls"):
        BreakerPolicy(min_calls=0)


async def test_a_breaker_in_an_unreachable_redis_lets_calls_through(clock: Clock) -> None:
    redis = RedisConnection("redis://127.0.0.1:1/0", "vgtest:down:")
    try:
        breaker = RedisBreakers(POLICY, redis, clock).breaker("sim#0")
        for _ in range(POLICY.min_calls + 5):
            permit = await breaker.acquire()
            assert permit is not None
            await breaker.record(permit, Outcome.FAILURE)  # not counted, not raised
        snap = await breaker.snapshot()
        assert snap.allows
        assert snap.state is BreakerState.CLOSED
    finally:
        await redis.close()
