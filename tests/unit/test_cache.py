"""The result cache's two implementations, same scenarios (DESIGN rule 7):
the embedded one on files in a temporary folder, the shared one on the
machine's real Redis under a test-only key prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypedDict

import pytest

from tests.support.redis import REDIS_URL
from voxgate.serving.cache import (
    CachePolicy,
    Entry,
    LocalResultCache,
    RedisResultCache,
    ResultCache,
    result_key,
)
from voxgate.serving.redis import RedisConnection

MakeCache = Callable[..., Awaitable[ResultCache]]


class Bounds(TypedDict):
    max_bytes: int
    ttl_s: float
    max_entry_bytes: int


BOUNDS = Bounds(max_bytes=1_000_000, ttl_s=60.0, max_entry_bytes=100_000)


def entry(size: int, *, voice: str | None = None, fill: bytes = b"a") -> Entry:
    return Entry(
        data=fill * size,
        media_type="audio/mpeg",
        headers=(("X-Sample-Rate", "24000"), ("X-Voxgate-Warning", "w; x")),
        characters=12,
        samples=24000,
        sample_rate=24000,
        voice=voice,
    )


async def first_byte(cache: ResultCache, key: str) -> bytes | None:
    found = await cache.get(key)
    return None if found is None else found.data[:1]


@pytest.fixture(params=["local", "redis"])
async def make_cache(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> AsyncIterator[MakeCache]:
    connections: list[RedisConnection] = []

    async def make(
        *, max_bytes: int = 1_000_000, ttl_s: float = 60.0, max_entry_bytes: int = 100_000
    ) -> ResultCache:
        cache: ResultCache
        if request.param == "local":
            cache = LocalResultCache(
                tmp_path / "cache",
                max_bytes=max_bytes,
                ttl_s=ttl_s,
                max_entry_bytes=max_entry_bytes,
            )
        else:
            redis = RedisConnection(REDIS_URL, redis_prefix)
            connections.append(redis)
            cache = RedisResultCache(
                redis, max_bytes=max_bytes, ttl_s=ttl_s, max_entry_bytes=max_entry_bytes
            )
        await cache.start()
        return cache

    yield make
    for redis in connections:
        await redis.close()


async def test_put_then_get_returns_the_same_entry(make_cache: MakeCache) -> None:
    cache = await make_cache()
    stored = entry(5000, voice="voice_1")
    assert await cache.get("k1") is None
    assert await cache.put("k1", stored)
    found = await cache.get("k1")
    assert found is not None
    assert found.data == stored.data
    assert found.headers == stored.headers
    assert (found.media_type, found.characters, found.samples) == ("audio/mpeg", 12, 24000)
    assert found.voice == "voice_1"
    assert found.audio_seconds == 1.0
    stats = cache.stats()
    assert stats["entries"] == 1
    assert stats["bytes"] >= 5000
    assert stats["stored"] == 1


async def test_entries_expire_after_the_ttl(make_cache: MakeCache) -> None:
    cache = await make_cache(ttl_s=0.3)
    assert await cache.put("k1", entry(100))
    assert await cache.get("k1") is not None
    await asyncio.sleep(0.45)
    assert await cache.get("k1") is None
    assert cache.stats()["expired"] >= 1


async def test_least_recently_used_entries_go_first_when_bytes_run_out(
    make_cache: MakeCache,
) -> None:
    # each entry is 40,000 bytes of audio plus its metadata; three do not fit
    cache = await make_cache(max_bytes=100_000, max_entry_bytes=50_000)
    assert await cache.put("a", entry(40_000, fill=b"a"))
    await asyncio.sleep(0.01)  # Redis orders by milliseconds
    assert await cache.put("b", entry(40_000, fill=b"b"))
    await asyncio.sleep(0.01)
    assert await cache.get("a") is not None  # a is now more recent than b
    await asyncio.sleep(0.01)
    assert await cache.put("c", entry(40_000, fill=b"c"))
    assert await cache.get("b") is None
    assert await first_byte(cache, "a") == b"a"
    assert await first_byte(cache, "c") == b"c"
    stats = cache.stats()
    assert stats["evictions"] == 1
    assert stats["entries"] == 2
    assert stats["bytes"] <= 100_000


async def test_an_entry_larger_than_the_entry_bound_is_not_kept(make_cache: MakeCache) -> None:
    cache = await make_cache(max_entry_bytes=10_000)
    assert not await cache.put("big", entry(20_000))
    assert await cache.get("big") is None
    assert await cache.put("small", entry(1_000))
    assert cache.stats()["entries"] == 1


async def test_storing_a_key_again_replaces_it_and_counts_its_bytes_once(
    make_cache: MakeCache,
) -> None:
    cache = await make_cache()
    first, second = entry(10_000, fill=b"x"), entry(10_000, fill=b"y")
    assert await cache.put("k", first)
    assert cache.stats()["bytes"] == len(first.pack())
    assert await cache.put("k", second)
    assert cache.stats()["bytes"] == len(second.pack())
    assert cache.stats()["entries"] == 1
    assert await first_byte(cache, "k") == b"y"


async def test_purging_a_voice_removes_only_its_entries(make_cache: MakeCache) -> None:
    cache = await make_cache()
    assert await cache.put("v1a", entry(100, voice="voice_1"))
    assert await cache.put("v1b", entry(100, voice="voice_1"))
    assert await cache.put("v2", entry(100, voice="voice_2"))
    assert await cache.put("plain", entry(100))
    assert await cache.purge_voice("voice_1") == 2
    assert await cache.get("v1a") is None
    assert await cache.get("v1b") is None
    assert await cache.get("v2") is not None
    assert await cache.get("plain") is not None
    assert cache.stats()["entries"] == 2
    assert cache.stats()["purged"] == 2
    # a changed (not deleted) voice may be cached again, in its new version
    assert await cache.put("v1c", entry(100, voice="voice_1"))
    assert await cache.get("v1c") is not None


async def test_a_deleted_voice_is_refused_for_results_still_in_flight(
    make_cache: MakeCache,
) -> None:
    cache = await make_cache()
    assert await cache.put("v1", entry(100, voice="voice_1"))
    assert await cache.purge_voice("voice_1", deleted=True) == 1
    assert not await cache.put("late", entry(100, voice="voice_1"))
    assert await cache.get("late") is None
    assert await cache.put("other", entry(100, voice="voice_2"))


async def test_the_embedded_cache_starts_empty(tmp_path: Path) -> None:
    """Files left by an earlier process are removed, not served (see cache.py)."""
    first = LocalResultCache(tmp_path / "cache", **BOUNDS)
    await first.start()
    assert await first.put("k", entry(100))
    assert list((tmp_path / "cache").rglob("k"))
    second = LocalResultCache(tmp_path / "cache", **BOUNDS)
    await second.start()
    assert await second.get("k") is None
    assert not list((tmp_path / "cache").rglob("k"))


async def test_shared_entries_are_seen_by_every_gateway(redis_prefix: str) -> None:
    a, b = RedisConnection(REDIS_URL, redis_prefix), RedisConnection(REDIS_URL, redis_prefix)
    try:
        cache_a, cache_b = RedisResultCache(a, **BOUNDS), RedisResultCache(b, **BOUNDS)
        assert await cache_a.put("k", entry(100, fill=b"z"))
        assert await first_byte(cache_b, "k") == b"z"
        assert (await cache_b.refresh())["entries"] == 1
    finally:
        await a.close()
        await b.close()


def test_policy_from_request_headers() -> None:
    assert CachePolicy.from_headers(None, None) == CachePolicy()
    no_cache = CachePolicy.from_headers("no-cache", None)
    assert (no_cache.read, no_cache.write, no_cache.bypass) == (False, True, False)
    no_store = CachePolicy.from_headers("max-age=0, No-Store", None)
    assert (no_store.read, no_store.write, no_store.bypass) == (False, False, True)
    tags = CachePolicy.from_headers(None, 'W/"abc", "def"')
    assert tags.if_none_match == ("abc", "def")
    assert not tags.holds("x")
    assert CachePolicy.from_headers(None, "*").holds("anything")


def test_keys_differ_with_any_part_of_the_material() -> None:
    base = {"text": "hello", "format": "mp3", "shape": "stream"}
    assert result_key(base) == result_key(dict(reversed(list(base.items()))))
    assert result_key(base) != result_key({**base, "shape": "whole"})
    assert result_key(base) != result_key({**base, "text": "hello!"})
    assert len(result_key(base)) == 64
