"""Blocking generators (torch models, client libraries) behind an async stream.

An in-process model is a Python generator that blocks for hundreds of
milliseconds per chunk. :class:`BlockingStreams` runs each one in a thread the
engine owns, at most ``concurrency`` at once, and hands its items to the event
loop through a small buffer (DESIGN rule 3):

* **backpressure**: the thread waits when ``buffer`` items are not yet taken,
  so a slow client pauses the model instead of piling audio up in memory;
* **cancellation**: when the consumer stops (client gone, timeout), the stop
  event is set, the producer is told through it (``produce(stop)`` may wire
  it deeper, e.g. into a model's token loop), the generator is closed after
  its current item, and the slot is given back when the thread is done;
* **honest capacity**: a slot is held until its thread really finishes, so a
  cancelled request that is still inside a model call is never counted as
  free while it keeps the GPU busy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_POLL_S = 0.05  # how often a waiting producer looks at its stop event

_ITEM, _ERROR, _END = 0, 1, 2


class _Channel(Generic[T]):
    """One producer thread to one async consumer, bounded by credits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, buffer: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self.credits = threading.Semaphore(buffer)
        self.stop = threading.Event()

    def send(self, kind: int, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.stop.set()

    def wait_for_credit(self) -> bool:
        """Block until the consumer has room; False once stopped."""
        while not self.stop.is_set():
            if self.credits.acquire(timeout=_POLL_S):
                return True
        return False


class BlockingStreams:
    """Runs blocking generators in ``concurrency`` threads named after the engine."""

    def __init__(self, name: str, concurrency: int, *, buffer: int = 2) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._buffer = buffer
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"voxgate-{name}")
        self._slots = asyncio.Semaphore(concurrency)
        self.busy = 0  # threads running a generator, cancelled or not

    async def stream(self, produce: Callable[[threading.Event], Iterator[T]]) -> AsyncIterator[T]:
        """Items of ``produce(stop)``, run in one of the engine's threads.

        Exceptions raised by the producer are re-raised here unchanged.
        """
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        channel: _Channel[T] = _Channel(loop, self._buffer)
        self.busy += 1
        try:
            done = loop.run_in_executor(self._pool, self._work, produce, channel)
        except BaseException:
            self.busy -= 1
            self._slots.release()
            raise
        done.add_done_callback(self._freed)
        try:
            while True:
                kind, value = await channel.queue.get()
                if kind == _ITEM:
                    channel.credits.release()
                    yield value
                elif kind == _ERROR:
                    raise value
                else:
                    return
        finally:
            channel.stop.set()

    def _freed(self, done: asyncio.Future[None]) -> None:
        self.busy -= 1
        self._slots.release()
        if not done.cancelled() and done.exception() is not None:
            log.error("blocking stream worker failed", exc_info=done.exception())

    @staticmethod
    def _work(produce: Callable[[threading.Event], Iterator[T]], channel: _Channel[T]) -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator = produce(channel.stop)
            for item in iterator:
                if not channel.wait_for_credit():
                    break
                channel.send(_ITEM, item)
                if channel.stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            channel.send(_ERROR, exc)
        else:
            channel.send(_END, None)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing a cancelled generator failed")

    def shutdown(self) -> None:
        """Stop taking work; running threads finish on their own (not joined)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
