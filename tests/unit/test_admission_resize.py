"""Admission follows an engine whose capacity changes while serving (workers
that come and go): more capacity admits waiters at once, less lets the slots
already held run to their end."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.redis import REDIS_URL
from voxgate.errors import Overloaded
from voxgate.serving.admission import Admission, Priority
from voxgate.serving.redis import RedisConnection
from voxgate.serving.shared_admission import SharedAdmission


async def test_growing_capacity_admits_waiters_at_once() -> None:
    admission = Admission("w", 1, max_queue=8, max_wait_s=5)
    held = await admission.acquire()
    waiters = [asyncio.create_task(admission.acquire()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert admission.waiting == 2
    admission.resize(3)
    leases = await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert admission.in_use == 3
    assert admission.waiting == 0
    for lease in [held, *leases]:
        lease.release()


async def test_shrinking_capacity_keeps_held_slots_and_admits_no_more() -> None:
    admission = Admission("w", 3, max_queue=8, max_wait_s=0.2)
    leases = [await admission.acquire() for _ in range(3)]
    admission.resize(1)
    assert admission.capacity == 1
    assert admission.in_use == 3  # nothing is taken away
    with pytest.raises(Overloaded):
        await admission.acquire()
    for lease in leases[:2]:
        lease.release()
    with pytest.raises(Overloaded):  # two of three released: still at the new capacity
        await admission.acquire()
    leases[2].release()
    (await admission.acquire()).release()


async def test_reserved_realtime_slots_come_back_with_capacity() -> None:
    # Built while its engine's workers are unknown (capacity 1), the reserve is
    # clamped to zero; it returns when the workers' capacity arrives.
    admission = Admission("w", 1, max_queue=8, max_wait_s=0.1, reserved_realtime=2)
    assert admission.reserved_realtime == 0
    admission.resize(4)
    assert admission.reserved_realtime == 2
    batch = [await admission.acquire(Priority.BATCH) for _ in range(2)]
    with pytest.raises(Overloaded):
        await admission.acquire(Priority.BATCH)
    realtime = await admission.acquire(Priority.REALTIME)
    for lease in [*batch, realtime]:
        lease.release()
    admission.resize(0)
    assert admission.capacity == 1  # never below one slot


async def test_shared_admission_applies_a_new_capacity_on_its_next_step(
    redis_prefix: str,
) -> None:
    redis = RedisConnection(REDIS_URL, redis_prefix)
    admission = SharedAdmission("w", 1, 8, 5.0, redis=redis, poll_s=0.01)
    try:
        held = await admission.acquire()
        waiter = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0.1)
        assert not waiter.done()
        admission.resize(2)
        second = await asyncio.wait_for(waiter, 2)
        assert admission.in_use == 2
        held.release()
        second.release()
    finally:
        await admission.close()
        await redis.close()
