"""Engines registered, drained and removed while the gateway serves.

Configuration names the engines a gateway always has. Operators add more at
run time (a new GPU host, a second model) through the admin API; those are
stored in the ``engines`` table so that a restart, and every other gateway
sharing the database, builds the same registry.

Keeping several gateways in step (distributed mode): every change bumps a
version counter in Redis and is announced on a pub/sub channel; each gateway
listens, and also compares the counter every ``VOXGATE_ENGINE_SYNC_S`` in case
it missed a message (Redis pub/sub does not queue for absent subscribers).
A gateway that sees a change reloads the table and the drained set and
converges: new rows are built and started, removed ones are retired once
their requests have ended, drain flags follow.

Where drain state lives:

* an engine added at run time: its row (``state = draining``), so it
  survives restarts;
* a configured engine, or one endpoint of any engine: in Redis (a hash) when
  gateways share one, else in this process only. Configuration is the source
  of truth for these; a drain is an operational pause, not a change of it.

Removing an engine deletes its row first, then each gateway retires it: no
new requests, then, once those under way have ended, out of the registry and
closed. Configured engines cannot be removed through the API: the next
restart would bring them back, and gateways would disagree until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from voxgate import errors
from voxgate.config import EngineConfig, Settings
from voxgate.engines.base import Engine, FeatureStore
from voxgate.engines.registry import build_engine
from voxgate.errors import EngineUnavailable, RequestError
from voxgate.pipeline import Pipeline
from voxgate.serving.redis import RedisConnection
from voxgate.serving.router import EngineGroup
from voxgate.store.db import Database
from voxgate.store.models import EngineRow, utcnow

log = logging.getLogger(__name__)

ACTIVE, DRAINING = "active", "draining"
_SECRET_WORDS = ("key", "token", "secret", "password", "credential")


def redact(options: dict[str, Any]) -> dict[str, Any]:
    """Options as shown to operators: secrets (an ``api_key``) are not echoed;
    names of where to find them (``api_key_env``) are."""
    shown: dict[str, Any] = {}
    for name, value in options.items():
        lowered = name.lower()
        secret = any(w in lowered for w in _SECRET_WORDS) and not lowered.endswith("_env")
        shown[name] = "***" if secret and value else value
    return shown


def _stored_config(row: EngineRow) -> EngineConfig:
    """A row's ``options`` column holds the whole configuration but its kind:
    ``{"options": {...}, "endpoints": [...], "timeout_s": ...}``."""
    return EngineConfig(kind=row.kind, **row.config)


def _row_document(config: EngineConfig) -> dict[str, Any]:
    return config.model_dump(exclude={"kind"}, exclude_none=True)


@dataclass(slots=True)
class _Stored:
    config: EngineConfig
    created: str  # the row's creation time: a row deleted and added again differs


class EngineControl:
    """The run-time side of the engine registry (see the module docstring)."""

    def __init__(
        self,
        pipeline: Pipeline,
        db: Database,
        settings: Settings,
        redis: RedisConnection | None = None,
        features: FeatureStore | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.registry = pipeline.registry
        self.db = db
        self.settings = settings
        self.redis = redis
        self.features = features
        self._stored: dict[str, _Stored] = {}
        # stored engines that could not start here: name -> (row created, reason)
        self._failed: dict[str, tuple[str, str]] = {}
        self._retiring: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None
        self._seen_version: int | None = None
        self._dirty = False
        self._unannounced = False

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Build the stored engines, then follow other gateways' changes."""
        await self.reload(force=True)
        if self.redis is not None:
            self._sync_task = asyncio.create_task(self._sync_loop(), name="engine-sync")

    async def close(self) -> None:
        tasks = [t for t in [self._sync_task, *self._retiring.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sync_task = None

    # -- what operators do ------------------------------------------------------------

    async def register(self, name: str, config: EngineConfig) -> Engine:
        """Build, start and store a new engine, and tell the other gateways."""
        self._check_new(name, config)
        try:
            engine = self._build(name, config)
        except (ValueError, TypeError) as exc:  # an unknown kind, a bad option
            raise RequestError(
                f"engine {name!r} cannot be built: {exc}",
                code=errors.INVALID_REQUEST,
                hint="Check the kind and its options against docs/engines.md.",
            ) from None
        try:
            await engine.start()
        except Exception as exc:
            await _quietly(engine.close)
            raise EngineUnavailable(
                f"engine {name!r} did not start: {type(exc).__name__}: {exc}",
                hint="Check its options against docs/engines.md and that what it needs "
                "(a server, model files) is there; nothing was registered.",
            ) from None
        try:
            async with self._lock:
                if self.registry.taken(name) or name in self._retiring:
                    raise _exists(name)
                async with self.db.session() as session, session.begin():
                    session.add(
                        EngineRow(
                            name=name, kind=config.kind, config=_row_document(config), state=ACTIVE
                        )
                    )
                created = await self._created_at(name)
                self.pipeline.add_engine(engine, config)
                self._stored[name] = _Stored(config, created)
                self._failed.pop(name, None)
        except IntegrityError:
            await _quietly(engine.close)
            raise _exists(name) from None
        except BaseException:
            await _quietly(engine.close)
            raise
        log.info("engine %s (%s) registered", name, config.kind)
        await self._announce()
        return engine

    async def drain(self, name: str, endpoint: str | None = None, draining: bool = True) -> None:
        """Stop (``draining``) or resume routing new requests to an engine or to
        one of its endpoints; requests under way finish either way."""
        engine = self._known(name)
        if endpoint is not None:
            if not isinstance(engine, EngineGroup):
                raise RequestError(
                    f"engine {name!r} has no endpoints",
                    code=errors.INVALID_REQUEST,
                    hint="Drain the engine itself, without ?endpoint=.",
                    param="endpoint",
                )
            try:
                member = engine.endpoint(endpoint).name
            except KeyError:
                raise _not_found(f"{name}#{endpoint}") from None
            engine.drain(member, draining)
            await self._remember_drain(member, draining)
        elif name in self._stored:
            async with self.db.session() as session, session.begin():
                row = await session.get(EngineRow, name)
                if row is not None:
                    row.state = DRAINING if draining else ACTIVE
                    row.updated_at = utcnow()
            self.registry.drain(name, draining)
        else:
            self.registry.drain(name, draining)
            await self._remember_drain(name, draining)
        what = f"{name}#{endpoint}" if endpoint is not None else name
        log.info("engine %s: %s", what, "draining" if draining else "resumed")
        await self._announce()

    async def remove(self, name: str, wait_s: float) -> bool:
        """Delete a stored engine; retire it here once idle. Whether it is gone
        within ``wait_s`` (if not, it goes when its last request ends)."""
        if name in self.registry.configured:
            raise RequestError(
                f"engine {name!r} comes from configuration and cannot be removed here",
                code=errors.ENGINE_CONFIGURED,
                hint="Drain it (POST /v1/admin/engines/{name}/drain), or remove it from "
                "VOXGATE_ENGINES and restart.",
            )
        if name not in self._failed:
            self._known(name)
        async with self._lock:
            self._failed.pop(name, None)
            async with self.db.session() as session, session.begin():
                row = await session.get(EngineRow, name)
                if row is not None:
                    await session.delete(row)
            self._stored.pop(name, None)
            task = self._retire(name)
        await self._announce()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), wait_s)
        return task.done()

    # -- what operators see -----------------------------------------------------------

    def source(self, name: str) -> str:
        return "config" if name in self.registry.configured else "api"

    def config_of(self, name: str) -> EngineConfig | None:
        if name in self._stored:
            return self._stored[name].config
        return self.settings.engines.get(name)

    def failed(self) -> dict[str, str]:
        """Stored engines this gateway could not start, with the reason."""
        return {name: reason for name, (_, reason) in self._failed.items()}

    def retiring(self, name: str) -> bool:
        return name in self._retiring

    def in_flight(self, name: str) -> int:
        """Requests holding or waiting for one of the engine's slots."""
        admission = self.pipeline.admission.get(name)
        if admission is None:
            return 0
        stats = admission.stats()
        return stats.in_use + sum(stats.waiting.values())

    # -- keeping gateways in step -----------------------------------------------------

    async def reload(self, force: bool = False) -> None:
        """Converge on the stored engines and drain flags (another gateway
        changed them, or this one starts)."""
        version = await self._version()
        if not force and not self._dirty and version == self._seen_version:
            return
        self._dirty = False
        async with self._lock:
            async with self.db.session() as session:
                rows = {r.name: r for r in (await session.scalars(select(EngineRow))).all()}
            drained = await self._drained()
            for name, row in rows.items():
                await self._converge_row(name, row)
            for name in [n for n in self._stored if n not in rows]:
                del self._stored[name]
                self._retire(name)
            for name in [n for n in self._failed if n not in rows]:
                del self._failed[name]
            self._apply_drains(rows, drained)
        self._seen_version = version

    async def _converge_row(self, name: str, row: EngineRow) -> None:
        created = str(row.created_at)
        known = self._stored.get(name)
        if known is not None and known.created == created:
            return
        if name in self._retiring or (known is None and self.registry.taken(name)):
            if name in self.registry.configured:
                log.warning("stored engine %s is shadowed by a configured one; ignored", name)
            else:
                self._dirty = True  # the old one is on its way out; add it after
            return
        if known is not None:  # deleted and added again elsewhere since we looked
            del self._stored[name]
            self._retire(name)
            self._dirty = True
            return
        if self._failed.get(name, ("", ""))[0] == created:
            return  # this version failed here already; said so once
        try:
            config = _stored_config(row)
            engine = self._build(name, config)
            await engine.start()
        except Exception as exc:
            self._failed[name] = (created, f"{type(exc).__name__}: {exc}")
            log.error("stored engine %s (%s) could not be started here: %r", name, row.kind, exc)
            return
        self.pipeline.add_engine(engine, config)
        self._stored[name] = _Stored(config, created)
        self._failed.pop(name, None)
        log.info("engine %s (%s) added from the database", name, row.kind)

    def _apply_drains(self, rows: dict[str, EngineRow], drained: set[str] | None) -> None:
        for engine in self.registry:
            if engine.name in self._retiring:
                continue
            if engine.name in rows:
                want = rows[engine.name].state == DRAINING or engine.name in (drained or ())
                self.registry.drain(engine.name, want)
            elif drained is not None:
                self.registry.drain(engine.name, engine.name in drained)
            if drained is not None and isinstance(engine, EngineGroup):
                for member in engine.endpoints:
                    engine.drain(member.name, member.name in drained)

    def _retire(self, name: str) -> asyncio.Task[None]:
        """Drain, wait for the requests under way, then remove and close."""
        task = self._retiring.get(name)
        if task is None:
            task = asyncio.create_task(self._retire_when_idle(name), name=f"retire-{name}")
            self._retiring[name] = task
        return task

    async def _retire_when_idle(self, name: str) -> None:
        try:
            if self.registry.find(name) is None:
                return
            self.registry.drain(name)
            # Idle twice in a row: a request that passed the drain check just
            # before it may still be on its way to an admission slot.
            idle = 0
            while idle < 2:
                busy = self.in_flight(name) or self._engine_active(name)
                idle = 0 if busy else idle + 1
                await asyncio.sleep(0.05)
            async with self._lock:
                engine = await self.pipeline.remove_engine(name)
            await _quietly(engine.close)
            log.info("engine %s removed", name)
        finally:
            self._retiring.pop(name, None)
            self._dirty = True

    def _engine_active(self, name: str) -> int:
        engine = self.registry.find(name)
        return engine.stats.active if engine is not None else 0

    async def _sync_loop(self) -> None:
        assert self.redis is not None
        channel = self.redis.key("engines", "changed")
        while True:
            try:
                async with self.redis.client.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    await self.reload()
                    while True:
                        await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=self.settings.engine_sync_s
                        )
                        if self._unannounced:
                            await self._announce()
                        await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("engine sync through Redis failed; retrying", exc_info=True)
                await asyncio.sleep(self.settings.engine_sync_s)

    async def _announce(self) -> None:
        """Tell every gateway (this one included) that engines changed. The
        change is stored already; if Redis is away, the sync loop tells them
        once it is back."""
        if self.redis is None:
            return
        try:
            version = await self.redis.client.incr(self.redis.key("engines", "version"))
            await self.redis.client.publish(self.redis.key("engines", "changed"), str(version))
        except (RedisError, OSError):
            log.warning("could not announce an engine change through Redis; will retry")
            self._unannounced = True
        else:
            self._unannounced = False

    async def _version(self) -> int | None:
        if self.redis is None:
            return None
        raw = await self.redis.client.get(self.redis.key("engines", "version"))
        return int(raw) if raw else 0

    async def _drained(self) -> set[str] | None:
        """Drained engine and endpoint names shared through Redis; None without it."""
        if self.redis is None:
            return None
        members = await self.redis.client.smembers(self.redis.key("engines", "drained"))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def _remember_drain(self, name: str, draining: bool) -> None:
        if self.redis is None:
            return
        key = self.redis.key("engines", "drained")
        if draining:
            await self.redis.client.sadd(key, name)
        else:
            await self.redis.client.srem(key, name)

    # -- helpers --------------------------------------------------------------------------

    def _build(self, name: str, config: EngineConfig) -> Engine:
        timeout = self.settings.engine_timeout_s if config.timeout_s is None else config.timeout_s
        engine = build_engine(name, config, self.registry.breakers, timeout)
        engine.features = self.features
        return engine

    def _check_new(self, name: str, config: EngineConfig) -> None:
        taken = (self.registry.taken(name), name in self._retiring, name in self._failed)
        if any(taken) or name in self._stored:
            raise _exists(name)
        if ":" in config.kind:
            raise RequestError(
                f"engine kind {config.kind!r} names a module; the admin API accepts only "
                "built-in kinds and installed plugins",
                code=errors.INVALID_REQUEST,
                hint="Install the plugin (entry point voxgate.engines) and use its kind name.",
                param="kind",
            )

    def _known(self, name: str) -> Engine:
        engine = self.registry.find(name)
        if engine is None or name in self._retiring:
            raise _not_found(name)
        return engine

    async def _created_at(self, name: str) -> str:
        async with self.db.session() as session:
            row = await session.get(EngineRow, name)
            return str(row.created_at) if row is not None else ""


def _exists(name: str) -> RequestError:
    return RequestError(
        f"an engine or model named {name!r} already exists",
        code=errors.ENGINE_EXISTS,
        hint="Choose another name; GET /v1/admin/engines lists them (one being removed "
        "keeps its name until its last request ends).",
        param="name",
    )


def _not_found(name: str) -> RequestError:
    return RequestError(
        f"no engine named {name!r}",
        code=errors.ENGINE_NOT_FOUND,
        hint="GET /v1/admin/engines lists them.",
    )


async def _quietly(close: Callable[[], Awaitable[None]]) -> None:
    try:
        await close()
    except Exception:
        log.exception("closing an engine failed")
