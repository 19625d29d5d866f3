"""Single flight: a shared synthesis and its readers, in process and across
two gateways' worth of Redis connections on the machine's real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.redis import REDIS_URL
from voxgate.errors import EngineError, Overloaded, VoxgateError
from voxgate.serving.flight import Flight, FlightResult, Flights, RedisFlights
from voxgate.serving.redis import RedisConnection

HEADERS = (("X-Sample-Rate", "24000"), ("X-Voxgate-Engine", "sim"))


async def read_all(flight: Flight) -> bytes:
    subscription = flight.subscribe()
    try:
        return b"".join([chunk async for chunk in subscription])
    finally:
        subscription.close()


async def test_late_readers_get_every_chunk_from_the_start() -> None:
    flight = Flight("k", limit=1_000_000)
    first = asyncio.create_task(read_all(flight))
    flight.append(b"one.")
    flight.append(b"two.")
    await asyncio.sleep(0)
    late = asyncio.create_task(read_all(flight))
    flight.append(b"three.")
    flight.finish(FlightResult(10, 24000))
    assert await first == await late == b"one.two.three."
    assert flight.data() == b"one.two.three."


async def test_the_synthesis_goes_on_when_the_first_reader_leaves() -> None:
    flights = Flights()
    flight = Flight("k", limit=1_000_000)
    produced = asyncio.Event()

    async def produce() -> None:
        for part in (b"a", b"b", b"c"):
            await asyncio.sleep(0.02)
            flight.append(part)
        flight.finish(FlightResult(3, 24000))
        produced.set()

    flights.start(flight, produce())
    leader = flight.subscribe()
    follower = asyncio.create_task(read_all(flight))
    assert await anext(leader) == b"a"
    leader.close()  # the first client disconnects
    assert await follower == b"abc"
    assert produced.is_set()
    assert not flight.abandoned
    await flights.close()


async def test_the_synthesis_is_cancelled_when_every_reader_leaves() -> None:
    flights = Flights()
    flight = Flight("k", limit=1_000_000)
    cancelled = asyncio.Event()

    async def produce() -> None:
        try:
            flight.append(b"a")
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    flights.start(flight, produce())
    a, b = flight.subscribe(), flight.subscribe()
    assert await anext(a) == b"a"
    a.close()
    await asyncio.sleep(0.01)
    assert not cancelled.is_set()
    b.close()
    await asyncio.wait_for(cancelled.wait(), 1)
    assert flights.get("k") is None  # nobody can join a cancelled flight
    await flights.close()


async def test_a_failure_reaches_every_reader_as_its_own_error() -> None:
    flight = Flight("k", limit=1_000_000)
    readers = [asyncio.create_task(read_all(flight)) for _ in range(3)]
    await asyncio.sleep(0)
    refused = Overloaded("engine 'sim' is at capacity", retry_after=2)
    flight.fail(refused, refused=True)
    failures = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(f, Overloaded) for f in failures)
    assert all(f.code == refused.code and f.retry_after == 2 for f in failures)  # type: ignore[union-attr]
    assert len({id(f) for f in failures}) == 3  # copies: tracebacks are per raise
    assert flight.refused


async def test_output_beyond_the_limit_is_bounded_and_paced_by_the_slowest_reader() -> None:
    flights = Flights()
    flight = Flight("k", limit=100)
    chunk = b"x" * 40

    async def produce() -> None:
        for _ in range(10):
            flight.append(chunk)
            await flight.room()
        flight.finish(FlightResult(10, 24000))

    slow, quick = flight.subscribe(), flight.subscribe()

    async def drain() -> bytes:
        parts = [part async for part in quick]
        quick.close()
        return b"".join(parts)

    flights.start(flight, produce())
    fast = asyncio.create_task(drain())
    await asyncio.sleep(0.05)
    # 400 bytes are due; past 100 the producer waits for the slow reader
    assert flight.trimmed
    assert flights.get("k") is None  # no new readers: the start is gone
    assert flight.size <= 100 + 2 * len(chunk)
    assert not fast.done()
    received = []
    async for part in slow:
        received.append(part)
        await asyncio.sleep(0)
    slow.close()
    assert b"".join(received) == chunk * 10
    assert await fast == chunk * 10
    await flights.close()


@pytest.fixture
async def gateways(redis_prefix: str) -> AsyncIterator[tuple[RedisFlights, RedisFlights]]:
    a, b = RedisConnection(REDIS_URL, redis_prefix), RedisConnection(REDIS_URL, redis_prefix)
    yield RedisFlights(a, lock_s=1.0), RedisFlights(b, lock_s=1.0)
    await a.close()
    await b.close()


async def test_another_gateway_follows_the_leading_one(
    gateways: tuple[RedisFlights, RedisFlights],
) -> None:
    a, b = gateways
    leads, fid = await a.claim("key")
    assert leads
    follows, same = await b.claim("key")
    assert (follows, same) == (False, fid)
    remote = Flight("key", limit=1_000_000)
    following = asyncio.create_task(b.follow(fid, remote))
    mirror = a.mirror("key", fid)
    await mirror.chunk(b"first,", HEADERS)
    await mirror.chunk(b"second", HEADERS)
    await mirror.finish(FlightResult(2, 24000, cacheable=True), HEADERS)
    assert await asyncio.wait_for(following, 5)
    assert remote.data() == b"first,second"
    assert remote.headers == HEADERS
    assert remote.result == FlightResult(2, 24000, cacheable=True)
    assert await mirror.followers() == 1
    assert (await a.claim("key"))[0]  # the lock went with the end


async def test_a_follower_retries_when_the_leader_vanishes_before_any_audio(
    gateways: tuple[RedisFlights, RedisFlights],
) -> None:
    a, b = gateways
    _, fid = await a.claim("key")
    mirror = a.mirror("key", fid)
    remote = Flight("key", limit=1_000_000)
    following = asyncio.create_task(b.follow(fid, remote))
    await asyncio.sleep(0.1)
    await mirror.close()  # the leading gateway is gone: lock released, no end marker
    assert await asyncio.wait_for(following, 5) is False
    assert not remote.ended


async def test_the_leaders_failure_reaches_the_follower(
    gateways: tuple[RedisFlights, RedisFlights],
) -> None:
    a, b = gateways
    _, fid = await a.claim("key")
    mirror = a.mirror("key", fid)
    remote = Flight("key", limit=1_000_000)
    following = asyncio.create_task(b.follow(fid, remote))
    await mirror.chunk(b"audio", HEADERS)
    await mirror.fail(EngineError("simulated engine failure mid-stream"))
    assert await asyncio.wait_for(following, 5)
    assert remote.data() == b"audio"
    with pytest.raises(VoxgateError) as failed:
        await read_all(remote)
    assert failed.value.code == EngineError("x").code
    assert "mid-stream" in failed.value.message
