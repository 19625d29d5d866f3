"""Which engine, mode and prompt a request's voice calls for.

A request names a voice (a built-in speaker, or a registered voice's id) and
perhaps an engine and a mode; it may bring its own prompt. The rules, so that
every surface behaves the same:

* a **registered voice** brings its prompt and transcript. With no mode, it is
  spoken ``zero_shot`` when it has a transcript and the engine has that mode,
  else ``cross_lingual``; with an instruction (and an engine that follows one
  from a prompt) ``instruct``. ``sft`` cannot use it (``voice_mode_mismatch``).
  A voice registered for an engine uses that engine unless the request names
  one (OpenAI's generic model names, ``tts-1``..., do not count as naming one);
* an **inline prompt** works the same way, for this request only;
* otherwise the voice is a built-in speaker, spoken ``sft`` (or ``instruct``
  when asked).
"""

from __future__ import annotations

from dataclasses import dataclass

from voxgate import errors
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import Engine, Mode
from voxgate.engines.registry import EngineRegistry
from voxgate.errors import RequestError
from voxgate.voices.library import VoiceLibrary
from voxgate.voices.model import Voice, is_voice_id


@dataclass(frozen=True, slots=True)
class VoicePlan:
    engine: Engine
    mode: Mode
    prompt: PromptAudio | None
    speaker: str | None  # a built-in voice name to resolve, None when a prompt speaks
    registered: Voice | None


async def plan_voice(
    *,
    voice: str | None,
    engine: str | None,
    mode: Mode | None,
    instruct: str | None,
    prompt: PromptAudio | None,
    tenant: str,
    registry: EngineRegistry,
    library: VoiceLibrary | None,
    generic_models: frozenset[str],
) -> VoicePlan:
    registered = None
    if is_voice_id(voice):
        assert voice is not None
        registered = await library.find(voice, tenant) if library is not None else None
        if registered is None:
            raise RequestError(
                f"no voice {voice!r}",
                code=errors.VOICE_NOT_FOUND,
                hint="GET /v1/audio/voices lists the registered voices.",
                param="voice",
            )
    chosen = engine
    if registered and registered.engine and (engine is None or engine in generic_models):
        chosen = registered.engine
    target = registry.get(chosen)
    if registered is not None and prompt is None:
        assert library is not None
        prompt = await library.prompt(registered)
    resolved = mode if mode is not None else _auto_mode(target, prompt, instruct)
    caps = target.capabilities
    if registered is not None and resolved not in caps.prompt_modes:
        raise RequestError(
            f"voice {registered.id} is a registered voice; mode {resolved.value!r} of engine "
            f"{target.name!r} speaks only with built-in speakers",
            code=errors.VOICE_MODE_MISMATCH,
            hint=_prompt_hint(target),
            param="mode",
        )
    # With a prompt the prompt speaks; a speaker name is then beside the point.
    speaker = None if prompt is not None and resolved in caps.prompt_modes else voice
    return VoicePlan(target, resolved, prompt, speaker, registered)


def _auto_mode(engine: Engine, prompt: PromptAudio | None, instruct: str | None) -> Mode:
    caps = engine.capabilities
    if prompt is None:
        return Mode.SFT  # a built-in speaker (an instruction rides along where honoured)
    if instruct and Mode.INSTRUCT in caps.prompt_modes:
        return Mode.INSTRUCT
    if prompt.text and Mode.ZERO_SHOT in caps.prompt_modes:
        return Mode.ZERO_SHOT
    if Mode.CROSS_LINGUAL in caps.prompt_modes:
        return Mode.CROSS_LINGUAL
    if Mode.ZERO_SHOT in caps.prompt_modes:
        return Mode.ZERO_SHOT  # it will ask for the transcript (prompt_text_required)
    raise RequestError(
        f"engine {engine.name!r} cannot speak with a voice prompt",
        code=errors.VOICE_MODE_MISMATCH,
        hint=_prompt_hint(engine),
        param="voice",
    )


def _prompt_hint(engine: Engine) -> str:
    modes = sorted(engine.capabilities.prompt_modes)
    if modes:
        return f"Use mode {', '.join(modes)} (or leave mode out)."
    return (
        f"Engine {engine.name!r} has no prompt modes; use an engine that clones "
        "(a CosyVoice engine, or the embedded espeak's voice matching)."
    )
