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


async def settle() -> None:
    """Let every ready task run until it waits again."""
    for _ in range(10):
        await asyncio.sleep(0)


async def _served_order(adm: Admission, requests: list[tuple[str, Priority]]) -> list[str]:
    """Queue ``requests`` (tenant, class) behind a held slot, then let them
    through one at a time; the order in which tenants were served."""
    held = await adm.acquire()
    order: list[str] = []
    gate = asyncio.Event()

    async def take(tenant: str, priority: Priority) -> None:
        lease = await adm.acquire(priority, tenant)
        order.append(tenant)
        await gate.wait()
        lease.release()

    tasks = []
    for tenant, priority in requests:
        tasks.append(asyncio.create_task(take(tenant, priority)))
        await settle()
    held.release()
    while len(order) < len(requests):
        await settle()
        release, gate = gate, asyncio.Event()
        release.set()
    gate.set()
    await asyncio.gather(*tasks)
    return order


async def test_fair_share_between_tenants() -> None:
    """A tenant with a backlog of eight does not make a tenant with two wait
    behind all of it: slots alternate while both have waiters."""
    adm = Admission("e", capacity=1, max_queue=100, max_wait_s=5)
    order = await _served_order(
        adm, [("big", Priority.REALTIME)] * 8 + [("small", Priority.REALTIME)] * 2
    )
    assert order[:4] == ["big", "small", "big", "small"]
    assert order.count("big") == 8


async def test_fair_share_counts_slots_already_held() -> None:
    adm = Admission("e", capacity=3, max_queue=100, max_wait_s=5)
    held = [await adm.acquire(Priority.REALTIME, "big") for _ in range(2)]
    other = await adm.acquire(Priority.REALTIME, "small")
    waiters = [asyncio.create_task(adm.acquire(Priority.REALTIME, t)) for t in ("big", "small")]
    await settle()
    held[0].release()
    await settle()
    # big and small hold one slot each: a tie, broken by arrival (big's came first)
    assert waiters[0].done()
    assert not waiters[1].done()
    other.release()
    await settle()
    assert waiters[1].done()
    for lease in [held[1], *(w.result() for w in waiters)]:
        lease.release()
    assert adm.in_use == 0


async def test_realtime_pushes_batch_out_of_a_full_queue() -> None:
    adm = Admission("e", capacity=1, max_queue=2, max_wait_s=5)
    held = await adm.acquire()
    batch = [asyncio.create_task(adm.acquire(Priority.BATCH, "jobs")) for _ in range(2)]
    await settle()
    realtime = asyncio.create_task(adm.acquire(Priority.REALTIME, "web"))
    await settle()
    with pytest.raises(Overloaded):
        await batch[1]  # the newest batch waiter gave its place up
    assert not batch[0].done()
    held.release()
    lease = await asyncio.wait_for(realtime, 1)
    lease.release()
    (await asyncio.wait_for(batch[0], 1)).release()
    assert adm.in_use == 0
    assert adm.waiting == 0


async def test_a_full_queue_refuses_the_tenant_that_filled_it() -> None:
    adm = Admission("e", capacity=1, max_queue=3, max_wait_s=5)
    held = await adm.acquire()
    hog = [asyncio.create_task(adm.acquire(Priority.REALTIME, "hog")) for _ in range(3)]
    await settle()
    with pytest.raises(Overloaded):  # hog's fourth is refused, not a waiter
        await adm.acquire(Priority.REALTIME, "hog")
    polite = asyncio.create_task(adm.acquire(Priority.REALTIME, "polite"))
    await settle()
    with pytest.raises(Overloaded):
        await hog[2]  # hog's newest waiter made room for polite
    held.release()
    (await asyncio.wait_for(hog[0], 1)).release()  # hog came first...
    await settle()
    assert polite.done()  # ...but polite is served before hog's second
    assert not hog[1].done()
    polite.result().release()
    (await asyncio.wait_for(hog[1], 1)).release()
    assert adm.in_use == 0


async def test_reserved_slots_stay_free_for_realtime() -> None:
    adm = Admission("e", capacity=2, max_queue=10, max_wait_s=5, reserved_realtime=1)
    job = await adm.acquire(Priority.BATCH, "jobs")
    second_job = asyncio.create_task(adm.acquire(Priority.BATCH, "jobs"))
    await settle()
    assert not second_job.done()  # the last slot is kept for realtime
    realtime = await asyncio.wait_for(adm.acquire(Priority.REALTIME, "web"), 1)
    assert realtime.waited_s == 0.0
    realtime.release()
    assert not second_job.done()
    job.release()
    (await asyncio.wait_for(second_job, 1)).release()


async def test_refused_at_once_when_the_expected_wait_is_too_long() -> None:
    adm = Admission("e", capacity=1, max_queue=100, max_wait_s=0.5)
    for _ in range(2):  # measure a hold time of about 0.2 s
        lease = await adm.acquire()
        await asyncio.sleep(0.2)
        lease.release()
    held = await adm.acquire()
    waiters = [asyncio.create_task(adm.acquire()) for _ in range(2)]
    await settle()
    with pytest.raises(Overloaded) as refused:
        await adm.acquire()  # 3 ahead x ~0.2 s > 0.5 s: no point in waiting
    assert "expected wait" in refused.value.message
    assert adm.waiting == 2  # refused without ever joining the queue
    assert refused.value.retry_after
    assert refused.value.retry_after >= 1
    held.release()
    for task in waiters:
        (await asyncio.wait_for(task, 2)).release()
    assert adm.in_use == 0


async def test_batch_waits_longer_than_realtime() -> None:
    adm = Admission("e", capacity=1, max_queue=10, max_wait_s=0.05, max_wait_batch_s=5)
    held = await adm.acquire()
    batch = asyncio.create_task(adm.acquire(Priority.BATCH, "jobs"))
    with pytest.raises(Overloaded):
        await adm.acquire(Priority.REALTIME)
    await asyncio.sleep(0.1)
    assert not batch.done()
    held.release()
    (await asyncio.wait_for(batch, 1)).release()
