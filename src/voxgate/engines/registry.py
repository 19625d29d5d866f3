"""Engines chosen by configuration.

An engine kind is a factory name: the built-in ones are listed here, and
third-party packages add theirs through the ``voxgate.engines`` entry-point
group (``kind = "package.module:factory"`` also works), so a new engine needs
no change to voxgate itself.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

from voxgate import errors
from voxgate.config import EngineConfig, Settings
from voxgate.engines.base import Engine
from voxgate.errors import EngineUnavailable, RequestError
from voxgate.serving.breaker import BreakerFactory, BreakerPolicy, LocalBreakers
from voxgate.serving.router import EndpointStatus, EngineGroup

log = logging.getLogger(__name__)

EngineFactory = Callable[..., Engine]

BUILTIN_KINDS: dict[str, str] = {
    "espeak": "voxgate.engines.espeak.engine:EspeakEngine",
    "simulated": "voxgate.engines.simulated:SimulatedEngine",
    "cosyvoice": "voxgate.engines.cosyvoice.local:CosyVoiceEngine",
    "cosyvoice-http": "voxgate.engines.cosyvoice.http:CosyVoiceHttpEngine",
    "cosyvoice-grpc": "voxgate.engines.cosyvoice.grpc:CosyVoiceGrpcEngine",
    "cosyvoice-triton": "voxgate.engines.cosyvoice.triton:CosyVoiceTritonEngine",
    "cosyvoice-gradio": "voxgate.engines.cosyvoice.gradio:CosyVoiceGradioEngine",
    "openai-upstream": "voxgate.engines.openai_upstream:OpenAIUpstreamEngine",
    "worker": "voxgate.engines.worker:WorkerEngine",
}


def _load(target: str) -> EngineFactory:
    module, _, attr = target.partition(":")
    factory: EngineFactory = getattr(importlib.import_module(module), attr)
    return factory


def factory_for(kind: str) -> EngineFactory:
    if kind in BUILTIN_KINDS:
        return _load(BUILTIN_KINDS[kind])
    for ep in entry_points(group="voxgate.engines"):
        if ep.name == kind:
            loaded: EngineFactory = ep.load()
            return loaded
    if ":" in kind:
        return _load(kind)
    known = sorted(BUILTIN_KINDS) + sorted(ep.name for ep in entry_points(group="voxgate.engines"))
    raise ValueError(f"unknown engine kind {kind!r}; known kinds: {', '.join(known)}")


def build_engine(
    name: str,
    config: EngineConfig,
    breakers: BreakerFactory | None = None,
    timeout_s: float = 30.0,
) -> Engine:
    """The engine a configuration describes: one instance, or with ``endpoints``
    an :class:`EngineGroup` of instances named ``<name>#<id>``, each with the
    shared options plus its own overrides, each behind a circuit breaker.
    With ``isolate``, the same engine in a supervised child process."""
    if config.isolate:
        from voxgate.worker.supervisor import SupervisedEngine

        return SupervisedEngine(name, config, timeout_s=timeout_s)
    factory = factory_for(config.kind)
    if not config.endpoints:
        return factory(name, **config.options)
    members: dict[str, Engine] = {}
    for index, overrides in enumerate(config.endpoints):
        options = {**config.options, **overrides}
        member = f"{name}#{options.pop('id', index)}"
        if member in members:
            raise ValueError(f"engine {name!r} has two endpoints named {member!r}")
        members[member] = factory(member, **options)
    breakers = breakers or LocalBreakers(BreakerPolicy())
    return EngineGroup(name, list(members.values()), breakers, timeout_s=timeout_s)


class EngineRegistry:
    """The configured engines by name, plus the model names that point at them."""

    def __init__(self, engines: dict[str, Engine], default: str, aliases: dict[str, str]) -> None:
        if default not in engines:
            raise ValueError(f"default engine {default!r} is not configured")
        self._engines = engines
        self.default = default
        self._aliases = aliases
        self.configured = frozenset(engines)  # the rest are registered at run time
        self._draining: set[str] = set()
        self.breakers: BreakerFactory = LocalBreakers(BreakerPolicy())

    @classmethod
    def from_settings(
        cls, settings: Settings, breakers: BreakerFactory | None = None
    ) -> EngineRegistry:
        breakers = breakers or LocalBreakers(BreakerPolicy.from_settings(settings))
        engines = {
            name: build_engine(
                name,
                cfg,
                breakers,
                cfg.timeout_s if cfg.timeout_s is not None else settings.engine_timeout_s,
            )
            for name, cfg in settings.engines.items()
        }
        default = settings.default_engine_name
        aliases = dict.fromkeys(settings.openai_models, default)
        aliases.update(settings.model_aliases)
        registry = cls(engines, default, aliases)
        registry.breakers = breakers
        return registry

    def __iter__(self) -> Iterator[Engine]:
        # A copy: engines come and go at run time, also while a caller awaits
        # between two of them.
        return iter(list(self._engines.values()))

    def __len__(self) -> int:
        return len(self._engines)

    def names(self) -> list[str]:
        return list(self._engines)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def get(self, name: str | None) -> Engine:
        """The engine for a model/engine name; the default for ``None``."""
        if name is None or name == "":
            return self._engines[self.default]
        target = self._aliases.get(name, name)
        engine = self._engines.get(target)
        if engine is None:
            raise RequestError(
                f"no engine or model named {name!r}",
                code=errors.MODEL_NOT_FOUND,
                hint="GET /v1/models lists them: "
                + ", ".join(sorted([*self._engines, *self._aliases])),
                param="model",
            )
        return engine

    async def start(self) -> None:
        for engine in self._engines.values():
            log.info("starting engine %s (%s)", engine.name, engine.kind)
            await engine.start()

    async def close(self) -> None:
        for engine in self._engines.values():
            try:
                await engine.close()
            except Exception:
                log.exception("engine %s failed to close", engine.name)

    def describe(self, name: str) -> dict[str, Any]:
        engine = self.get(name)
        return {"name": engine.name, "kind": engine.kind, **engine.describe()}

    # -- changes at run time (serving/engine_control.py) -------------------------

    def find(self, name: str) -> Engine | None:
        """The engine by its own name (no aliases, no default)."""
        return self._engines.get(name)

    def taken(self, name: str) -> bool:
        """Whether a name already means an engine or a model alias."""
        return name in self._engines or name in self._aliases

    def add(self, engine: Engine) -> None:
        """Serve a started engine under its name (Pipeline.add_engine calls this
        once the engine has its admission)."""
        if self.taken(engine.name):
            raise ValueError(f"engine {engine.name!r} is already registered")
        self._engines[engine.name] = engine

    def remove(self, name: str) -> Engine:
        """Stop serving an engine; the caller closes it. Configured engines stay."""
        if name in self.configured:
            raise ValueError(f"engine {name!r} comes from configuration")
        self._draining.discard(name)
        return self._engines.pop(name)

    def drain(self, name: str, draining: bool = True) -> None:
        """Refuse (or accept again) new requests for an engine; those under way finish."""
        if name not in self._engines:
            raise KeyError(name)
        if draining:
            self._draining.add(name)
        else:
            self._draining.discard(name)

    def draining(self, name: str) -> bool:
        return name in self._draining

    async def ensure_available(self, engine: Engine) -> None:
        """Raise the 503 a request would meet anyway, before it is admitted: the
        engine is draining, or every endpoint is draining or has its breaker open."""
        if engine.name in self._draining:
            raise EngineUnavailable(
                f"engine {engine.name!r} is draining: it finishes what it has and takes "
                "no new requests",
                hint="Use another engine, or retry once an operator resumes it.",
                retry_after=30,
            )
        if isinstance(engine, EngineGroup):
            await engine.ensure_available()

    async def endpoint_status(self) -> list[EndpointStatus]:
        """Every engine's endpoints, breaker states read now (an engine without
        endpoints is its own single endpoint, with no breaker)."""
        found: list[EndpointStatus] = []
        for engine in list(self._engines.values()):
            if isinstance(engine, EngineGroup):
                found.extend(await engine.endpoint_status())
            else:
                found.append(self._single(engine))
        return found

    def endpoint_status_cached(self) -> list[EndpointStatus]:
        """The same without waiting (breaker states as last seen): for metrics."""
        found: list[EndpointStatus] = []
        for engine in self._engines.values():
            if isinstance(engine, EngineGroup):
                found.extend(engine.endpoint_status_cached())
            else:
                found.append(self._single(engine))
        return found

    def _single(self, engine: Engine) -> EndpointStatus:
        return EndpointStatus(
            engine=engine.name,
            endpoint=engine.name,
            in_flight=engine.stats.active,
            draining=engine.name in self._draining,
            ready=engine.ready,
            breaker=None,
        )
