from __future__ import annotations

import asyncio

import pytest

from voxgate.errors import Overloaded
from voxgate.serving.admission import Admission, Priority


async def test_capacity_then_queue_then_refusal() -> None:
    adm = Admission("e", capacity=2, max_queue=1, max_wait_s=5)
    a = await adm.acquire()
    b = await adm.acquire()
    waiter = asyncio.create_task(adm.acquire())
    await asyncio.sleep(0)
    assert adm.stats().in_use == 2
    assert adm.waiting == 1
    with pytest.raises(Overloaded) as exc:
        await adm.acquire()
    assert exc.value.status == 503
    assert exc.value.retry_after
    assert exc.value.retry_after >= 1
    assert "Retry-After" in exc.value.headers()
    a.release()
    c = await asyncio.wait_for(waiter, 1)
    assert adm.stats().in_use == 2
    for lease in (b, c):
        lease.release()
        lease.release()  # idempotent
    assert adm.stats().in_use == 0


async def test_wait_times_out_with_503() -> None:
    adm = Admission("e", capacity=1, max_queue=5, max_wait_s=0.05)
    held = await adm.acquire()
    with pytest.raises(Overloaded):
        await adm.acquire()
    assert adm.waiting == 0
    assert adm.stats().rejected == 1
    held.release()
    assert adm.stats().in_use == 0


async def test_realtime_before_batch() -> None:
    adm = Admission("e", capacity=1, max_queue=10, max_wait_s=5)
    held = await adm.acquire()
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        lease = await adm.acquire(priority)
        order.append(name)
        lease.release()

    tasks = [asyncio.create_task(take("batch1", Priority.BATCH))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("rt", Priority.REALTIME)))
    await asyncio.sleep(0)
    held.release()
    await asyncio.gather(*tasks)
    assert order == ["rt", "batch1"]


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    adm = Admission("e", capacity=1, max_queue=10, max_wait_s=5)
    held = await adm.acquire()
    waiter = asyncio.create_task(adm.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.release()
    assert adm.stats().in_use == 0
    assert adm.waiting == 0
    lease = await asyncio.wait_for(adm.acquire(), 1)
    lease.release()
