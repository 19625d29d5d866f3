"""The retry policy every remote engine shares: retry before the first audio
only, with backoff, honouring (bounded) Retry-After."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Sequence

import httpx
import numpy as np
import pytest

from voxgate.audio.pcm import Samples
from voxgate.engines.base import Capabilities, EngineRequest, Mode, Speaker
from voxgate.engines.remote import RemoteEngine, RemoteFailure, RemoteOptions, retry_after_s
from voxgate.errors import EngineTimeout, EngineUnavailable, UpstreamError
from voxgate.text.markup import parse
from voxgate.text.split import Segment, split


class Scripted(RemoteEngine):
    """Each call plays the next script entry: a failure, or audio then a failure."""

    kind = "scripted"

    def __init__(self, script: list[tuple[int, RemoteFailure | None]], **options: object) -> None:
        super().__init__("scripted", RemoteOptions(url="http://x", backoff_s=0.001, **options))  # type: ignore[arg-type]
        self.script = script
        self.calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(frozenset({Mode.SFT}), frozenset({"en"}), 16000, True, 1)

    def speakers(self) -> Sequence[Speaker]:
        return ()

    async def _probe(self) -> None:
        return None

    async def _call(self, request: EngineRequest, segment: Segment) -> AsyncIterator[Samples]:
        chunks, failure = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        for _ in range(chunks):
            yield np.ones(160, dtype=np.float32)
        if failure is not None:
            raise failure


def req() -> EngineRequest:
    return EngineRequest("r", Mode.SFT, tuple(split(parse("hello"))), None)


async def run(engine: Scripted) -> int:
    return sum([len(c.samples) async for c in engine.synthesize(req())])


def down() -> RemoteFailure:
    return RemoteFailure("refused", kind="unavailable", retryable=True)


async def test_failures_before_audio_are_retried() -> None:
    engine = Scripted([(0, down()), (0, down()), (2, None)], retries=2)
    assert await run(engine) == 320
    assert engine.calls == 3


async def test_retries_run_out() -> None:
    engine = Scripted([(0, down())], retries=2)
    with pytest.raises(EngineUnavailable, match="after 3 attempts"):
        await run(engine)
    assert engine.calls == 3


async def test_no_retry_once_audio_has_arrived() -> None:
    broken = RemoteFailure("reset", kind="protocol", retryable=True)
    engine = Scripted([(1, broken), (2, None)], retries=3)
    with pytest.raises(UpstreamError, match="mid-stream"):
        await run(engine)
    assert engine.calls == 1


async def test_a_stall_after_audio_is_a_timeout() -> None:
    stalled = RemoteFailure("read timeout", kind="timeout", retryable=True)
    engine = Scripted([(1, stalled)], retries=3)
    with pytest.raises(EngineTimeout, match="stalled mid-stream"):
        await run(engine)
    assert engine.calls == 1


async def test_rejections_are_not_retried() -> None:
    engine = Scripted([(0, RemoteFailure("HTTP 400", kind="rejected", retryable=False))], retries=3)
    with pytest.raises(UpstreamError):
        await run(engine)
    assert engine.calls == 1


async def test_a_long_retry_after_goes_to_the_caller() -> None:
    busy = RemoteFailure("HTTP 429", kind="protocol", retryable=True, retry_after=60)
    engine = Scripted([(0, busy), (1, None)], retries=3, max_retry_wait_s=5)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await run(engine)
    assert time.monotonic() - started < 1
    assert engine.calls == 1
    assert info.value.retry_after == 60


async def test_a_short_retry_after_is_waited_out() -> None:
    busy = RemoteFailure("HTTP 503", kind="protocol", retryable=True, retry_after=0.2)
    engine = Scripted([(0, busy), (1, None)], retries=1)
    started = time.monotonic()
    assert await run(engine) == 160
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_s(httpx.Headers(headers)) == seconds


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = retry_after_s(httpx.Headers({"retry-after": when}))
    assert value is not None
    assert 27 < value <= 30


def test_backoff_grows_and_is_bounded() -> None:
    options = RemoteOptions(url="http://x", backoff_s=0.1, backoff_max_s=0.5)
    assert all(0.05 <= options.backoff(1) <= 0.1 for _ in range(20))
    assert all(0.25 <= options.backoff(6) <= 0.5 for _ in range(20))
