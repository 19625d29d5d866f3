"""Circuit breakers, one per engine endpoint.

A GPU host that has started failing (driver fault, out of memory, a process
stuck in a loop) fails fast, and every request sent to it costs the caller a
full attempt before failover. A breaker counts each endpoint's outcomes over a
rolling window and, once the failure rate passes a threshold with enough
calls to mean something, stops sending it work (*open*) for a cool-down.
Then a few probe calls are let through (*half open*): if they succeed the
endpoint is back (*closed*), if one fails it is open for another cool-down.

Two implementations behind one interface (DESIGN rule 7):

* :class:`LocalBreaker` keeps the counts in this process (embedded mode);
* :class:`RedisBreaker` keeps them in Redis, so that every gateway sharing it
  sees the same counts and opens, probes and closes together. Each change is
  one Lua script: the read-decide-write cannot interleave with another
  gateway's. Time is Redis's own (``TIME`` inside the script), so gateways
  whose clocks disagree still agree on windows and cool-downs; tests inject
  a clock instead, the same one they give :class:`LocalBreaker`.

Only engine faults are recorded as failures; the caller decides what is one
(:class:`Outcome`). Every call goes through a :class:`Permit` carrying the
breaker's *generation*: results of calls that started before a state change
are ignored, so a slow failure from before the breaker closed cannot count
against the fresh window.
"""

from __future__ import annotations

import abc
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from voxgate import errors
from voxgate.errors import VoxgateError

if TYPE_CHECKING:
    from voxgate.config import Settings
    from voxgate.serving.redis import RedisConnection

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # an engine fault: EngineError or an unexpected exception
    IGNORED = "ignored"  # the client went away, or the request itself was at fault


class CircuitOpen(VoxgateError):
    """Every endpoint of an engine is refused by its breaker (503, Retry-After)."""

    default_code = errors.CIRCUIT_OPEN


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_rate: float = 0.05  # open above this share of failed calls...
    window_s: float = 30.0  # ...over this rolling window...
    min_calls: int = 20  # ...once it holds at least this many calls
    cooldown_s: float = 60.0  # open this long, then probe
    half_open_calls: int = 1  # probes at once; this many successes close it
    buckets: int = 10  # resolution of the window: it forgets in steps of window_s/buckets

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate < 1.0:
            raise ValueError("failure_rate must be in [0, 1)")
        if self.window_s <= 0 or self.cooldown_s <= 0:
            raise ValueError("window_s and cooldown_s must be positive")
        if self.min_calls < 1 or self.half_open_calls < 1 or self.buckets < 1:
            raise ValueError("min_calls, half_open_calls and buckets must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerPolicy:
        return cls(
            failure_rate=settings.breaker_failure_rate,
            window_s=settings.breaker_window_s,
            min_calls=settings.breaker_min_calls,
            cooldown_s=settings.breaker_cooldown_s,
            half_open_calls=settings.breaker_half_open_calls,
        )

    @property
    def bucket_s(self) -> float:
        return self.window_s / self.buckets

    def trips(self, calls: int, failures: int) -> bool:
        return calls >= self.min_calls and failures > self.failure_rate * calls


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave for one call; hand it back to :meth:`Breaker.record`."""

    generation: int
    probe: bool


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: BreakerState
    calls: int  # in the window (closed state only; the window restarts on every change)
    failures: int
    allows: bool  # whether a call asking now would be let through
    retry_after_s: float | None  # when it would not: seconds until it might

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "calls": self.calls,
            "failures": self.failures,
            "retry_after_s": None if self.retry_after_s is None else round(self.retry_after_s, 3),
        }


CLOSED_SNAPSHOT = BreakerSnapshot(BreakerState.CLOSED, 0, 0, True, None)


class Breaker(abc.ABC):
    """The breaker of one endpoint."""

    def __init__(self, name: str, policy: BreakerPolicy) -> None:
        self.name = name
        self.policy = policy
        self._last: BreakerSnapshot = CLOSED_SNAPSHOT

    def last_known(self) -> BreakerSnapshot:
        """The state without waiting, for readers that cannot (metrics): exact
        in process, as last seen for a breaker kept elsewhere."""
        return self._last

    @abc.abstractmethod
    async def acquire(self) -> Permit | None:
        """A permit to call the endpoint now, or None while it is refused.
        Moves an open breaker whose cool-down is over to half open and claims
        one of its probe slots."""

    @abc.abstractmethod
    async def record(self, permit: Permit, outcome: Outcome) -> None:
        """The result of a call made under ``permit``."""

    @abc.abstractmethod
    async def snapshot(self) -> BreakerSnapshot:
        """The current state, without claiming anything."""


class BreakerFactory(abc.ABC):
    """Makes the breakers of one gateway (one per endpoint name)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy

    @abc.abstractmethod
    def breaker(self, name: str) -> Breaker: ...


# -- in this process ------------------------------------------------------------


class LocalBreaker(Breaker):
    def __init__(self, name: str, policy: BreakerPolicy, clock: Clock = time.monotonic) -> None:
        super().__init__(name, policy)
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._opened_at = 0.0
        self._half_at = 0.0
        self._claimed = 0
        self._successes = 0
        # (bucket index, calls, failures), oldest first
        self._window: deque[list[int]] = deque()

    def _counts(self, now: float) -> tuple[int, int]:
        first = math.floor(now / self.policy.bucket_s) - self.policy.buckets + 1
        while self._window and self._window[0][0] < first:
            self._window.popleft()
        return sum(b[1] for b in self._window), sum(b[2] for b in self._window)

    def _move(self, state: BreakerState, now: float) -> None:
        self._state = state
        self._generation += 1
        self._window.clear()
        self._claimed = self._successes = 0
        if state is BreakerState.OPEN:
            self._opened_at = now
        elif state is BreakerState.HALF_OPEN:
            self._half_at = now

    def _view(self, now: float) -> BreakerSnapshot:
        p = self.policy
        if self._state is BreakerState.CLOSED:
            calls, failures = self._counts(now)
            snap = BreakerSnapshot(BreakerState.CLOSED, calls, failures, True, None)
        elif self._state is BreakerState.OPEN and now < self._opened_at + p.cooldown_s:
            wait = self._opened_at + p.cooldown_s - now
            snap = BreakerSnapshot(BreakerState.OPEN, 0, 0, False, wait)
        elif self._state is BreakerState.OPEN or now - self._half_at >= p.cooldown_s:
            # Cool-down over (or the last probes never reported): probes may go.
            snap = BreakerSnapshot(BreakerState.HALF_OPEN, 0, 0, True, None)
        elif self._claimed < p.half_open_calls:
            snap = BreakerSnapshot(BreakerState.HALF_OPEN, 0, 0, True, None)
        else:
            wait = self._half_at + p.cooldown_s - now
            snap = BreakerSnapshot(BreakerState.HALF_OPEN, 0, 0, False, wait)
        self._last = snap
        return snap

    def last_known(self) -> BreakerSnapshot:
        return self._view(self._clock())

    async def acquire(self) -> Permit | None:
        now = self._clock()
        p = self.policy
        if self._state is BreakerState.CLOSED:
            return Permit(self._generation, probe=False)
        if self._state is BreakerState.OPEN:
            if now < self._opened_at + p.cooldown_s:
                self._view(now)
                return None
            self._move(BreakerState.HALF_OPEN, now)
        elif now - self._half_at >= p.cooldown_s:  # probes lost (their caller died)
            self._claimed = self._successes = 0
            self._half_at = now
        if self._claimed >= p.half_open_calls:
            self._view(now)
            return None
        self._claimed += 1
        self._view(now)
        return Permit(self._generation, probe=True)

    async def record(self, permit: Permit, outcome: Outcome) -> None:
        now = self._clock()
        if permit.generation != self._generation:
            return  # a call from before the last change of state
        if self._state is BreakerState.HALF_OPEN:
            if permit.probe:
                self._claimed = max(0, self._claimed - 1)
                if outcome is Outcome.FAILURE:
                    self._move(BreakerState.OPEN, now)
                elif outcome is Outcome.SUCCESS:
                    self._successes += 1
                    if self._successes >= self.policy.half_open_calls:
                        self._move(BreakerState.CLOSED, now)
            self._view(now)
            return
        if self._state is not BreakerState.CLOSED or outcome is Outcome.IGNORED:
            return
        index = math.floor(now / self.policy.bucket_s)
        if not self._window or self._window[-1][0] != index:
            self._window.append([index, 0, 0])
        bucket = self._window[-1]
        bucket[1] += 1
        if outcome is Outcome.FAILURE:
            bucket[2] += 1
            if self.policy.trips(*self._counts(now)):
                self._move(BreakerState.OPEN, now)
        self._view(now)

    async def snapshot(self) -> BreakerSnapshot:
        return self._view(self._clock())


class LocalBreakers(BreakerFactory):
    def __init__(self, policy: BreakerPolicy, clock: Clock = time.monotonic) -> None:
        super().__init__(policy)
        self._clock = clock
        self._breakers: dict[str, LocalBreaker] = {}

    def breaker(self, name: str) -> Breaker:
        # One per name: an engine removed and added again keeps its history,
        # like the Redis-backed breakers do.
        found = self._breakers.get(name)
        if found is None:
            found = self._breakers[name] = LocalBreaker(name, self.policy, self._clock)
        return found


# -- shared through Redis ---------------------------------------------------------

# KEYS[1]: the state hash, KEYS[2]: the window hash (fields c:<bucket>, f:<bucket>).
# Every script returns the state fields the caller needs, as strings (Lua
# numbers would be truncated to integers on the way out).

_COMMON = """
local function num(v, d) if v then return tonumber(v) else return d end end
-- ARGV[1]: now in seconds, or "" for Redis's own clock (what production uses:
-- gateways whose clocks disagree still agree on windows and cool-downs)
local function clock()
  local given = tonumber(ARGV[1])
  if given then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function load()
  local f = redis.call('HMGET', KEYS[1], 'state', 'gen', 'opened_at', 'half_at', 'claimed', 'ok')
  return f[1] or 'closed', num(f[2], 0), num(f[3], 0), num(f[4], 0), num(f[5], 0), num(f[6], 0)
end
local function move(state, gen, now)
  redis.call('DEL', KEYS[2])
  local fields = {'state', state, 'gen', gen + 1, 'claimed', 0, 'ok', 0}
  if state == 'open' then table.insert(fields, 'opened_at'); table.insert(fields, now) end
  if state == 'half_open' then table.insert(fields, 'half_at'); table.insert(fields, now) end
  redis.call('HSET', KEYS[1], unpack(fields))
  return gen + 1
end
local function counts(now, width, buckets, prune)
  local first = math.floor(now / width) - buckets + 1
  local all = redis.call('HGETALL', KEYS[2])
  local calls, failures, stale = 0, 0, {}
  for i = 1, #all, 2 do
    local kind, index = string.match(all[i], '^(%a):(-?%d+)$')
    if tonumber(index) < first then
      table.insert(stale, all[i])
    elseif kind == 'c' then calls = calls + tonumber(all[i + 1])
    else failures = failures + tonumber(all[i + 1]) end
  end
  if prune and #stale > 0 then redis.call('HDEL', KEYS[2], unpack(stale)) end
  return calls, failures
end
"""

# ARGV: now, cooldown, half_open_calls -> {allowed, gen, probe, state, wait}
_ACQUIRE = (
    _COMMON
    + """
local now, cooldown, limit = clock(), tonumber(ARGV[2]), tonumber(ARGV[3])
local state, gen, opened_at, half_at, claimed = load()
if state == 'closed' then return {'1', tostring(gen), '0', state, ''} end
if state == 'open' then
  if now < opened_at + cooldown then
    return {'0', tostring(gen), '0', state, tostring(opened_at + cooldown - now)}
  end
  gen = move('half_open', gen, now)
  state, half_at, claimed = 'half_open', now, 0
elseif now - half_at >= cooldown then
  claimed, half_at = 0, now
  redis.call('HSET', KEYS[1], 'claimed', 0, 'ok', 0, 'half_at', now)
end
if claimed >= limit then
  return {'0', tostring(gen), '0', state, tostring(half_at + cooldown - now)}
end
redis.call('HINCRBY', KEYS[1], 'claimed', 1)
return {'1', tostring(gen), '1', state, ''}
"""
)

# ARGV: now, gen, probe, outcome (s|f|i), bucket width, buckets, min_calls,
#       failure_rate, half_open_calls, window ttl ms -> {state}
_RECORD = (
    _COMMON
    + """
local now = clock()
local state, gen, opened_at, half_at, claimed, ok = load()
if tonumber(ARGV[2]) ~= gen then return {state} end
local outcome = ARGV[4]
if state == 'half_open' then
  if ARGV[3] == '1' then
    if outcome == 'f' then move('open', gen, now); return {'open'} end
    redis.call('HSET', KEYS[1], 'claimed', math.max(0, claimed - 1))
    if outcome == 's' then
      if ok + 1 >= tonumber(ARGV[9]) then move('closed', gen, now); return {'closed'} end
      redis.call('HSET', KEYS[1], 'ok', ok + 1)
    end
  end
  return {state}
end
if state ~= 'closed' or outcome == 'i' then return {state} end
local width, buckets = tonumber(ARGV[5]), tonumber(ARGV[6])
local index = math.floor(now / width)
local fresh = redis.call('HINCRBY', KEYS[2], 'c:' .. index, 1) == 1
redis.call('PEXPIRE', KEYS[2], ARGV[10])
if outcome == 'f' then
  redis.call('HINCRBY', KEYS[2], 'f:' .. index, 1)
  local calls, failures = counts(now, width, buckets, true)
  if calls >= tonumber(ARGV[7]) and failures > tonumber(ARGV[8]) * calls then
    move('open', gen, now)
    return {'open'}
  end
elseif fresh then
  counts(now, width, buckets, true)
end
return {state}
"""
)

# ARGV: now, cooldown, half_open_calls, bucket width, buckets
#   -> {state, calls, failures, allows, wait}
_SNAPSHOT = (
    _COMMON
    + """
local now, cooldown, limit = clock(), tonumber(ARGV[2]), tonumber(ARGV[3])
local state, gen, opened_at, half_at, claimed = load()
if state == 'closed' then
  local calls, failures = counts(now, tonumber(ARGV[4]), tonumber(ARGV[5]), false)
  return {state, tostring(calls), tostring(failures), '1', ''}
end
if state == 'open' and now < opened_at + cooldown then
  return {state, '0', '0', '0', tostring(opened_at + cooldown - now)}
end
if state == 'open' or now - half_at >= cooldown or claimed < limit then
  return {'half_open', '0', '0', '1', ''}
end
return {state, '0', '0', '0', tostring(half_at + cooldown - now)}
"""
)

_OUTCOME_ARG = {Outcome.SUCCESS: "s", Outcome.FAILURE: "f", Outcome.IGNORED: "i"}
# The permit given while Redis cannot be reached: its result is not recorded.
_UNCOUNTED = Permit(-1, probe=False)
_WARN_EVERY_S = 30.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreaker(Breaker):
    """Fails open: if Redis cannot be reached, calls are let through (and not
    counted) rather than refused. A breaker protects callers from a failing
    endpoint; it must not become the reason every request fails."""

    def __init__(
        self, name: str, policy: BreakerPolicy, redis: RedisConnection, clock: Clock | None
    ) -> None:
        super().__init__(name, policy)
        self._redis = redis
        self._clock = clock  # None: Redis's clock (see _COMMON)
        self._keys = [redis.key("breaker", name), redis.key("breaker", name, "window")]
        client = redis.client
        self._acquire = client.register_script(_ACQUIRE)
        self._record = client.register_script(_RECORD)
        self._snapshot = client.register_script(_SNAPSHOT)
        self._warned_at = -math.inf

    async def acquire(self) -> Permit | None:
        p = self.policy
        try:
            allowed, gen, probe, state, wait = map(
                _text,
                await self._acquire(
                    keys=self._keys, args=[self._now(), p.cooldown_s, p.half_open_calls]
                ),
            )
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return _UNCOUNTED
        if allowed != "1":
            self._last = BreakerSnapshot(BreakerState(state), 0, 0, False, float(wait))
            return None
        if state != BreakerState.CLOSED:
            self._last = BreakerSnapshot(BreakerState(state), 0, 0, True, None)
        return Permit(int(gen), probe=probe == "1")

    async def record(self, permit: Permit, outcome: Outcome) -> None:
        if permit is _UNCOUNTED or (outcome is Outcome.IGNORED and not permit.probe):
            return  # changes nothing; spare the round trip
        p = self.policy
        args: list[str | int | float] = [
            self._now(),
            permit.generation,
            int(permit.probe),
            _OUTCOME_ARG[outcome],
            p.bucket_s,
            p.buckets,
            p.min_calls,
            p.failure_rate,
            p.half_open_calls,
            max(1000, math.ceil(p.window_s * 2000)),
        ]
        try:
            (state,) = map(_text, await self._record(keys=self._keys, args=args))
            if state != self._last.state:
                await self.snapshot()
        except (RedisError, OSError) as exc:
            self._unreachable(exc)

    async def snapshot(self) -> BreakerSnapshot:
        p = self.policy
        args = [self._now(), p.cooldown_s, p.half_open_calls, p.bucket_s, p.buckets]
        try:
            state, calls, failures, allows, wait = map(
                _text, await self._snapshot(keys=self._keys, args=args)
            )
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return CLOSED_SNAPSHOT
        snap = BreakerSnapshot(
            BreakerState(state),
            int(calls),
            int(failures),
            allows == "1",
            float(wait) if wait else None,
        )
        self._last = snap
        return snap

    def _now(self) -> float | str:
        return "" if self._clock is None else self._clock()

    def _unreachable(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("breaker %s: Redis unreachable (%r); letting calls through", self.name, exc)


class RedisBreakers(BreakerFactory):
    """Breakers whose state is in Redis, shared by every gateway. Time is
    Redis's own (``TIME`` inside each script) unless a test passes ``clock``."""

    def __init__(
        self, policy: BreakerPolicy, redis: RedisConnection, clock: Clock | None = None
    ) -> None:
        super().__init__(policy)
        self._redis = redis
        self._clock = clock
        self._breakers: dict[str, RedisBreaker] = {}

    def breaker(self, name: str) -> Breaker:
        found = self._breakers.get(name)
        if found is None:
            found = self._breakers[name] = RedisBreaker(name, self.policy, self._redis, self._clock)
        return found


def breaker_factory(settings: Settings, redis: RedisConnection | None) -> BreakerFactory:
    """Breakers shared through Redis when there is one, else in this process."""
    policy = BreakerPolicy.from_settings(settings)
    return RedisBreakers(policy, redis) if redis is not None else LocalBreakers(policy)
