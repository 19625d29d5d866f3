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
from voxgate.errors import RequestError

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


def build_engine(name: str, config: EngineConfig) -> Engine:
    return factory_for(config.kind)(name, **config.options)


class EngineRegistry:
    """The configured engines by name, plus the model names that point at them."""

    def __init__(self, engines: dict[str, Engine], default: str, aliases: dict[str, str]) -> None:
        if default not in engines:
            raise ValueError(f"default engine {default!r} is not configured")
        self._engines = engines
        self.default = default
        self._aliases = aliases

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineRegistry:
        engines = {name: build_engine(name, cfg) for name, cfg in settings.engines.items()}
        default = settings.default_engine_name
        aliases = dict.fromkeys(settings.openai_models, default)
        aliases.update(settings.model_aliases)
        return cls(engines, default, aliases)

    def __iter__(self) -> Iterator[Engine]:
        return iter(self._engines.values())

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
