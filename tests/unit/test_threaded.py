"""Blocking generators behind an async stream: backpressure, errors,
cancellation and honest slot accounting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from voxgate.engines.threaded import BlockingStreams


async def test_items_arrive_in_order_and_errors_propagate() -> None:
    streams = BlockingStreams("t", 2)

    def produce(stop: threading.Event) -> Iterator[int]:
        yield from range(5)
        raise KeyError("upstream broke")

    got: list[int] = []

    async def drain() -> None:
        async for item in streams.stream(produce):
            got.append(item)

    with pytest.raises(KeyError, match="upstream broke"):
        await drain()
    assert got == [0, 1, 2, 3, 4]
    streams.shutdown()


async def test_a_slow_consumer_pauses_the_producer() -> None:
    streams = BlockingStreams("t", 1, buffer=2)
    produced: list[int] = []

    def produce(stop: threading.Event) -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    stream = streams.stream(produce)
    assert await anext(stream) == 0
    await asyncio.sleep(0.2)  # the producer has had ample time to run ahead
    assert len(produced) <= 4  # buffer of 2, one taken, one in hand
    await stream.aclose()  # type: ignore[attr-defined]
    streams.shutdown()


async def test_closing_stops_the_generator_and_frees_the_slot_when_the_thread_ends() -> None:
    streams = BlockingStreams("t", 1)
    closed = threading.Event()
    told = threading.Event()

    def produce(stop: threading.Event) -> Iterator[int]:
        try:
            for i in range(1000):
                if stop.is_set():
                    told.set()
                yield i
                time.sleep(0.01)
        finally:
            closed.set()

    stream = streams.stream(produce)
    assert await anext(stream) == 0
    await stream.aclose()  # type: ignore[attr-defined]
    assert await asyncio.to_thread(closed.wait, 5)
    for _ in range(100):  # the slot comes back once the worker has returned
        if streams.busy == 0:
            break
        await asyncio.sleep(0.01)
    assert streams.busy == 0

    async def take_one() -> int:
        async for item in streams.stream(lambda stop: iter([42])):
            return item
        return -1

    assert await asyncio.wait_for(take_one(), 5) == 42  # the only slot is usable again
    streams.shutdown()


async def test_concurrency_is_bounded() -> None:
    streams = BlockingStreams("t", 2)
    running = 0
    peak = 0
    lock = threading.Lock()

    def produce(stop: threading.Event) -> Iterator[int]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        yield 1

    async def drain() -> None:
        async for _ in streams.stream(produce):
            pass

    await asyncio.gather(*(drain() for _ in range(6)))
    assert peak == 2
    streams.shutdown()
