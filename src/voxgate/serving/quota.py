"""Daily character quotas: how many characters of text a key (or an
unauthenticated address) and a tenant may have synthesized per UTC day.

The pipeline reserves a request's normalized characters once every check
that could refuse it with a 4xx has passed and before it takes an engine
slot, so a refusal is a clean 429 before any audio. Reserving is
check-and-add in one atomic step, across the key's and the tenant's quota
at once: a request either fits in all of them and is counted in all, or is
refused and counted in none. If admission then refuses the request (503),
the reservation is refunded: callers are charged for syntheses they got,
not for the gateway's overload.

Counters are per UTC day. In Redis each is one integer key per scope and
day that expires at the next UTC midnight (the day is read from Redis
``TIME`` inside the script, so every gateway agrees on it); in process, the
table is emptied when the day changes and holds only scopes that have a
quota, so it cannot outgrow one day's callers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from voxgate import errors
from voxgate.errors import VoxgateError
from voxgate.serving.limits import US, Clock, LimiterUnavailable
from voxgate.serving.principal import Principal
from voxgate.serving.redis import RedisConnection

log = logging.getLogger("voxgate.limits")

DAY_US = 86_400 * US


@dataclass(frozen=True, slots=True)
class Allowance:
    """``limit`` characters per UTC day, counted under ``key``."""

    key: str
    limit: int
    scope: str = "caller"


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """``used`` is after this request when allowed, before it when refused.
    ``reset``: seconds until the counters start again (UTC midnight)."""

    allowed: bool
    limit: int
    used: int
    reset: float
    day: int  # days since the epoch, UTC: what a refund must name
    key: str = ""
    scope: str = "caller"

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def _decide(
    allowances: Sequence[Allowance], used: Sequence[int], amount: int, now: int, allowed: bool
) -> QuotaDecision:
    day, into_day = divmod(now, DAY_US)
    reset = (DAY_US - into_day) / US
    decisions = [
        QuotaDecision(allowed, a.limit, u, reset, day, a.key, a.scope)
        for a, u in zip(allowances, used, strict=True)
    ]
    if not allowed:  # the first quota the request does not fit in
        return next(d for d in decisions if d.used + amount > d.limit)
    return min(decisions, key=lambda d: (d.remaining, d.limit))


class QuotaCounter(Protocol):
    async def reserve(self, allowances: Sequence[Allowance], amount: int) -> QuotaDecision:
        """Add ``amount`` to every allowance's count for today if it fits in
        all of them; otherwise add nothing."""
        ...

    async def refund(self, allowances: Sequence[Allowance], amount: int, day: int) -> None:
        """Take back a reservation made on ``day`` (nothing if the day is over)."""
        ...


class InMemoryQuota:
    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._day = -1
        self._used: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._used)

    def _today(self) -> int:
        now = round(self._clock() * US)
        day = now // DAY_US
        if day != self._day:  # a new UTC day: yesterday's counts are no one's business
            self._day = day
            self._used.clear()
        return now

    async def reserve(self, allowances: Sequence[Allowance], amount: int) -> QuotaDecision:
        if not allowances:
            raise ValueError("reserve() needs at least one allowance")
        now = self._today()
        used = [self._used.get(a.key, 0) for a in allowances]
        allowed = all(u + amount <= a.limit for a, u in zip(allowances, used, strict=True))
        if allowed:
            for a in allowances:
                self._used[a.key] = self._used.get(a.key, 0) + amount
            used = [self._used[a.key] for a in allowances]
        return _decide(allowances, used, amount, now, allowed)

    async def refund(self, allowances: Sequence[Allowance], amount: int, day: int) -> None:
        self._today()
        if day != self._day:
            return
        for a in allowances:
            left = self._used.get(a.key, 0) - amount
            if left > 0:
                self._used[a.key] = left
            else:
                self._used.pop(a.key, None)


# KEYS: one per allowance, without the day. ARGV[1]: now in µs, or "" for
# Redis TIME; ARGV[2]: amount; ARGV[2+i]: limit of allowance i.
# Returns {now, refused (0 or 1), used_1 .. used_n}.
_RESERVE_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local day = math.floor(now / 86400000000)
local suffix = ':' .. string.format('%d', day)
local amount = tonumber(ARGV[2])
local used = {}
local refused = 0
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i] .. suffix)) or 0
  if used[i] + amount > tonumber(ARGV[2 + i]) then refused = 1 end
end
if refused == 0 then
  for i = 1, #KEYS do
    local key = KEYS[i] .. suffix
    used[i] = redis.call('INCRBY', key, ARGV[2])
    redis.call('EXPIREAT', key, string.format('%.0f', (day + 1) * 86400))
  end
end
local out = {now, refused}
for i = 1, #KEYS do out[i + 2] = used[i] end
return out
"""

# KEYS: the day's counters. ARGV[1]: amount. A counter that has expired
# stays gone; one that would go below zero is removed.
_REFUND_LUA = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('DECRBY', KEYS[i], ARGV[1]) <= 0 then redis.call('DEL', KEYS[i]) end
  end
end
return 0
"""


class RedisQuota:
    """Quotas shared by every gateway on one Redis. ``clock`` is for tests."""

    def __init__(self, redis: RedisConnection, *, clock: Clock | None = None) -> None:
        self._redis = redis
        self._clock = clock
        self._reserve = redis.client.register_script(_RESERVE_LUA)
        self._refund = redis.client.register_script(_REFUND_LUA)

    def _key(self, allowance: Allowance) -> str:
        return self._redis.key("quota", allowance.key)

    async def reserve(self, allowances: Sequence[Allowance], amount: int) -> QuotaDecision:
        if not allowances:
            raise ValueError("reserve() needs at least one allowance")
        now_arg = "" if self._clock is None else round(self._clock() * US)
        keys = [self._key(a) for a in allowances]
        args = [now_arg, amount, *(a.limit for a in allowances)]
        try:
            reply = await self._reserve(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis quota: {exc}") from exc
        now, refused, *used = (int(v) for v in reply)
        return _decide(allowances, used, amount, now, not refused)

    async def refund(self, allowances: Sequence[Allowance], amount: int, day: int) -> None:
        keys = [f"{self._key(a)}:{day}" for a in allowances]
        try:
            await self._refund(keys=keys, args=[amount])
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis quota: {exc}") from exc


class QuotaExceeded(VoxgateError):
    """429 ``quota_exceeded``; Retry-After is the time to UTC midnight."""

    default_code = errors.QUOTA_EXCEEDED

    def __init__(self, decision: QuotaDecision, amount: int) -> None:
        if amount > decision.limit:
            hint = "The text alone is longer than the whole daily quota; send less text."
        else:
            hint = (
                f"{decision.remaining} characters are left today; the quota renews at "
                "00:00 UTC (Retry-After). Send less text, or ask for a higher quota."
            )
        super().__init__(
            f"the request's {amount} characters do not fit in the daily quota of this "
            f"{decision.scope}: {decision.used} of {decision.limit} used today",
            hint=hint,
            retry_after=decision.reset,
        )
        self.decision = decision

    def headers(self) -> dict[str, str]:
        d = self.decision
        return {
            "Retry-After": str(max(1, math.ceil(d.reset))),
            "X-Quota-Limit": str(d.limit),
            "X-Quota-Remaining": str(d.remaining),
            "X-Quota-Reset": str(math.ceil(d.reset)),
        }


@dataclass(slots=True)
class Reservation:
    """Characters counted for one request; ``refund`` if it never ran."""

    counter: QuotaCounter
    allowances: Sequence[Allowance]
    amount: int
    day: int
    _refunded: bool = False

    async def refund(self) -> None:
        if self._refunded:
            return
        self._refunded = True
        try:
            await self.counter.refund(self.allowances, self.amount, self.day)
        except LimiterUnavailable as exc:
            log.warning("quota refund lost: %s", exc, extra={"error": "limits_unavailable"})


class CharacterQuota:
    """What the pipeline asks once a request's characters are known.

    Which quotas apply: the key's ``characters_per_day``, else
    ``default_per_day`` (per key, per authenticated subject, or per address
    for anonymous callers); and the tenant's ``characters_per_day``, shared by
    all its keys. With none set (the default) nothing is counted."""

    def __init__(self, counter: QuotaCounter, default_per_day: int | None = None) -> None:
        self.counter = counter
        self.default_per_day = default_per_day

    def allowances(self, who: Principal) -> list[Allowance]:
        out = []
        own = who.limits.characters_per_day
        if own is None:
            own = self.default_per_day
        if own is not None:
            scope = "API key" if who.key_id else "caller" if who.authenticated else "address"
            out.append(Allowance(who.limit_key, own, scope))
        shared = who.tenant_limits.characters_per_day
        if shared is not None:
            out.append(Allowance(f"tenant:{who.tenant}", shared, "tenant"))
        return out

    async def reserve(self, who: Principal, characters: int) -> Reservation | None:
        """Count ``characters`` for ``who`` or raise :class:`QuotaExceeded`.
        ``None`` when no quota applies, or when the store does not answer:
        like the rate limits, quotas fail open rather than refuse everyone
        while Redis is away."""
        allowances = self.allowances(who)
        if not allowances:
            return None
        try:
            decision = await self.counter.reserve(allowances, characters)
        except LimiterUnavailable as exc:
            log.warning("quota not applied: %s", exc, extra={"error": "limits_unavailable"})
            return None
        if not decision.allowed:
            raise QuotaExceeded(decision, characters)
        return Reservation(self.counter, allowances, characters, decision.day)


def build_quota(redis: RedisConnection | None, default_per_day: int | None) -> CharacterQuota:
    counter: QuotaCounter = RedisQuota(redis) if redis is not None else InMemoryQuota()
    return CharacterQuota(counter, default_per_day)
