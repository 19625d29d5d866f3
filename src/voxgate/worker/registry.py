"""Which workers are alive, in Redis: heartbeats written by workers, read by
gateways.

Each worker owns one hash, ``<prefix>worker:<engine>:<worker id>``, rewritten
every ``VOXGATE_WORKER_HEARTBEAT_S`` with a time to live of three intervals:
a worker that dies (SIGKILL, a lost host) stops renewing it and its hash
disappears by itself; a worker that stops cleanly deletes it first, so no
gateway sends it new work while it drains. A sorted set per engine,
``<prefix>workers:<engine>``, lists the ids so that gateways find them
without scanning the keyspace; an id whose hash has expired is removed from
it by the next gateway that reads it.

Liveness is judged by Redis's own expiry, never by comparing the clocks of
two machines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from voxgate.serving.redis import RedisConnection

log = logging.getLogger(__name__)

TTL_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One worker as its last heartbeat describes it."""

    id: str
    engine: str  # the engine name it serves (what gateways look for)
    url: str  # how gateways reach it
    kind: str = ""
    capacity: int = 1
    in_flight: int = 0  # syntheses running now, for every gateway together
    served: int = 0
    started_at: float = 0.0
    heartbeat_at: float = 0.0
    seq: int = 0  # heartbeats written so far
    pid: int = 0
    host: str = ""
    rss_bytes: int = 0

    def to_hash(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str]) -> WorkerRecord | None:
        """A record from a hash; None when it is not one (a foreign key)."""
        values = {_text(k): _text(v) for k, v in raw.items()}
        try:
            kwargs: dict[str, Any] = {}
            for f in fields(cls):
                if f.name not in values:
                    continue
                value = values[f.name]
                kwargs[f.name] = (
                    int(value) if f.type == "int" else float(value) if f.type == "float" else value
                )
            return cls(**kwargs)
        except (TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class WorkerRegistry:
    """Reads and writes worker heartbeats under a deployment's Redis prefix."""

    def __init__(self, redis: RedisConnection) -> None:
        self.redis = redis

    def key(self, engine: str, worker_id: str) -> str:
        return self.redis.key("worker", engine, worker_id)

    def index(self, engine: str) -> str:
        return self.redis.key("workers", engine)

    async def publish(self, record: WorkerRecord, ttl_s: float) -> None:
        """Write one heartbeat: the hash, its time to live, the index entry."""
        key = self.key(record.engine, record.id)
        async with self.redis.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=record.to_hash())  # type: ignore[arg-type]
            pipe.pexpire(key, max(1, int(ttl_s * 1000)))
            pipe.zadd(self.index(record.engine), {record.id: time.time()})
            await pipe.execute()

    async def remove(self, engine: str, worker_id: str) -> None:
        async with self.redis.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(engine, worker_id))
            pipe.zrem(self.index(engine), worker_id)
            await pipe.execute()

    async def live(self, engine: str) -> list[WorkerRecord]:
        """Every worker of an engine whose heartbeat has not expired."""
        client = self.redis.client
        members: list[Any] = await client.zrange(self.index(engine), 0, -1)
        ids = [_text(m) for m in members]
        if not ids:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(self.key(engine, worker_id))
            hashes = await pipe.execute()
        found: list[WorkerRecord] = []
        gone: list[str] = []
        for worker_id, raw in zip(ids, hashes, strict=True):
            record = WorkerRecord.from_hash(raw) if raw else None
            if record is None:
                gone.append(worker_id)
            else:
                found.append(record)
        if gone:
            await client.zrem(self.index(engine), *gone)
        return found


class Heartbeat:
    """A worker's registration: published at once, renewed every interval,
    deleted on a clean stop. Redis being away is logged and retried; the
    worker goes on serving the gateways that already know it."""

    def __init__(
        self,
        registry: WorkerRegistry,
        describe: Callable[[int], WorkerRecord],
        interval_s: float,
    ) -> None:
        self.registry = registry
        self._describe = describe  # the record for heartbeat number n
        self.interval_s = interval_s
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._record: WorkerRecord | None = None
        self._failing = False

    @property
    def ttl_s(self) -> float:
        return self.interval_s * TTL_INTERVALS

    async def start(self) -> None:
        await self._beat()
        self._task = asyncio.create_task(self._loop(), name="worker-heartbeat")

    async def stop(self) -> None:
        """Stop renewing and delete the registration (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        record, self._record = self._record, None
        if record is not None:
            try:
                await self.registry.remove(record.engine, record.id)
            except Exception as exc:  # it expires by itself within the TTL
                log.warning("could not deregister worker %s: %r", record.id, exc)

    async def _beat(self) -> None:
        self._seq += 1
        record = self._describe(self._seq)
        try:
            await self.registry.publish(record, self.ttl_s)
        except Exception as exc:
            if not self._failing:
                log.warning("worker heartbeat to Redis failed (retrying): %r", exc)
            self._failing = True
            return
        if self._failing:
            log.info("worker heartbeat to Redis works again")
        self._failing = False
        self._record = record

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._beat()
