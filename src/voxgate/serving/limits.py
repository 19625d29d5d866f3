"""Request rate limits: how many requests an API key, a tenant or an
unauthenticated address may make per minute, shared by every gateway when
Redis is configured (DESIGN rule 7: one interface, an in-process and a Redis
implementation).

The algorithm is GCRA (the generic cell rate algorithm: a leaky bucket kept
as one timestamp per limited key, the "theoretical arrival time" or TAT),
chosen over a sliding-window counter because:

- it is exact. A fixed window lets 2N requests through around a window edge,
  and a sliding-window counter only approximates by weighting the previous
  window; GCRA has no edges to approximate;
- ``Retry-After`` falls out of it exactly: the time until the bucket has
  drained enough for one more request. One request per minute, used up,
  gives 60 s; sixty per minute spent in a burst gives 1 s, which is true,
  since one request frees every second;
- its state is one integer per key. In Redis that is one string key whose
  expiry is the moment the bucket is full again, so idle keys vanish by
  themselves; in process, a table entry whose TAT has passed is the same as
  no entry, which is what makes the table easy to keep bounded.

A limit of N per period allows a burst of N, then one request every
period / N. ``reset`` is the time until all N are available again.

Several limits (the key's and its tenant's) are decided in one atomic step:
a request counts against all of them or none, so a request refused by the
tenant's limit does not use up the key's allowance. In Redis that step is a
Lua script, which reads the clock from Redis ``TIME`` so that gateways with
slightly different clocks still agree. Times are integer microseconds, the
same arithmetic in Lua (exact in doubles at this size) and in Python.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from voxgate import errors
from voxgate.errors import VoxgateError
from voxgate.serving.principal import Principal
from voxgate.serving.redis import RedisConnection

log = logging.getLogger("voxgate.limits")

US = 1_000_000
MINUTE_S = 60.0

Clock = Callable[[], float]  # seconds since the epoch, like time.time


class LimiterUnavailable(Exception):
    """The shared store did not answer. Callers let the request through (a
    Redis outage should not take the whole API down) and log it."""


@dataclass(frozen=True, slots=True)
class Rate:
    """One limit to apply: ``limit`` requests per ``period_s``, counted
    under ``key``. ``scope`` names it for people ("API key", "tenant")."""

    key: str
    limit: int
    period_s: float = MINUTE_S
    scope: str = "caller"

    @property
    def period_us(self) -> int:
        return round(self.period_s * US)

    @property
    def interval_us(self) -> int:
        """Time one request occupies. A limit of 0 gets an interval longer
        than the period, so every request is refused and nothing is stored."""
        if self.limit < 1:
            return 2 * self.period_us
        return max(1, self.period_us // self.limit)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may pass, and the figures for its headers.

    ``reset``: seconds until the limit is fully available again.
    ``retry_after``: seconds until the next request would be allowed (0 when
    this one was)."""

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float
    key: str = ""
    scope: str = "caller"

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(math.ceil(self.reset))),
        ]


def _step(rate: Rate, now: int, stored: int | None) -> tuple[Decision, int]:
    """GCRA for one rate: the decision and the TAT to store if allowed."""
    period, interval = rate.period_us, rate.interval_us
    tat = now if stored is None else max(stored, now)
    new_tat = tat + interval
    if new_tat - now <= period:
        decision = Decision(
            allowed=True,
            limit=rate.limit,
            remaining=(period - (new_tat - now)) // interval,
            reset=(new_tat - now) / US,
            retry_after=0.0,
            key=rate.key,
            scope=rate.scope,
        )
    else:
        decision = Decision(
            allowed=False,
            limit=rate.limit,
            remaining=0,
            reset=(tat - now) / US,
            retry_after=(new_tat - now - period) / US,
            key=rate.key,
            scope=rate.scope,
        )
    return decision, new_tat


def _combine(decisions: Sequence[Decision]) -> Decision:
    """Refused: the limit that keeps the caller waiting longest. Allowed: the
    tightest one (fewest remaining), which is what the headers describe."""
    refused = [d for d in decisions if not d.allowed]
    if refused:
        return max(refused, key=lambda d: d.retry_after)
    return min(decisions, key=lambda d: (d.remaining, d.limit, -d.reset))


class RateLimiter(Protocol):
    async def hit(self, rates: Sequence[Rate]) -> Decision:
        """Count one request against every rate, or against none if any refuses."""
        ...


class InMemoryRateLimiter:
    """One gateway's own limits. Entries whose TAT has passed are dropped at
    most every ``sweep_s``, so the table holds only keys active within the
    last period (plus ``sweep_s``), however many addresses come and go."""

    def __init__(self, *, clock: Clock = time.time, sweep_s: float = 10.0) -> None:
        self._clock = clock
        self._sweep_us = round(sweep_s * US)
        self._next_sweep = 0
        self._tats: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, rates: Sequence[Rate]) -> Decision:
        if not rates:
            raise ValueError("hit() needs at least one rate")
        now = round(self._clock() * US)
        self._sweep(now)
        steps = [_step(r, now, self._tats.get(r.key)) for r in rates]
        if all(d.allowed for d, _ in steps):
            for rate, (_, new_tat) in zip(rates, steps, strict=True):
                self._tats[rate.key] = new_tat
        return _combine([d for d, _ in steps])

    def _sweep(self, now: int) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_us
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now}


# KEYS: one per rate. ARGV[1]: now in µs, or "" to read Redis TIME;
# ARGV[2i], ARGV[2i+1]: interval and period of rate i, in µs.
# Returns {now, tat_1 .. tat_n} (stored TATs before this request, 0 if none);
# stores the new TATs only if every rate allows the request.
_GCRA_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local stored = {}
local new_tats = {}
local refused = false
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  stored[i] = tat or 0
  if not tat or tat < now then tat = now end
  new_tats[i] = tat + interval
  if new_tats[i] - now > period then refused = true end
end
if not refused then
  for i = 1, #KEYS do
    local ttl_ms = math.ceil((new_tats[i] - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', ttl_ms)
  end
end
local out = {now}
for i = 1, #KEYS do out[i + 1] = stored[i] end
return out
"""


class RedisRateLimiter:
    """Limits shared by every gateway on one Redis. ``clock`` is for tests;
    by default the time is Redis's own, read inside the script."""

    def __init__(self, redis: RedisConnection, *, clock: Clock | None = None) -> None:
        self._redis = redis
        self._clock = clock
        self._script = redis.client.register_script(_GCRA_LUA)

    async def hit(self, rates: Sequence[Rate]) -> Decision:
        if not rates:
            raise ValueError("hit() needs at least one rate")
        keys = [self._redis.key("rl", r.key) for r in rates]
        args: list[int | str] = ["" if self._clock is None else round(self._clock() * US)]
        for r in rates:
            args += [r.interval_us, r.period_us]
        try:
            reply = await self._script(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis rate limiter: {exc}") from exc
        now, *stored = (int(v) for v in reply)
        # The same arithmetic as the script, so the decision is the one it took.
        decisions = [_step(r, now, s or None)[0] for r, s in zip(rates, stored, strict=True)]
        return _combine(decisions)


class RateLimited(VoxgateError):
    """429 ``rate_limited`` with ``Retry-After`` and the ``X-RateLimit-*``
    headers of the limit that refused."""

    default_code = errors.RATE_LIMITED

    def __init__(self, decision: Decision) -> None:
        wait = max(1, math.ceil(decision.retry_after))
        super().__init__(
            f"too many requests: the limit for this {decision.scope} is "
            f"{decision.limit} per minute",
            hint=f"Retry in {wait} s (Retry-After). X-RateLimit-Remaining shows "
            "what is left; spread requests out, or ask for a higher limit.",
            retry_after=decision.retry_after,
        )
        self.decision = decision

    def headers(self) -> dict[str, str]:
        # Rounded up: a client that waits the rounded-down time is refused again.
        return {
            "Retry-After": str(max(1, math.ceil(self.decision.retry_after))),
            **dict(self.decision.headers()),
        }


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """Which per-minute limits apply to a caller.

    - its own: the key's ``requests_per_minute``; else ``default_rpm`` for an
      authenticated caller, ``anonymous_rpm`` (per address) for an anonymous one;
    - its tenant's ``requests_per_minute``, shared by all the tenant's keys.

    ``None`` everywhere (the default) means no limit and no work at all."""

    default_rpm: int | None = None
    anonymous_rpm: int | None = None

    def rates(self, who: Principal) -> list[Rate]:
        rates = []
        own = who.limits.requests_per_minute
        if own is None:
            own = self.default_rpm if who.authenticated else self.anonymous_rpm
        if own is not None:
            rates.append(Rate(who.limit_key, own, scope=_scope(who)))
        shared = who.tenant_limits.requests_per_minute
        if shared is not None:
            rates.append(Rate(f"tenant:{who.tenant}", shared, scope="tenant"))
        return rates


def _scope(who: Principal) -> str:
    if who.key_id:
        return "API key"
    return "caller" if who.authenticated else "address"


class RequestLimits:
    """The one call every surface makes per request: HTTP middleware
    (api/limits.py) and, where wired, the gRPC service."""

    def __init__(self, limiter: RateLimiter, policy: RatePolicy) -> None:
        self.limiter = limiter
        self.policy = policy

    async def check(self, who: Principal) -> Decision | None:
        """Count one request for ``who``; raise :class:`RateLimited` if a limit
        refuses it. ``None`` when no limit applies: administrators, callers
        with no limit configured, or a store that does not answer (limits
        fail open: a Redis outage must not refuse every request)."""
        rates = [] if who.admin else self.policy.rates(who)
        if not rates:
            return None
        try:
            decision = await self.limiter.hit(rates)
        except LimiterUnavailable as exc:
            log.warning("rate limits not applied: %s", exc, extra={"error": "limits_unavailable"})
            return None
        if not decision.allowed:
            raise RateLimited(decision)
        return decision


def build_request_limits(redis: RedisConnection | None, policy: RatePolicy) -> RequestLimits:
    limiter = RedisRateLimiter(redis) if redis is not None else InMemoryRateLimiter()
    return RequestLimits(limiter, policy)
