"""Admission control shared by several gateways through Redis.

When several gateways front the same engine endpoints (a CosyVoice server, a
pool of GPU workers), each gateway's own :class:`~voxgate.serving.admission.
Admission` would let ``capacity`` requests in *per gateway*, and N gateways
would overrun the GPU N times over. Here the slots, the wait queue and the
fair-share clocks live in Redis, and every decision is one Lua script, so
the rules are exactly those of the in-process admission (priority class, then
the tenant holding the fewest slots, then the least recently served, then
arrival) across every gateway.

How it stays safe when processes die:

* a slot is a member of a sorted set scored by its expiry; the gateway holding
  it renews all its slots every ``lease_ttl_s / 3``. A gateway killed with
  SIGKILL stops renewing, and its slots free themselves after ``lease_ttl_s``;
* a waiter refreshes its own expiry each time it polls; a waiter whose
  gateway died is dropped after ``waiter_ttl_s``;
* grants are written by whoever runs the dispatch (a release, or any
  waiter's poll) into a hash the granted waiter reads on its next poll, so a
  slot is never handed to a process that is not there to take it for long.

Waiters poll (every ``poll_s``) rather than subscribe: under contention the
cost is a few small scripts per waiter per second, and there is no
connection state to lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from typing import Any

from voxgate.errors import Overloaded
from voxgate.serving.admission import AdmissionLimits, AdmissionStats, Lease, Priority
from voxgate.serving.redis import RedisConnection
from voxgate.store.models import DEFAULT_TENANT

# Shared by both scripts: expire, count, and hand free slots to waiters.
_COMMON = """
local slots, queue, wmeta, vt, clock, granted, gone, holds = unpack(KEYS)
-- Redis's clock, not the gateways': they may disagree by more than a lease
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
local lease_ttl = tonumber(ARGV[4])

redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)

local function split(s)
  local out = {}
  for part in string.gmatch(s, '([^|]+)') do out[#out + 1] = part end
  return out
end

local function load_waiters()
  local waiters = {}
  local members = redis.call('ZRANGE', queue, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id, seq = members[i], tonumber(members[i + 1])
    local meta = redis.call('HGET', wmeta, id)
    local fields = meta and split(meta)
    if not fields or tonumber(fields[3]) < now then
      redis.call('ZREM', queue, id)
      redis.call('HDEL', wmeta, id)
    else
      waiters[#waiters + 1] = {id = id, tenant = fields[1], prio = tonumber(fields[2]), seq = seq}
    end
  end
  return waiters
end

local function usage()
  local by_tenant, by_prio, total = {}, {[0] = 0, [1] = 0}, 0
  for _, m in ipairs(redis.call('ZRANGE', slots, 0, -1)) do
    local f = split(m)
    by_tenant[f[2]] = (by_tenant[f[2]] or 0) + 1
    by_prio[tonumber(f[3])] = by_prio[tonumber(f[3])] + 1
    total = total + 1
  end
  return by_tenant, by_prio, total
end

local function can_start(prio, by_prio, total)
  if total >= capacity then return false end
  if prio == 0 then return true end
  return by_prio[1] < capacity - reserved
end

local function better(a, b, by_tenant)
  if b == nil then return true end
  if a.prio ~= b.prio then return a.prio < b.prio end
  local ua, ub = by_tenant[a.tenant] or 0, by_tenant[b.tenant] or 0
  if ua ~= ub then return ua < ub end
  local va = tonumber(redis.call('HGET', vt, a.tenant) or '0')
  local vb = tonumber(redis.call('HGET', vt, b.tenant) or '0')
  if va ~= vb then return va < vb end
  return a.seq < b.seq
end

local function take(id, tenant, prio, by_tenant, by_prio)
  redis.call('ZADD', slots, now + lease_ttl, id .. '|' .. tenant .. '|' .. prio)
  redis.call('HSET', vt, tenant, redis.call('INCR', clock))
  by_tenant[tenant] = (by_tenant[tenant] or 0) + 1
  by_prio[prio] = by_prio[prio] + 1
end

local function dispatch(waiters, by_tenant, by_prio, total)
  while total < capacity do
    local best, best_i = nil, nil
    for i, w in ipairs(waiters) do
      if w and can_start(w.prio, by_prio, total) and better(w, best, by_tenant) then
        best, best_i = w, i
      end
    end
    if best == nil then return total end
    take(best.id, best.tenant, best.prio, by_tenant, by_prio)
    total = total + 1
    redis.call('ZREM', queue, best.id)
    redis.call('HDEL', wmeta, best.id)
    redis.call('HSET', granted, best.id, best.id .. '|' .. best.tenant .. '|' .. best.prio)
    redis.call('PEXPIRE', granted, 600000)
    waiters[best_i] = false
  end
  return total
end
"""

# ARGV 5..: id, tenant, prio, waiter_ttl, max_queue, mode (arrive | poll | leave)
# returns {status, ahead, in_use, waiting}: status 1 granted, 0 waiting,
# -1 refused (queue full), -2 evicted, -3 unknown (expired while away)
_ACQUIRE = (
    _COMMON
    + """
local id, tenant, prio = ARGV[5], ARGV[6], tonumber(ARGV[7])
local waiter_ttl, max_queue, mode = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]

local waiters = load_waiters()
local by_tenant, by_prio, total = usage()
local function result(status)
  local ahead = 0
  for _, w in ipairs(waiters) do
    if w and w.prio <= prio and w.id ~= id then ahead = ahead + 1 end
  end
  local rt, batch = 0, 0
  for _, w in ipairs(waiters) do
    if w and w.prio == 0 then rt = rt + 1 elseif w then batch = batch + 1 end
  end
  return {status, ahead, total, rt, batch}
end

if mode == 'leave' then
  redis.call('ZREM', queue, id)
  redis.call('HDEL', wmeta, id)
  -- granted while leaving: give the slot back and pass it on
  local member = redis.call('HGET', granted, id)
  if member then
    redis.call('HDEL', granted, id)
    redis.call('ZREM', slots, member)
    by_tenant, by_prio, total = usage()
    dispatch(load_waiters(), by_tenant, by_prio, total)
  end
  return {0, 0, total, 0, 0}
end
if redis.call('HDEL', granted, id) == 1 then return result(1) end
local reason = redis.call('HGET', gone, id)
if reason then
  redis.call('HDEL', gone, id)
  return result(-2)
end

if mode == 'arrive' then
  local ahead = 0
  for _, w in ipairs(waiters) do
    if w.prio <= prio then ahead = ahead + 1 end
  end
  if ahead == 0 and can_start(prio, by_prio, total) then
    take(id, tenant, prio, by_tenant, by_prio)
    total = total + 1
    return result(1)
  end
  if #waiters >= max_queue then
    -- refuse the newcomer, or the newest waiter of the heaviest tenant it outranks
    local mine, counts = 0, {}
    for _, w in ipairs(waiters) do
      if w.prio == prio and w.tenant == tenant then mine = mine + 1 end
      local k = w.prio .. '|' .. w.tenant
      counts[k] = (counts[k] or 0) + 1
    end
    local victim = nil
    for p = 1, 0, -1 do
      if p >= prio and victim == nil then
        local heavy, heavy_n, newest = nil, 0, nil
        for _, w in ipairs(waiters) do
          local n = counts[w.prio .. '|' .. w.tenant]
          if w.prio == p and (n > heavy_n or (n == heavy_n and w.seq > newest.seq)) then
            heavy, heavy_n, newest = w.tenant, n, w
          end
        end
        if heavy ~= nil then
          if p > prio or heavy_n > mine + 1 then victim = newest end
          break
        end
      end
    end
    if victim == nil then return result(-1) end
    redis.call('ZREM', queue, victim.id)
    redis.call('HDEL', wmeta, victim.id)
    redis.call('HSET', gone, victim.id, 'pushed out')
    redis.call('PEXPIRE', gone, 600000)
    for i, w in ipairs(waiters) do
      if w and w.id == victim.id then waiters[i] = false end
    end
  end
  local seq = redis.call('INCR', clock .. ':seq')
  redis.call('ZADD', queue, seq, id)
  waiters[#waiters + 1] = {id = id, tenant = tenant, prio = prio, seq = seq}
end

if redis.call('ZSCORE', queue, id) == false then return result(-3) end
redis.call('HSET', wmeta, id, tenant .. '|' .. prio .. '|' .. (now + waiter_ttl))
total = dispatch(waiters, by_tenant, by_prio, total)
if redis.call('HDEL', granted, id) == 1 then return result(1) end
return result(0)
"""
)

# ARGV 5..: members. Pushes this gateway's slots' expiry forward.
_RENEW = (
    _COMMON
    + """
for i = 5, #ARGV do
  redis.call('ZADD', slots, 'XX', now + lease_ttl, ARGV[i])
end
return 1
"""
)

# ARGV 5..: member, held_ms. Frees a slot, learns the hold time, dispatches.
_RELEASE = (
    _COMMON
    + """
redis.call('ZREM', slots, ARGV[5])
local held = tonumber(ARGV[6])
if held > 0 then
  local mean = tonumber(redis.call('GET', holds) or '0')
  if mean == 0 then mean = held else mean = mean + 0.2 * (held - mean) end
  redis.call('SET', holds, tostring(mean))
end
local waiters = load_waiters()
local by_tenant, by_prio, total = usage()
dispatch(waiters, by_tenant, by_prio, total)
return 1
"""
)


class SharedLease(Lease):
    """A slot held in Redis under ``member``; released like a local lease."""

    __slots__ = ("member",)

    def __init__(
        self,
        admission: SharedAdmission,
        member: str,
        tenant: str,
        priority: Priority,
        waited_s: float,
    ) -> None:
        super().__init__(admission, tenant, priority, waited_s)
        self.member = member


class SharedAdmission(AdmissionLimits):
    """The same contract as :class:`~voxgate.serving.admission.Admission`,
    with its state in Redis (see the module docstring)."""

    def __init__(
        self,
        name: str,
        capacity: int,
        max_queue: int,
        max_wait_s: float,
        *,
        redis: RedisConnection,
        max_wait_batch_s: float | None = None,
        reserved_realtime: int = 0,
        lease_ttl_s: float = 30.0,
        waiter_ttl_s: float = 2.0,
        poll_s: float = 0.015,
    ) -> None:
        super().__init__(name, capacity, max_queue, max_wait_s, max_wait_batch_s, reserved_realtime)
        self.lease_ttl_s = lease_ttl_s
        self.waiter_ttl_s = waiter_ttl_s
        self.poll_s = poll_s
        self._redis = redis
        base = ("adm", name)
        self._keys = [
            redis.key(*base, part)
            for part in ("slots", "queue", "wmeta", "vt", "clock", "granted", "gone", "holds")
        ]
        self._acquire = redis.client.register_script(_ACQUIRE)
        self._release_script = redis.client.register_script(_RELEASE)
        self._renew_script = redis.client.register_script(_RENEW)
        self._held: dict[str, SharedLease] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._admitted = 0
        self._in_use = 0  # last seen, across every gateway
        self._waiting = {p.name.lower(): 0 for p in Priority}

    # -- the Admission contract ---------------------------------------------------

    @property
    def waiting(self) -> int:
        return sum(self._waiting.values())

    @property
    def in_use(self) -> int:
        return self._in_use

    def stats(self) -> AdmissionStats:
        """Counters as last seen (sync, for /v1/engines and metrics)."""
        by_priority = {p.name.lower(): 0 for p in Priority}
        for lease in self._held.values():
            by_priority[lease.priority.name.lower()] += 1
        return AdmissionStats(
            capacity=self.capacity,
            in_use=self._in_use,
            waiting=dict(self._waiting),
            admitted=self._admitted,
            rejected=self._rejected,
            in_use_by_priority=by_priority,
        )

    def retry_after(
        self, priority: Priority = Priority.REALTIME, ahead: int | None = None
    ) -> float:
        return self._retry_after_s((self.waiting if ahead is None else ahead) + 1, self._mean_hold)

    async def acquire(
        self,
        priority: Priority = Priority.REALTIME,
        tenant: str = DEFAULT_TENANT,
        *,
        max_wait_s: float | None = None,
    ) -> SharedLease:
        if max_wait_s is None:
            max_wait_s = self._wait_for(priority)
        self._ensure_renewer()
        waiter = uuid.uuid4().hex
        tenant = tenant.replace("|", "%7C")  # the scripts split members on "|"
        started = time.monotonic()
        deadline = started + max_wait_s
        mode = "arrive"
        try:
            while True:
                status, ahead = await self._step(waiter, tenant, priority, mode)
                if status == 1:
                    return self._granted(waiter, tenant, priority, started)
                if mode == "arrive":
                    # Only a request that must wait or be refused needs the
                    # mean hold (expected wait, Retry-After): one round trip
                    # less for every request granted at once.
                    await self._learn_hold()
                if status == -1:
                    raise self._refuse("is at capacity and its queue is full", ahead)
                if status == -2:
                    raise self._refuse(
                        "is at capacity; this request gave its queue place to a "
                        "higher-priority or less-served request",
                        ahead,
                    )
                if status == -3:
                    raise self._refuse("lost this request's queue place", ahead)
                expected = math.ceil((ahead + 1) / self.capacity) * self._mean_hold
                if mode == "arrive" and self._hold_known and expected > max_wait_s:
                    await self._leave(waiter)
                    raise self._refuse(
                        f"is busy: the expected wait exceeds {max_wait_s:g} s", ahead
                    )
                if time.monotonic() >= deadline:
                    await self._leave(waiter)
                    raise self._refuse(f"had no free slot within {max_wait_s:g} s", ahead)
                mode = "poll"
                await asyncio.sleep(self.poll_s)
        except asyncio.CancelledError:
            # A grant may have landed meanwhile: leaving drops it from the
            # queue; a slot already taken is found and freed by member name.
            self._spawn(self._abandon(waiter, tenant, priority))
            raise

    def resize(self, capacity: int) -> None:
        """A new capacity (an engine's workers came or went): every script
        reads it from its arguments, so the next poll or release applies it."""
        self._set_capacity(capacity)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for lease in list(self._held.values()):
            lease.release()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- internals ---------------------------------------------------------------

    _mean_hold = 1.0
    _hold_known = False

    def _argv(self, *extra: str | int) -> list[str | int]:
        return [
            0,  # unused: the scripts read Redis's clock
            self.capacity,
            self.reserved_realtime,
            int(self.lease_ttl_s * 1000),
            *extra,
        ]

    async def _step(
        self, waiter: str, tenant: str, priority: Priority, mode: str
    ) -> tuple[int, int]:
        argv = self._argv(
            waiter,
            tenant,
            int(priority),
            int(self.waiter_ttl_s * 1000),
            self.max_queue,
            mode,
        )
        status, ahead, in_use, realtime, batch = await self._acquire(keys=self._keys, args=argv)
        self._in_use = int(in_use)
        self._waiting = {"realtime": int(realtime), "batch": int(batch)}
        return int(status), int(ahead)

    async def _leave(self, waiter: str) -> None:
        await self._step(waiter, "", Priority.REALTIME, "leave")

    async def _abandon(self, waiter: str, tenant: str, priority: Priority) -> None:
        status, _ = await self._step(waiter, tenant, priority, "poll")
        if status == 1:
            self._granted(waiter, tenant, priority, time.monotonic()).release()
        else:
            await self._leave(waiter)

    async def _learn_hold(self) -> None:
        raw = await self._redis.client.get(self._keys[7])
        if raw:
            self._mean_hold = max(0.001, float(raw) / 1000)
            self._hold_known = True

    def _granted(self, waiter: str, tenant: str, priority: Priority, started: float) -> SharedLease:
        member = f"{waiter}|{tenant}|{int(priority)}"
        lease = SharedLease(self, member, tenant, priority, time.monotonic() - started)
        self._held[member] = lease
        self._admitted += 1
        return lease

    def _release(self, lease: SharedLease, held_s: float) -> None:
        self._held.pop(lease.member, None)
        argv = self._argv(lease.member, int(held_s * 1000))
        self._spawn(self._release_script(keys=self._keys, args=argv))

    def _refuse(self, why: str, ahead: int) -> Overloaded:
        return self._overloaded(f"engine {self.name!r} {why}", self.retry_after(ahead=ahead))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name=f"admission-renew-{self.name}")

    async def _renew(self) -> None:
        """Keep this gateway's slots alive; a dead gateway's slots expire."""
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            if not self._held:
                continue
            with contextlib.suppress(Exception):  # Redis down: retried next round
                await self._renew_script(keys=self._keys, args=self._argv(*self._held))
