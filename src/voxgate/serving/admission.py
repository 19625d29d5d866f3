"""Admission control: at most ``capacity`` syntheses per engine, a bounded
wait for the rest, and an early 503 with ``Retry-After`` beyond that
(DESIGN rule 4). A GPU model serves a handful of requests at once; letting
more in only makes every one of them slower.

Waiters are served by priority class (realtime before batch), first come
first served within a class.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from voxgate.errors import Overloaded


class Priority(IntEnum):
    REALTIME = 0
    BATCH = 1


@dataclass(slots=True)
class AdmissionStats:
    capacity: int
    in_use: int
    waiting: dict[str, int]
    admitted: int
    rejected: int

    def to_dict(self) -> dict[str, object]:
        return {
            "capacity": self.capacity,
            "in_use": self.in_use,
            "waiting": self.waiting,
            "admitted": self.admitted,
            "rejected": self.rejected,
        }


class Lease:
    """One admitted slot. Release it exactly once (``release`` is idempotent)."""

    __slots__ = ("_admission", "_released", "acquired_at", "waited_s")

    def __init__(self, admission: Admission, waited_s: float) -> None:
        self._admission = admission
        self._released = False
        self.acquired_at = time.monotonic()
        self.waited_s = waited_s

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._release(time.monotonic() - self.acquired_at)


class Admission:
    def __init__(self, name: str, capacity: int, max_queue: int, max_wait_s: float) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.name = name
        self.capacity = capacity
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self._in_use = 0
        self._queues: dict[Priority, deque[asyncio.Future[None]]] = {p: deque() for p in Priority}
        self._admitted = 0
        self._rejected = 0
        self._mean_hold_s = 1.0  # exponentially weighted; seeds Retry-After

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def stats(self) -> AdmissionStats:
        return AdmissionStats(
            capacity=self.capacity,
            in_use=self._in_use,
            waiting={p.name.lower(): len(q) for p, q in self._queues.items()},
            admitted=self._admitted,
            rejected=self._rejected,
        )

    def retry_after(self) -> float:
        """Seconds until a slot is likely free for a newcomer."""
        ahead = self.waiting + 1
        return max(1.0, min(60.0, math.ceil(ahead / self.capacity) * self._mean_hold_s))

    async def acquire(self, priority: Priority = Priority.REALTIME) -> Lease:
        if self._in_use < self.capacity and self.waiting == 0:
            self._in_use += 1
            self._admitted += 1
            return Lease(self, 0.0)
        if self.waiting >= self.max_queue:
            self._rejected += 1
            raise Overloaded(
                f"engine {self.name!r} is at capacity and its queue is full",
                hint="Retry after the number of seconds in Retry-After, or lower concurrency.",
                retry_after=self.retry_after(),
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues[priority]
        queue.append(fut)
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=self.max_wait_s)
        except TimeoutError:
            if fut.done() and not fut.cancelled():  # granted at the last moment
                self._admitted += 1
                return Lease(self, time.monotonic() - started)
            fut.cancel()
            _discard(queue, fut)
            self._rejected += 1
            raise Overloaded(
                f"engine {self.name!r} had no free slot within {self.max_wait_s:g} s",
                hint="Retry after the number of seconds in Retry-After.",
                retry_after=self.retry_after(),
            ) from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(0.0)  # we were granted a slot nobody will use
            else:
                fut.cancel()
                _discard(queue, fut)
            raise
        self._admitted += 1
        return Lease(self, time.monotonic() - started)

    def _release(self, held_s: float) -> None:
        if held_s > 0:
            self._mean_hold_s = 0.8 * self._mean_hold_s + 0.2 * held_s
        for priority in Priority:
            queue = self._queues[priority]
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)  # the slot passes on; in_use unchanged
                    return
        self._in_use -= 1


def _discard(queue: deque[asyncio.Future[None]], fut: asyncio.Future[None]) -> None:
    with contextlib.suppress(ValueError):
        queue.remove(fut)
