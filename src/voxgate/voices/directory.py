"""Resolving what a caller calls a voice to something an engine can speak with.

A caller may name a voice by an engine speaker id (``en-us-f3``), an alias
the engine declares (CosyVoice's ``中文女``, OpenAI's ``alloy``), or an alias
from configuration (``VOXGATE_VOICE_ALIASES``). Matching ignores case and
surrounding space so ``Alloy`` works too.

An engine that has never been reached (a ``worker`` engine whose workers are
all down) cannot say which speakers it has; a name it does not know then
means "unknown yet", answered 503 ``engine_unavailable`` with ``Retry-After``,
not 400 ``voice_not_found``, which would tell the caller to fix a request that
may well be right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from voxgate import errors
from voxgate.engines.base import Engine, Speaker
from voxgate.errors import EngineUnavailable, RequestError


@dataclass(frozen=True, slots=True)
class ResolvedVoice:
    speaker: Speaker | None  # None: the voice comes from a prompt
    requested: str | None  # what the caller said, for logs and headers
    registered: str | None = None  # a registered voice's id

    @property
    def label(self) -> str:
        if self.registered:
            return self.registered
        return self.speaker.id if self.speaker else "prompt"


def _key(name: str) -> str:
    return name.strip().casefold()


def _unless_unreachable(engine: Engine) -> None:
    """Raise 503 when the engine's speakers are unknown because it is down."""
    if engine.healthy is False and not engine.speakers():
        raise EngineUnavailable(
            f"engine {engine.name!r} cannot be reached, so its voices are not known yet",
            hint=f"Retry shortly; GET /v1/engines/{engine.name} says why it is down.",
            retry_after=5,
        )


class VoiceDirectory:
    def __init__(self, aliases: Mapping[str, str], default_voice: str | None) -> None:
        self._aliases = {_key(k): v for k, v in aliases.items()}
        self._default = default_voice

    def resolve(
        self,
        engine: Engine,
        voice: str | None,
        *,
        optional: bool = False,
        registered: str | None = None,
    ) -> ResolvedVoice:
        """``optional``: the request brings a prompt, so no speaker is needed."""
        if optional and voice in (None, ""):
            return ResolvedVoice(None, registered, registered)
        name = voice if voice not in (None, "") else self._default
        if name is None:
            speaker = engine.default_speaker()
            if speaker is None:
                _unless_unreachable(engine)
                raise RequestError(
                    f"engine {engine.name!r} has no built-in speakers; a voice is required",
                    code=errors.VOICE_NOT_FOUND,
                    hint="Pass a registered voice id.",
                    param="voice",
                )
            return ResolvedVoice(speaker, None)
        speaker = self._lookup(engine, name)
        if speaker is None:
            _unless_unreachable(engine)
            aliases = [a for s in engine.speakers() for a in s.aliases][:6]
            examples = f" Names such as {', '.join(aliases)} also work." if aliases else ""
            raise RequestError(
                f"engine {engine.name!r} has no voice {name!r}",
                code=errors.VOICE_NOT_FOUND,
                hint=f"GET /v1/audio/voices lists the voice ids.{examples}",
                param="voice",
            )
        return ResolvedVoice(speaker, name)

    def _lookup(self, engine: Engine, name: str) -> Speaker | None:
        key = _key(name)
        target = self._aliases.get(key)
        candidates = [key] if target is None else [_key(target), key]
        speakers = engine.speakers()
        for cand in candidates:
            for speaker in speakers:
                if _key(speaker.id) == cand or cand in (_key(a) for a in speaker.aliases):
                    return speaker
        return None
