"""The one Redis connection a gateway shares between its Redis-backed parts
(limits, cache, breakers, engine registry), when ``VOXGATE_REDIS_URL`` is set.

Keys are prefixed (``VOXGATE_REDIS_PREFIX``) so several deployments, or
several test runs, can share one Redis without seeing each other.
"""

from __future__ import annotations

from redis.asyncio import Redis


class RedisConnection:
    def __init__(self, url: str, prefix: str = "voxgate:") -> None:
        self.url = url
        self.prefix = prefix
        # bytes in, bytes out: audio and hashes are stored as they are
        self.client: Redis = Redis.from_url(url, decode_responses=False)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()
