"""Admission shared through the machine's real Redis: two SharedAdmission
objects stand for two gateways in front of the same engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.redis import REDIS_URL
from voxgate.errors import Overloaded
from voxgate.serving.admission import Priority
from voxgate.serving.redis import RedisConnection
from voxgate.serving.shared_admission import SharedAdmission


@pytest.fixture
async def gateways(redis_prefix: str) -> AsyncIterator[tuple[RedisConnection, RedisConnection]]:
    a, b = RedisConnection(REDIS_URL, redis_prefix), RedisConnection(REDIS_URL, redis_prefix)
    yield a, b
    await a.close()
    await b.close()


def pair(
    gateways: tuple[RedisConnection, RedisConnection], **options: object
) -> tuple[SharedAdmission, SharedAdmission]:
    settings: dict[str, object] = {"capacity": 2, "max_queue": 10, "max_wait_s": 5.0}
    settings.update(options)
    return (
        SharedAdmission("e", redis=gateways[0], **settings),  # type: ignore[arg-type]
        SharedAdmission("e", redis=gateways[1], **settings),  # type: ignore[arg-type]
    )


async def test_capacity_is_shared_by_every_gateway(gateways) -> None:
    a, b = pair(gateways)
    running = 0
    peak = 0

    async def work(adm: SharedAdmission) -> None:
        nonlocal running, peak
        lease = await adm.acquire()
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        lease.release()

    await asyncio.gather(*(work(a if i % 2 else b) for i in range(10)))
    assert peak == 2  # not 2 per gateway
    await asyncio.sleep(0.05)  # releases are written in the background
    lease = await a.acquire()
    assert a.in_use == 1  # every slot came back
    lease.release()
    await a.close()
    await b.close()


async def test_realtime_first_across_gateways(gateways) -> None:
    a, b = pair(gateways, capacity=1)
    held = await a.acquire()
    order: list[str] = []

    async def take(adm: SharedAdmission, name: str, priority: Priority) -> None:
        lease = await adm.acquire(priority, "t")
        order.append(name)
        await asyncio.sleep(0.02)
        lease.release()

    batch = asyncio.create_task(take(a, "batch", Priority.BATCH))
    await asyncio.sleep(0.1)
    realtime = asyncio.create_task(take(b, "realtime", Priority.REALTIME))
    await asyncio.sleep(0.1)
    held.release()
    await asyncio.gather(batch, realtime)
    assert order == ["realtime", "batch"]
    await a.close()
    await b.close()


async def test_fair_share_across_gateways(gateways) -> None:
    """A tenant queueing six on gateway A and a tenant queueing two on B
    alternate instead of B waiting behind all of A's."""
    a, b = pair(gateways, capacity=1)
    held = await a.acquire()
    order: list[str] = []

    async def take(adm: SharedAdmission, tenant: str) -> None:
        lease = await adm.acquire(Priority.REALTIME, tenant)
        order.append(tenant)
        await asyncio.sleep(0.03)
        lease.release()

    tasks = []
    for _ in range(6):
        tasks.append(asyncio.create_task(take(a, "big")))
        await asyncio.sleep(0.01)
    for _ in range(2):
        tasks.append(asyncio.create_task(take(b, "small")))
        await asyncio.sleep(0.01)
    held.release()
    await asyncio.gather(*tasks)
    assert order[:4] == ["big", "small", "big", "small"]
    await a.close()
    await b.close()


async def test_queue_full_and_timeouts_refuse_with_retry_after(gateways) -> None:
    a, b = pair(gateways, capacity=1, max_queue=1, max_wait_s=0.3)
    held = await a.acquire()
    waiter = asyncio.create_task(b.acquire(Priority.REALTIME, "t"))
    await asyncio.sleep(0.1)
    with pytest.raises(Overloaded) as full:
        await a.acquire(Priority.REALTIME, "t")
    assert "queue is full" in full.value.message
    assert full.value.retry_after is not None
    assert full.value.retry_after >= 1
    with pytest.raises(Overloaded) as late:
        await waiter
    assert "no free slot" in late.value.message
    held.release()
    await a.close()
    await b.close()


async def test_realtime_pushes_a_batch_waiter_out_across_gateways(gateways) -> None:
    a, b = pair(gateways, capacity=1, max_queue=1)
    held = await a.acquire()
    batch = asyncio.create_task(a.acquire(Priority.BATCH, "jobs"))
    await asyncio.sleep(0.1)
    realtime = asyncio.create_task(b.acquire(Priority.REALTIME, "web"))
    with pytest.raises(Overloaded) as pushed:
        await batch
    assert "gave its queue place" in pushed.value.message
    held.release()
    (await asyncio.wait_for(realtime, 2)).release()
    await a.close()
    await b.close()


async def test_a_dead_gateways_slots_expire(gateways) -> None:
    a, b = pair(gateways, capacity=1, lease_ttl_s=0.3, max_wait_s=20.0)
    await a.acquire()  # gateway A "dies": it never releases and never renews
    a._renewer.cancel()  # type: ignore[union-attr]
    lease = await asyncio.wait_for(b.acquire(), 20)
    assert lease.waited_s >= 0.2
    lease.release()
    await b.close()


async def test_a_live_gateway_keeps_its_slots(gateways) -> None:
    a, b = pair(gateways, capacity=1, lease_ttl_s=0.3, max_wait_s=0.8)
    held = await a.acquire()  # renewed every 0.1 s, so it outlives its ttl
    with pytest.raises(Overloaded):
        await b.acquire()
    held.release()
    await a.close()
    await b.close()


async def test_a_cancelled_waiter_leaves_no_slot_behind(gateways) -> None:
    a, b = pair(gateways, capacity=1)
    held = await a.acquire()
    waiter = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    held.release()
    await asyncio.sleep(0.1)
    lease = await asyncio.wait_for(a.acquire(), 2)
    assert a.in_use == 1
    lease.release()
    await a.close()
    await b.close()
