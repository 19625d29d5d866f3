"""Admission control: at most ``capacity`` syntheses per engine, a bounded
wait for the rest, and an early 503 with ``Retry-After`` beyond that
(DESIGN rule 4). A GPU model serves a handful of requests at once; letting
more in only makes every one of them slower.

Who gets the next free slot:

1. **Priority class.** Realtime before batch, always. A batch backlog of any
   size delays a realtime request by at most the time until one slot frees
   (and ``reserved_realtime`` slots can be kept from batch work entirely).
2. **Fair share between tenants.** Within a class, the slot goes to the
   tenant holding the fewest slots right now; among equals, to the one
   served least recently (start-time fair queuing: a virtual clock per
   tenant), so a tenant sending a hundred requests cannot starve one sending
   two, and slots alternate while both wait. Each tenant's own requests stay
   first come, first served.

Who is refused, and when — quickly, never after a long wait for nothing:

- when the expected wait (requests ahead / capacity × the measured mean
  hold time) already exceeds the longest allowed wait, at once;
- when the queue is full: the newcomer is refused, unless it outranks the
  newest waiter of the tenant with the most waiters (a higher class, or the
  same class from a tenant with fewer waiters). Then that waiter is refused
  instead, so one tenant's backlog cannot lock everyone else out;
- when no slot frees within the longest wait (``max_wait_s``, per class).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from voxgate.errors import Overloaded
from voxgate.store.models import DEFAULT_TENANT


class Priority(IntEnum):
    REALTIME = 0
    BATCH = 1

    @classmethod
    def parse(cls, value: str | None) -> Priority:
        if value is None or value == "":
            return cls.REALTIME
        return cls[value.upper()]


@dataclass(slots=True)
class AdmissionStats:
    capacity: int
    in_use: int
    waiting: dict[str, int]
    admitted: int
    rejected: int
    in_use_by_priority: dict[str, int] = field(default_factory=dict)
    tenants_waiting: int = 0
    mean_hold_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "capacity": self.capacity,
            "in_use": self.in_use,
            "waiting": self.waiting,
            "admitted": self.admitted,
            "rejected": self.rejected,
            "in_use_by_priority": self.in_use_by_priority,
            "tenants_waiting": self.tenants_waiting,
            "mean_hold_s": round(self.mean_hold_s, 4),
        }


class Slot(Protocol):
    """An admitted slot: what the pipeline holds while a synthesis runs."""

    waited_s: float

    def release(self) -> None: ...


class AdmissionControl(Protocol):
    """What the pipeline needs from admission, in-process (:class:`Admission`)
    or shared by several gateways through Redis (``shared_admission.py``)."""

    name: str
    capacity: int

    @property
    def waiting(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    def stats(self) -> AdmissionStats: ...

    async def acquire(
        self,
        priority: Priority = ...,
        tenant: str = ...,
        *,
        max_wait_s: float | None = None,
    ) -> Slot: ...

    async def close(self) -> None: ...


class _Releaser(Protocol):
    def _release(self, lease: Any, held_s: float) -> None: ...


class Lease:
    """One admitted slot. Release it exactly once (``release`` is idempotent)."""

    __slots__ = ("_admission", "_released", "acquired_at", "priority", "tenant", "waited_s")

    def __init__(
        self, admission: _Releaser, tenant: str, priority: Priority, waited_s: float
    ) -> None:
        self._admission = admission
        self._released = False
        self.tenant = tenant
        self.priority = priority
        self.acquired_at = time.monotonic()
        self.waited_s = waited_s

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._release(self, time.monotonic() - self.acquired_at)


@dataclass(slots=True, eq=False)
class _Waiter:
    tenant: str
    priority: Priority
    seq: int
    future: asyncio.Future[None]


class AdmissionLimits:
    """The limits and refusals both admissions share: this module's, and
    :class:`~voxgate.serving.shared_admission.SharedAdmission` with its state
    in Redis. One place for the checks, the realtime reserve's clamp, each
    class's default wait and how a refusal computes its ``Retry-After``."""

    def __init__(
        self,
        name: str,
        capacity: int,
        max_queue: int,
        max_wait_s: float,
        max_wait_batch_s: float | None,
        reserved_realtime: int,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.name = name
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.max_wait_batch_s = max_wait_s if max_wait_batch_s is None else max_wait_batch_s
        self._reserved_wanted = reserved_realtime
        self._rejected = 0
        self._set_capacity(capacity)

    def _set_capacity(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        # never more than capacity - 1: batch work must be able to run at all
        self.reserved_realtime = max(0, min(self._reserved_wanted, self.capacity - 1))

    def _wait_for(self, priority: Priority) -> float:
        """How long a request of this class may wait for a slot by default."""
        return self.max_wait_s if priority is Priority.REALTIME else self.max_wait_batch_s

    def _retry_after_s(self, ahead: int, mean_hold_s: float) -> float:
        """Seconds until ``ahead`` requests (the newcomer included) are likely
        through, between 1 and 60."""
        return max(1.0, min(60.0, math.ceil(ahead / self.capacity) * mean_hold_s))

    def _overloaded(self, message: str, retry_after: float) -> Overloaded:
        self._rejected += 1
        return Overloaded(
            message,
            hint="Retry after the number of seconds in Retry-After, or lower concurrency.",
            retry_after=retry_after,
        )


class Admission(AdmissionLimits):
    def __init__(
        self,
        name: str,
        capacity: int,
        max_queue: int,
        max_wait_s: float,
        *,
        max_wait_batch_s: float | None = None,
        reserved_realtime: int = 0,
    ) -> None:
        super().__init__(name, capacity, max_queue, max_wait_s, max_wait_batch_s, reserved_realtime)
        self._in_use = 0
        self._by_tenant: Counter[str] = Counter()
        self._by_priority: Counter[Priority] = Counter()
        # per class, per tenant, FIFO; dicts keep the tenants' arrival order
        self._queues: dict[Priority, dict[str, deque[_Waiter]]] = {p: {} for p in Priority}
        self._waiting = 0
        self._seq = itertools.count()
        # fair-queuing clocks; only tenants holding or awaiting a slot are kept
        self._vtime: dict[str, int] = {}
        self._clock = 0
        self._admitted = 0
        self._mean_hold_s = 1.0  # exponentially weighted; seeds Retry-After
        self._holds_seen = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def in_use(self) -> int:
        return self._in_use

    def stats(self) -> AdmissionStats:
        return AdmissionStats(
            capacity=self.capacity,
            in_use=self._in_use,
            waiting={
                p.name.lower(): sum(len(q) for q in self._queues[p].values()) for p in Priority
            },
            admitted=self._admitted,
            rejected=self._rejected,
            in_use_by_priority={p.name.lower(): self._by_priority[p] for p in Priority},
            tenants_waiting=len({t for p in Priority for t in self._queues[p]}),
            mean_hold_s=self._mean_hold_s,
        )

    def retry_after(self, priority: Priority = Priority.REALTIME) -> float:
        """Seconds until a slot is likely free for a newcomer of this class."""
        return self._retry_after_s(self._ahead(priority) + 1, self._mean_hold_s)

    def expected_wait(self, priority: Priority = Priority.REALTIME) -> float:
        """How long a newcomer of this class would wait, from the measured hold time."""
        free = self._slots_for(priority) - self._in_use
        if free > 0 and self._ahead(priority) == 0:
            return 0.0
        ahead = self._ahead(priority) + 1
        return math.ceil(ahead / self.capacity) * self._mean_hold_s

    async def acquire(
        self,
        priority: Priority = Priority.REALTIME,
        tenant: str = DEFAULT_TENANT,
        *,
        max_wait_s: float | None = None,
    ) -> Lease:
        if max_wait_s is None:
            max_wait_s = self._wait_for(priority)
        if self._can_start(priority) and self._ahead(priority) == 0:
            self._take(tenant, priority)
            self._admitted += 1
            return Lease(self, tenant, priority, 0.0)
        # Only trust the hold-time estimate once it has been measured.
        if self._holds_seen >= self.capacity and self.expected_wait(priority) > max_wait_s:
            raise self._refuse(
                f"engine {self.name!r} is busy: the expected wait exceeds {max_wait_s:g} s",
                priority,
            )
        if self._waiting >= self.max_queue:
            self._make_room(tenant, priority)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(tenant, priority, next(self._seq), future)
        self._queues[priority].setdefault(tenant, deque()).append(waiter)
        self._waiting += 1
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=max_wait_s)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                if waiter.future.exception() is None:  # granted at the last moment
                    self._admitted += 1
                    return Lease(self, tenant, priority, time.monotonic() - started)
                raise waiter.future.exception() from None  # type: ignore[misc]
            waiter.future.cancel()
            self._discard(waiter)
            raise self._refuse(
                f"engine {self.name!r} had no free slot within {max_wait_s:g} s", priority
            ) from None
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                if waiter.future.exception() is None:
                    # we were granted a slot nobody will use
                    self._release(Lease(self, tenant, priority, 0.0), 0.0)
            else:
                waiter.future.cancel()
                self._discard(waiter)
            raise
        self._admitted += 1
        return Lease(self, tenant, priority, time.monotonic() - started)

    async def close(self) -> None:
        """Nothing to let go of: the state lives in this process."""

    def resize(self, capacity: int) -> None:
        """A new capacity (an engine's workers came or went). Slots held beyond
        a smaller one are kept until released; a larger one admits waiters now."""
        self._set_capacity(capacity)
        self._dispatch()

    # -- internals ---------------------------------------------------------------

    def _slots_for(self, priority: Priority) -> int:
        if priority is Priority.REALTIME:
            return self.capacity
        return self.capacity - self.reserved_realtime

    def _can_start(self, priority: Priority) -> bool:
        if self._in_use >= self.capacity:
            return False
        if priority is Priority.REALTIME:
            return True
        return self._by_priority[Priority.BATCH] < self._slots_for(Priority.BATCH)

    def _ahead(self, priority: Priority) -> int:
        """Waiters that would be served before a newcomer of this class."""
        return sum(len(q) for p in Priority if p <= priority for q in self._queues[p].values())

    def _take(self, tenant: str, priority: Priority) -> None:
        self._clock += 1
        self._vtime[tenant] = self._clock
        self._in_use += 1
        self._by_tenant[tenant] += 1
        self._by_priority[priority] += 1

    def _release(self, lease: Lease, held_s: float) -> None:
        if held_s > 0:
            # the first measurement replaces the seed; then a moving average
            weight = 1.0 if self._holds_seen == 0 else 0.2
            self._mean_hold_s += weight * (held_s - self._mean_hold_s)
            self._holds_seen += 1
        self._in_use -= 1
        self._by_tenant[lease.tenant] -= 1
        if self._by_tenant[lease.tenant] <= 0:
            del self._by_tenant[lease.tenant]
            if not any(lease.tenant in self._queues[p] for p in Priority):
                self._vtime.pop(lease.tenant, None)
        self._by_priority[lease.priority] -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiters: class first, then the least-served tenant."""
        while self._in_use < self.capacity:
            waiter = self._next_waiter()
            if waiter is None:
                return
            self._take(waiter.tenant, waiter.priority)
            waiter.future.set_result(None)

    def _next_waiter(self) -> _Waiter | None:
        for priority in Priority:
            if not self._can_start(priority):
                continue
            tenants = self._queues[priority]
            while tenants:
                tenant = min(tenants, key=lambda t: self._fair_key(t, tenants[t][0]))
                queue = tenants[tenant]
                waiter = queue.popleft()
                if not queue:
                    del tenants[tenant]
                self._waiting -= 1
                if not waiter.future.done():
                    return waiter
        return None

    def _fair_key(self, tenant: str, head: _Waiter) -> tuple[int, int, int]:
        return (self._by_tenant[tenant], self._vtime.get(tenant, 0), head.seq)

    def _discard(self, waiter: _Waiter) -> None:
        queue = self._queues[waiter.priority].get(waiter.tenant)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        self._waiting -= 1
        if not queue:
            del self._queues[waiter.priority][waiter.tenant]

    def _make_room(self, tenant: str, priority: Priority) -> None:
        """The queue is full: refuse the newcomer, or a waiter it outranks."""
        for victim_class in sorted(Priority, reverse=True):
            tenants = self._queues[victim_class]
            if victim_class < priority or not tenants:
                continue
            heaviest = max(tenants, key=lambda t: (len(tenants[t]), tenants[t][-1].seq))
            mine = len(self._queues[priority].get(tenant, ()))
            if victim_class > priority or len(tenants[heaviest]) > mine + 1:
                victim = tenants[heaviest][-1]
                self._discard(victim)
                victim.future.set_exception(
                    self._refuse(
                        f"engine {self.name!r} is at capacity; this request gave its queue "
                        "place to a higher-priority or less-served request",
                        victim.priority,
                    )
                )
                return
            break
        raise self._refuse(f"engine {self.name!r} is at capacity and its queue is full", priority)

    def _refuse(self, message: str, priority: Priority) -> Overloaded:
        return self._overloaded(message, self.retry_after(priority))
