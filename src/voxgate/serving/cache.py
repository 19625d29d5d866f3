"""The result cache: finished syntheses kept by content, so that an identical
request gets the identical bytes again without an engine.

An entry is addressed by a digest of everything that shapes the audio (see
:func:`result_key`; :mod:`voxgate.serving.results` gathers it) and holds the
encoded bytes plus what is needed to answer exactly as the first time: media
type, the headers that describe the audio, and usage. Only complete
syntheses are stored (never a failed, cancelled or partial one).

Two implementations behind :class:`ResultCache` (DESIGN rule 7):

* :class:`LocalResultCache` (embedded): one file per entry under
  ``data_dir/cache/``, written atomically (temporary file, then rename), and
  an in-memory index kept in least-recently-used order with the bytes it
  holds. The index is **not** rebuilt at start: the directory is emptied
  instead. A restart usually means new code, a new model or new engine
  options, after which old audio may no longer be what the engine makes;
  the TTL alone would not catch that, and a warm embedded cache is worth
  less than a correct one. (The Redis cache outlives gateway restarts.)
* :class:`RedisResultCache` (distributed): one value per entry with the TTL
  as its expiry, a sorted set of entries by last access and a byte counter,
  so that the byte bound holds across gateways: every store and eviction is
  one Lua script, atomic however many gateways write at once.

Both keep a per-voice index of entries so that deleting or changing a
registered voice removes every result made with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from redis.exceptions import RedisError

from voxgate.serving.redis import RedisConnection

log = logging.getLogger("voxgate.cache")

KEY_VERSION = 1  # bump when the key's material or the entry format changes
_HEADER = struct.Struct(">I")  # length of the JSON metadata that precedes the audio


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What one request lets the cache do, from its ``Cache-Control`` and
    ``If-None-Match`` headers.

    ``no-cache`` asks for a fresh synthesis (nothing read from the cache, no
    joining a synthesis already running), whose result may still be stored;
    ``no-store`` also forbids storing it.
    """

    read: bool = True
    write: bool = True
    if_none_match: tuple[str, ...] = ()  # entity tags the client holds, unquoted

    @property
    def bypass(self) -> bool:
        return not (self.read or self.write)

    @classmethod
    def from_headers(cls, cache_control: str | None, if_none_match: str | None) -> CachePolicy:
        directives = {
            part.split("=", 1)[0].strip().lower() for part in (cache_control or "").split(",")
        }
        no_store = "no-store" in directives
        no_cache = no_store or "no-cache" in directives
        tags = tuple(
            tag.strip().removeprefix("W/").strip('"')
            for tag in (if_none_match or "").split(",")
            if tag.strip()
        )
        return cls(read=not no_cache, write=not no_store, if_none_match=tags)

    def holds(self, etag: str) -> bool:
        """Whether the client already has the representation tagged ``etag``."""
        return "*" in self.if_none_match or etag in self.if_none_match


def result_key(material: Mapping[str, Any]) -> str:
    """The content address: a digest of canonical JSON of the key material."""
    canonical = json.dumps(
        {"key_version": KEY_VERSION, **material},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One finished synthesis as it was sent."""

    data: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...]  # Synthesis.headers(): rate, format, engine, warnings
    characters: int
    samples: int
    sample_rate: int
    voice: str | None = None  # the registered voice it was made with
    created_at: float = field(default_factory=time.time)

    @property
    def audio_seconds(self) -> float:
        return self.samples / self.sample_rate if self.sample_rate else 0.0

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.created_at)

    def pack(self) -> bytes:
        meta = json.dumps(
            {
                "media_type": self.media_type,
                "headers": [list(h) for h in self.headers],
                "characters": self.characters,
                "samples": self.samples,
                "sample_rate": self.sample_rate,
                "voice": self.voice,
                "created_at": self.created_at,
            },
            separators=(",", ":"),
        ).encode()
        return _HEADER.pack(len(meta)) + meta + self.data

    @classmethod
    def unpack(cls, blob: bytes) -> Entry:
        (n,) = _HEADER.unpack_from(blob)
        meta = json.loads(blob[_HEADER.size : _HEADER.size + n])
        return cls(
            data=blob[_HEADER.size + n :],
            media_type=meta["media_type"],
            headers=tuple((str(k), str(v)) for k, v in meta["headers"]),
            characters=int(meta["characters"]),
            samples=int(meta["samples"]),
            sample_rate=int(meta["sample_rate"]),
            voice=meta.get("voice"),
            created_at=float(meta["created_at"]),
        )


class ResultCache(Protocol):
    """Where finished syntheses are kept. ``get`` and ``put`` never raise for
    a storage problem: a cache that cannot answer is a miss, not an error."""

    ttl_s: float
    max_entry_bytes: int

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, key: str) -> Entry | None: ...
    async def put(self, key: str, entry: Entry) -> bool:
        """Store; False when the entry is larger than ``max_entry_bytes``."""
        ...

    async def purge_voice(self, voice_id: str, *, deleted: bool = False) -> int:
        """Remove every entry made with a registered voice; how many there were.
        ``deleted``: also refuse, for a TTL, results with it still in flight."""
        ...

    def stats(self) -> dict[str, int]:
        """``entries``, ``bytes``, ``evictions`` (LRU), ``expired``, ``stored``,
        ``purged`` (Redis: entries and bytes as of this gateway's last write)."""
        ...


# -- embedded --------------------------------------------------------------------


@dataclass(slots=True)
class _Indexed:
    size: int
    expires_at: float  # time.monotonic()
    voice: str | None


class LocalResultCache:
    """Entries as files under ``root``; the index (LRU order, sizes, expiry,
    voices) in memory. File reads and writes run in threads."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        ttl_s: float,
        max_entry_bytes: int,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self._index: OrderedDict[str, _Indexed] = OrderedDict()  # least recently used first
        self._expiry: OrderedDict[str, float] = OrderedDict()  # first to expire first
        self._voices: dict[str, set[str]] = {}
        self._gone: dict[str, float] = {}  # deleted voices -> until when to refuse them
        self._bytes = 0
        self._counts = {"evictions": 0, "expired": 0, "stored": 0, "purged": 0}

    async def start(self) -> None:
        await asyncio.to_thread(self._reset_dir)

    def _reset_dir(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    async def get(self, key: str) -> Entry | None:
        found = self._index.get(key)
        if found is None:
            return None
        if found.expires_at <= time.monotonic():
            self._counts["expired"] += 1
            await self._drop([key])
            return None
        self._index.move_to_end(key)
        try:
            blob = await asyncio.to_thread(self._path(key).read_bytes)
            return Entry.unpack(blob)
        except (OSError, ValueError, KeyError, struct.error):
            log.warning("cache entry %s is unreadable; dropped", key, exc_info=True)
            await self._drop([key])
            return None

    async def put(self, key: str, entry: Entry) -> bool:
        blob = entry.pack()
        if len(blob) > self.max_entry_bytes or self._is_gone(entry.voice):
            return False
        try:
            await asyncio.to_thread(_write_atomically, self._path(key), blob)
        except OSError:
            log.warning("could not store cache entry %s", key, exc_info=True)
            return False
        if self._is_gone(entry.voice):  # deleted while the file was written
            await asyncio.to_thread(_unlink_all, [self._path(key)])
            return False
        old = self._index.pop(key, None)
        if old is not None:
            self._bytes -= old.size
            self._unlink_voice(key, old.voice)
        self._expiry.pop(key, None)
        now = time.monotonic()
        self._index[key] = _Indexed(len(blob), now + self.ttl_s, entry.voice)
        self._expiry[key] = now + self.ttl_s  # the TTL is one for all: put order is expiry order
        self._bytes += len(blob)
        if entry.voice:
            self._voices.setdefault(entry.voice, set()).add(key)
        self._counts["stored"] += 1
        victims: list[str] = []
        for other, expires_at in self._expiry.items():
            if expires_at > now:
                break
            victims.append(other)
            self._counts["expired"] += 1
        excess = self._bytes - self.max_bytes - sum(self._index[v].size for v in victims)
        for other, meta in self._index.items():  # least recently used first
            if excess <= 0:
                break
            if other != key and meta.expires_at > now:
                victims.append(other)
                excess -= meta.size
                self._counts["evictions"] += 1
        if victims:
            await self._drop(victims)
        return True

    def _is_gone(self, voice: str | None) -> bool:
        if voice is None or voice not in self._gone:
            return False
        if self._gone[voice] > time.monotonic():
            return True
        del self._gone[voice]
        return False

    async def purge_voice(self, voice_id: str, *, deleted: bool = False) -> int:
        if deleted:
            self._gone[voice_id] = time.monotonic() + self.ttl_s
        keys = [k for k in self._voices.pop(voice_id, set()) if k in self._index]
        self._counts["purged"] += len(keys)
        await self._drop(keys)
        return len(keys)

    async def _drop(self, keys: Iterable[str]) -> None:
        paths = []
        for key in keys:
            meta = self._index.pop(key, None)
            self._expiry.pop(key, None)
            if meta is None:
                continue
            self._bytes -= meta.size
            self._unlink_voice(key, meta.voice)
            paths.append(self._path(key))
        if paths:
            await asyncio.to_thread(_unlink_all, paths)

    def _unlink_voice(self, key: str, voice: str | None) -> None:
        if voice and voice in self._voices:
            self._voices[voice].discard(key)
            if not self._voices[voice]:
                del self._voices[voice]

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._index), "bytes": self._bytes, **self._counts}


def _write_atomically(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _unlink_all(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- distributed -----------------------------------------------------------------

# KEYS: value, lru (zset), sizes (hash), bytes (counter), voice set or "", the
# voice's deletion mark or ""; ARGV: key, blob, ttl ms, max bytes, value key
# prefix. Stores the entry (not if its voice was deleted), then evicts least
# recently used entries (and forgets expired ones) until the byte bound holds.
# Returns {evicted, expired, bytes, entries}, or -1 when refused.
_PUT = """
if KEYS[6] ~= '' and redis.call('EXISTS', KEYS[6]) == 1 then return -1 end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local key, blob, ttl, max_bytes = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local prefix = ARGV[5]
local size = string.len(blob)
redis.call('SET', KEYS[1], blob, 'PX', ttl)
local old = tonumber(redis.call('HGET', KEYS[3], key) or '0')
redis.call('HSET', KEYS[3], key, size)
local total = redis.call('INCRBY', KEYS[4], size - old)
redis.call('ZADD', KEYS[2], now_ms, key)
if KEYS[5] ~= '' then
  redis.call('SADD', KEYS[5], key)
  redis.call('PEXPIRE', KEYS[5], ttl)
end
local expired, evicted = 0, 0
local function forget(k)
  local s = tonumber(redis.call('HGET', KEYS[3], k) or '0')
  redis.call('HDEL', KEYS[3], k)
  redis.call('ZREM', KEYS[2], k)
  redis.call('DEL', prefix .. k)
  total = redis.call('DECRBY', KEYS[4], s)
end
-- last used longer ago than the TTL: certainly expired already
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms - ttl, 'LIMIT', 0, 256)) do
  forget(k)
  expired = expired + 1
end
while total > max_bytes do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 or oldest[1] == key then break end
  local alive = redis.call('EXISTS', prefix .. oldest[1])
  forget(oldest[1])
  if alive == 1 then evicted = evicted + 1 else expired = expired + 1 end
end
return {evicted, expired, total, redis.call('ZCARD', KEYS[2])}
"""

# KEYS: value, lru, sizes, bytes; ARGV: key. Returns the value and marks it
# used; forgets an entry whose value has expired.
_GET = """
local blob = redis.call('GET', KEYS[1])
if blob then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('ZADD', KEYS[2], 'XX', now_ms, ARGV[1])
  return blob
end
local s = redis.call('HGET', KEYS[3], ARGV[1])
if s then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('DECRBY', KEYS[4], tonumber(s))
  return -1
end
return false
"""

# KEYS: voice set, lru, sizes, bytes, deletion mark or ""; ARGV: value key
# prefix, ttl ms. Returns how many entries still existed, bytes, entries.
_PURGE = """
if KEYS[5] ~= '' then redis.call('SET', KEYS[5], '1', 'PX', ARGV[2]) end
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. k)
  local s = redis.call('HGET', KEYS[3], k)
  if s then
    redis.call('HDEL', KEYS[3], k)
    redis.call('ZREM', KEYS[2], k)
    redis.call('DECRBY', KEYS[4], tonumber(s))
  end
end
redis.call('DEL', KEYS[1])
return {n, tonumber(redis.call('GET', KEYS[4]) or '0'), redis.call('ZCARD', KEYS[2])}
"""


class RedisResultCache:
    """Entries shared by every gateway on one Redis (single node: the scripts
    name keys they compute, which Redis Cluster would not route)."""

    def __init__(
        self,
        redis: RedisConnection,
        *,
        max_bytes: int,
        ttl_s: float,
        max_entry_bytes: int,
    ) -> None:
        self.redis = redis
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        client = redis.client
        self._put = client.register_script(_PUT)
        self._get = client.register_script(_GET)
        self._purge = client.register_script(_PURGE)
        self._prefix = redis.key("cache", "entry", "")
        self._lru = redis.key("cache", "lru")
        self._sizes = redis.key("cache", "sizes")
        self._total = redis.key("cache", "bytes")
        self._seen = {"entries": 0, "bytes": 0}
        self._counts = {"evictions": 0, "expired": 0, "stored": 0, "purged": 0}

    async def start(self) -> None:
        await self.refresh()

    async def close(self) -> None:
        return None

    def _voice_key(self, voice_id: str) -> str:
        return self.redis.key("cache", "voice", voice_id)

    def _gone_key(self, voice_id: str) -> str:
        return self.redis.key("cache", "gone", voice_id)

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    async def get(self, key: str) -> Entry | None:
        try:
            found = await self._get(
                keys=[self._prefix + key, self._lru, self._sizes, self._total], args=[key]
            )
        except RedisError:
            log.warning("result cache: Redis did not answer a lookup", exc_info=True)
            return None
        if found == -1:
            self._counts["expired"] += 1
            return None
        if not found:
            return None
        try:
            return Entry.unpack(bytes(found))
        except (ValueError, KeyError, struct.error):
            log.warning("cache entry %s is unreadable", key, exc_info=True)
            return None

    async def put(self, key: str, entry: Entry) -> bool:
        blob = entry.pack()
        if len(blob) > self.max_entry_bytes:
            return False
        voice_key = self._voice_key(entry.voice) if entry.voice else ""
        gone_key = self._gone_key(entry.voice) if entry.voice else ""
        try:
            done = await self._put(
                keys=[self._prefix + key, self._lru, self._sizes, self._total, voice_key, gone_key],
                args=[key, blob, self._ttl_ms, self.max_bytes, self._prefix],
            )
        except RedisError:
            log.warning("result cache: Redis did not store %s", key, exc_info=True)
            return False
        if done == -1:
            return False
        evicted, expired, total, entries = done
        self._counts["stored"] += 1
        self._counts["evictions"] += int(evicted)
        self._counts["expired"] += int(expired)
        self._seen = {"entries": int(entries), "bytes": int(total)}
        return True

    async def purge_voice(self, voice_id: str, *, deleted: bool = False) -> int:
        gone_key = self._gone_key(voice_id) if deleted else ""
        try:
            n, total, entries = await self._purge(
                keys=[self._voice_key(voice_id), self._lru, self._sizes, self._total, gone_key],
                args=[self._prefix, self._ttl_ms],
            )
        except RedisError:
            log.error("result cache: could not purge voice %s", voice_id, exc_info=True)
            raise
        self._counts["purged"] += int(n)
        self._seen = {"entries": int(entries), "bytes": int(total)}
        return int(n)

    async def refresh(self) -> dict[str, int]:
        """Entries and bytes as Redis has them now (``stats`` shows the last seen)."""
        try:
            async with self.redis.client.pipeline(transaction=False) as pipe:
                pipe.zcard(self._lru)
                pipe.get(self._total)
                entries, total = await pipe.execute()
        except RedisError:
            return self.stats()
        self._seen = {"entries": int(entries), "bytes": int(total or 0)}
        return self.stats()

    def stats(self) -> dict[str, int]:
        return {**self._seen, **self._counts}
