"""Rate limits and daily character quotas, the same scenarios against the
in-process implementation and the Redis one (DESIGN rule 7).

Time is a fake clock handed to both, so refills and day rollover are exact;
one test per store also runs on the store's real clock (Redis ``TIME``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis

from tests.support.redis import REDIS_URL
from voxgate import errors
from voxgate.serving.limits import (
    Decision,
    InMemoryRateLimiter,
    LimiterUnavailable,
    Rate,
    RateLimited,
    RateLimiter,
    RatePolicy,
    RedisRateLimiter,
    RequestLimits,
)
from voxgate.serving.principal import Limits, Principal, anonymous
from voxgate.serving.quota import (
    Allowance,
    CharacterQuota,
    InMemoryQuota,
    QuotaCounter,
    QuotaExceeded,
    RedisQuota,
)
from voxgate.serving.redis import RedisConnection

DAY = 86_400


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def end_of_today() -> float:
    """The coming UTC midnight, as a timestamp. Fake clocks start shortly
    before it: Redis expires quota keys at real midnights, which must lie
    in the real future."""
    return (time.time() // DAY + 1) * DAY


@dataclass
class Backend:
    kind: str
    clock: FakeClock
    limiter: RateLimiter
    quota: QuotaCounter
    prefix: str = ""


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    clock = FakeClock(end_of_today() - 3600)
    if request.param == "memory":
        yield Backend("memory", clock, InMemoryRateLimiter(clock=clock), InMemoryQuota(clock=clock))
        return
    prefix: str = request.getfixturevalue("redis_prefix")
    conn = RedisConnection(REDIS_URL, prefix)
    try:
        yield Backend(
            "redis",
            clock,
            RedisRateLimiter(conn, clock=clock),
            RedisQuota(conn, clock=clock),
            prefix,
        )
    finally:
        await conn.close()


# -- rate limits --------------------------------------------------------------


async def test_a_limit_of_n_allows_n_then_refuses(backend: Backend) -> None:
    rate = Rate("key:a", 5)
    remaining = []
    for _ in range(5):
        d = await backend.limiter.hit([rate])
        assert d.allowed
        remaining.append(d.remaining)
    assert remaining == [4, 3, 2, 1, 0]
    refused = await backend.limiter.hit([rate])
    assert not refused.allowed
    assert refused.limit == 5
    assert refused.remaining == 0
    assert refused.retry_after == pytest.approx(12.0)  # one request frees every 60/5 s
    assert refused.reset == pytest.approx(60.0)  # all five are back after a minute


async def test_one_per_minute_used_up_means_retry_after_a_minute(backend: Backend) -> None:
    rate = Rate("key:slow", 1)
    assert (await backend.limiter.hit([rate])).allowed
    refused = await backend.limiter.hit([rate])
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(60.0)
    backend.clock.advance(59)
    still = await backend.limiter.hit([rate])
    assert not still.allowed
    assert still.retry_after == pytest.approx(1.0)
    backend.clock.advance(1)
    assert (await backend.limiter.hit([rate])).allowed


async def test_the_window_refills_at_the_limit_rate(backend: Backend) -> None:
    rate = Rate("key:r", 3)
    for _ in range(3):
        assert (await backend.limiter.hit([rate])).allowed
    assert not (await backend.limiter.hit([rate])).allowed  # refusals cost nothing
    backend.clock.advance(20)  # one request's worth
    assert (await backend.limiter.hit([rate])).allowed
    assert not (await backend.limiter.hit([rate])).allowed
    backend.clock.advance(60)
    results = [(await backend.limiter.hit([rate])).allowed for _ in range(4)]
    assert results == [True, True, True, False]


async def test_keys_are_counted_apart(backend: Backend) -> None:
    assert (await backend.limiter.hit([Rate("key:x", 1)])).allowed
    assert not (await backend.limiter.hit([Rate("key:x", 1)])).allowed
    assert (await backend.limiter.hit([Rate("key:y", 1)])).allowed


async def test_a_request_counts_against_every_limit_or_none(backend: Backend) -> None:
    key, tenant = Rate("key:k", 5), Rate("tenant:t", 2)
    first = await backend.limiter.hit([key, tenant])
    assert first.allowed
    assert (first.key, first.limit, first.remaining) == ("tenant:t", 2, 1)  # the tightest
    assert (await backend.limiter.hit([key, tenant])).allowed
    refused = await backend.limiter.hit([key, tenant])
    assert not refused.allowed
    assert refused.key == "tenant:t"
    # the refused request did not use the key's allowance: 5 - 2 - this one
    alone = await backend.limiter.hit([key])
    assert alone.allowed
    assert alone.remaining == 2


async def test_the_refusing_limit_is_the_one_that_waits_longest(backend: Backend) -> None:
    key, tenant = Rate("key:w", 1), Rate("tenant:w", 6)
    assert (await backend.limiter.hit([key, tenant])).allowed
    refused = await backend.limiter.hit([key, tenant])
    assert refused.key == "key:w"
    assert refused.retry_after == pytest.approx(60.0)


async def test_a_limit_of_zero_refuses_everything(backend: Backend) -> None:
    refused = await backend.limiter.hit([Rate("key:none", 0)])
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(60.0)


async def test_state_expires_when_idle(backend: Backend) -> None:
    """Bounded memory: a bucket that has drained is forgotten."""
    if backend.kind == "memory":
        limiter = backend.limiter
        assert isinstance(limiter, InMemoryRateLimiter)
        for i in range(1000):
            await limiter.hit([Rate(f"ip:10.0.{i // 250}.{i % 250}", 10)])
        assert len(limiter) == 1000
        backend.clock.advance(61)
        await limiter.hit([Rate("ip:10.9.9.9", 10)])
        assert len(limiter) == 1
        return
    await backend.limiter.hit([Rate("key:ttl", 10)])
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttl_ms = client.pttl(f"{backend.prefix}rl:key:ttl")
    finally:
        client.close()
    assert 0 < ttl_ms <= 6_000  # the key lives as long as one request's share (60/10 s)


# -- quotas -------------------------------------------------------------------


async def test_quota_reserves_then_refuses_what_does_not_fit(backend: Backend) -> None:
    quota = [Allowance("key:q", 100)]
    first = await backend.quota.reserve(quota, 60)
    assert first.allowed
    assert (first.used, first.remaining) == (60, 40)
    refused = await backend.quota.reserve(quota, 50)
    assert not refused.allowed
    assert refused.used == 60
    assert refused.reset == pytest.approx(3600)  # to UTC midnight
    last = await backend.quota.reserve(quota, 40)
    assert last.allowed
    assert last.remaining == 0


async def test_quota_counts_against_key_and_tenant_or_neither(backend: Backend) -> None:
    key, tenant = Allowance("key:k", 100), Allowance("tenant:t", 50, "tenant")
    assert (await backend.quota.reserve([key, tenant], 40)).allowed
    refused = await backend.quota.reserve([key, tenant], 20)
    assert not refused.allowed
    assert (refused.key, refused.scope, refused.remaining) == ("tenant:t", "tenant", 10)
    alone = await backend.quota.reserve([key], 60)  # the key still has 60 left
    assert alone.allowed
    assert alone.remaining == 0


async def test_quota_rolls_over_at_utc_midnight(backend: Backend) -> None:
    backend.clock.now = end_of_today() - 30
    quota = [Allowance("key:day", 10)]
    assert (await backend.quota.reserve(quota, 10)).allowed
    refused = await backend.quota.reserve(quota, 1)
    assert not refused.allowed
    assert refused.reset == pytest.approx(30)
    backend.clock.advance(31)
    tomorrow = await backend.quota.reserve(quota, 1)
    assert tomorrow.allowed
    assert tomorrow.used == 1
    assert tomorrow.day == refused.day + 1
    assert tomorrow.reset == pytest.approx(DAY - 1)


async def test_a_refund_gives_the_characters_back(backend: Backend) -> None:
    quota = [Allowance("key:refund", 100)]
    taken = await backend.quota.reserve(quota, 80)
    await backend.quota.refund(quota, 80, taken.day)
    assert (await backend.quota.reserve(quota, 100)).allowed


async def test_a_refund_for_yesterday_changes_nothing(backend: Backend) -> None:
    quota = [Allowance("key:late", 100)]
    taken = await backend.quota.reserve(quota, 50)
    await backend.quota.reserve(quota, 50)
    await backend.quota.refund(quota, 50, taken.day - 1)
    assert not (await backend.quota.reserve(quota, 1)).allowed


async def test_in_memory_quota_forgets_yesterday() -> None:
    clock = FakeClock(end_of_today() - 10)
    quota = InMemoryQuota(clock=clock)
    for i in range(100):
        await quota.reserve([Allowance(f"ip:10.0.0.{i}", 10)], 1)
    assert len(quota) == 100
    clock.advance(20)
    await quota.reserve([Allowance("ip:10.0.1.1", 10)], 1)
    assert len(quota) == 1


async def test_redis_quota_keys_expire_at_midnight(redis_prefix: str) -> None:
    clock = FakeClock(end_of_today() - 120)
    conn = RedisConnection(REDIS_URL, redis_prefix)
    try:
        decision = await RedisQuota(conn, clock=clock).reserve([Allowance("key:exp", 10)], 3)
    finally:
        await conn.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        key = f"{redis_prefix}quota:key:exp:{decision.day}"
        assert client.get(key) == b"3"
        assert client.expiretime(key) == int(end_of_today())
    finally:
        client.close()


# -- the real clocks ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_refill_on_the_stores_own_clock(kind: str, request: pytest.FixtureRequest) -> None:
    conn = None
    if kind == "redis":
        conn = RedisConnection(REDIS_URL, request.getfixturevalue("redis_prefix"))
        limiter: RateLimiter = RedisRateLimiter(conn)  # Redis TIME
    else:
        limiter = InMemoryRateLimiter()
    try:
        rate = Rate("key:real", 2, period_s=1.0)
        assert (await limiter.hit([rate])).allowed
        assert (await limiter.hit([rate])).allowed
        refused = await limiter.hit([rate])
        assert not refused.allowed
        assert 0 < refused.retry_after <= 0.5
        await asyncio.sleep(refused.retry_after + 0.05)
        assert (await limiter.hit([rate])).allowed
    finally:
        if conn is not None:
            await conn.close()


async def test_an_unreachable_redis_is_reported_not_hidden() -> None:
    conn = RedisConnection("redis://127.0.0.1:1/0", "vgtest:")
    try:
        with pytest.raises(LimiterUnavailable):
            await RedisRateLimiter(conn).hit([Rate("key:x", 1)])
        # the surfaces' call fails open: the request goes on without a decision
        limits = RequestLimits(RedisRateLimiter(conn), RatePolicy(anonymous_rpm=1))
        assert await limits.check(anonymous("10.0.0.1")) is None
        # quotas fail open: the request goes on uncounted
        quota = CharacterQuota(RedisQuota(conn), default_per_day=10)
        assert await quota.reserve(anonymous("10.0.0.1"), 100) is None
    finally:
        await conn.close()


# -- who is limited by what ---------------------------------------------------

KEYED = Principal(tenant="acme", subject="key:k1", key_id="k1", method="api_key")


def test_policy_defaults_apply_per_key_or_per_address() -> None:
    policy = RatePolicy(default_rpm=30, anonymous_rpm=5)
    assert policy.rates(anonymous("10.1.2.3")) == [Rate("ip:10.1.2.3", 5, scope="address")]
    assert policy.rates(KEYED) == [Rate("key:k1", 30, scope="API key")]
    assert RatePolicy().rates(KEYED) == []  # nothing configured: nothing to count


def test_policy_prefers_the_keys_own_limit_and_adds_the_tenants() -> None:
    who = Principal(
        tenant="acme",
        key_id="k2",
        method="api_key",
        limits=Limits(requests_per_minute=100),
        tenant_limits=Limits(requests_per_minute=500),
    )
    rates = RatePolicy(default_rpm=30).rates(who)
    assert rates == [
        Rate("key:k2", 100, scope="API key"),
        Rate("tenant:acme", 500, scope="tenant"),
    ]


async def test_request_limits_refuse_with_429_and_spare_administrators() -> None:
    limits = RequestLimits(InMemoryRateLimiter(), RatePolicy(default_rpm=1, anonymous_rpm=1))
    caller = anonymous("10.0.0.9")
    allowed = await limits.check(caller)
    assert allowed is not None
    assert allowed.remaining == 0
    with pytest.raises(RateLimited) as exc:
        await limits.check(caller)
    assert exc.value.headers()["Retry-After"] == "60"
    admin = Principal(subject="admin-token", method="admin_token", admin=True)
    assert [await limits.check(admin) for _ in range(3)] == [None, None, None]
    assert await RequestLimits(InMemoryRateLimiter(), RatePolicy()).check(caller) is None


def test_rate_limited_error_rounds_retry_after_up() -> None:
    # a client that waited the rounded-down 59 s would be refused again
    err = RateLimited(_decision(retry_after=59.2, reset=119.5, limit=1))
    assert err.code == errors.RATE_LIMITED
    assert err.status == 429
    headers = err.headers()
    assert headers["Retry-After"] == "60"
    assert headers["X-RateLimit-Limit"] == "1"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == "120"
    assert RateLimited(_decision(retry_after=0.2, reset=1, limit=5)).headers()["Retry-After"] == "1"


def _decision(*, retry_after: float, reset: float, limit: int) -> Decision:
    return Decision(False, limit, 0, reset, retry_after, "key:k", "API key")


async def test_character_quota_picks_allowances_from_the_principal() -> None:
    clock = FakeClock(end_of_today() - 100)
    counter = InMemoryQuota(clock=clock)
    quota = CharacterQuota(counter, default_per_day=10)
    assert [a.key for a in quota.allowances(anonymous("10.0.0.7"))] == ["ip:10.0.0.7"]
    own = Principal(
        tenant="acme",
        key_id="k3",
        method="api_key",
        limits=Limits(characters_per_day=1000),
        tenant_limits=Limits(characters_per_day=5000),
    )
    assert quota.allowances(own) == [
        Allowance("key:k3", 1000, "API key"),
        Allowance("tenant:acme", 5000, "tenant"),
    ]
    assert await CharacterQuota(counter).reserve(KEYED, 10**9) is None  # unlimited: no count
    assert len(counter) == 0
    assert await quota.reserve(anonymous("10.0.0.7"), 8) is not None
    with pytest.raises(QuotaExceeded) as exc:
        await quota.reserve(anonymous("10.0.0.7"), 3)
    assert exc.value.code == errors.QUOTA_EXCEEDED
    assert exc.value.status == 429
    assert exc.value.headers()["Retry-After"] == "100"
    assert exc.value.headers()["X-Quota-Remaining"] == "2"
    assert "2 characters are left today" in (exc.value.hint or "")
