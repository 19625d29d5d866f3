"""What every speech recognizer offers the voice library, and how one is chosen.

The library needs one thing from a recognizer: the words of a short prompt,
or the reason there are none. Recognizers are slow, blocking, and sometimes
missing a language or a model file; none of that may fail a registration, so
every way of not producing words is a :class:`TranscriptionUnavailable`
carrying a sentence a person can act on.
"""

from __future__ import annotations

import abc
import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from voxgate.audio.pcm import Samples
from voxgate.diagnostics import Check

if TYPE_CHECKING:  # kept out at run time: pocketsphinx's worker processes import this module
    from voxgate.config import AsrConfig

# Spellings callers use for the codes the recognizers know.
_ALIASES = {"cmn": "zh", "zh-cmn": "zh", "zh-yue": "yue"}


def language_code(language: str | None) -> str | None:
    """``en-US`` -> ``en``; None or ``auto`` -> None (let the model detect it)."""
    if language is None:
        return None
    code = language.strip().lower().replace("_", "-")
    if code in ("", "auto"):
        return None
    return _ALIASES.get(code, code.split("-")[0])


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str | None  # detected or given (ISO code: zh, en, ja, ko, yue...)
    engine: str  # the transcriber kind, e.g. "pocketsphinx"
    confidence: float | None = None  # 0..1 where the recognizer has a meaningful one


class TranscriptionUnavailable(Exception):
    """This transcriber cannot transcribe this prompt (e.g. a language it lacks);
    the caller registers the voice without a transcript and says why."""


class Transcriber(abc.ABC):
    """A speech recognizer for prompts of a few seconds.

    Implementations run their blocking model calls in threads they own, at most
    ``concurrency`` at once, never on the event loop (DESIGN rule 3); they take
    float32 mono samples at any rate and resample to what the model wants.
    """

    kind: ClassVar[str]

    @property
    @abc.abstractmethod
    def languages(self) -> frozenset[str] | None:
        """ISO codes this transcriber can transcribe; None: any language."""

    async def start(self) -> None:
        """Load the model (in a thread); raise if it cannot be loaded."""
        return  # a transcriber with nothing to load

    async def close(self) -> None:
        """Stop taking work; calls still inside a model finish on their own."""
        return

    @abc.abstractmethod
    async def transcribe(
        self, samples: Samples, sample_rate: int, language: str | None = None
    ) -> Transcript:
        """The words in ``samples``; ``language`` when the caller knows it.

        Raises :class:`TranscriptionUnavailable` for anything that keeps it
        from producing words: a language it lacks, silence, a model failure.
        """

    async def diagnose(self) -> list[Check]:
        """What ``voxgate doctor`` should know; never loads a model."""
        return []

    def _requested_language(self, language: str | None) -> str | None:
        """The ISO code asked for, or the reason this transcriber cannot do it."""
        code = language_code(language)
        supported = self.languages
        if code is not None and supported is not None and code not in supported:
            raise TranscriptionUnavailable(self._unsupported(code))
        return code

    def _unsupported(self, language: str) -> str:
        known = ", ".join(sorted(self.languages or ()))
        return f"{self.kind} does not transcribe {language!r} (it knows {known})"


# kind -> "module:class". Modules import their heavy packages only when a
# model is loaded or diagnosed, so naming them here costs nothing.
KINDS: dict[str, str] = {
    "pocketsphinx": "voxgate.asr.pocketsphinx:PocketsphinxTranscriber",
    "sensevoice": "voxgate.asr.sensevoice:SenseVoiceTranscriber",
    "faster-whisper": "voxgate.asr.whisper:WhisperTranscriber",
}
NONE_KIND = "none"


def build_transcriber(config: AsrConfig) -> Transcriber | None:
    """The configured transcriber, not started; None for kind ``none``.

    A typo in an option is a configuration error here, at start-up, rather
    than a silently ignored setting.
    """
    if config.kind == NONE_KIND:
        return None
    target = KINDS.get(config.kind)
    if target is None:
        known = ", ".join([*sorted(KINDS), NONE_KIND])
        raise ValueError(f"unknown asr kind {config.kind!r}; known kinds: {known}")
    module, _, name = target.partition(":")
    cls: type[Transcriber] = getattr(importlib.import_module(module), name)
    parameters = _keyword_options(cls)
    unknown = sorted(set(config.options) - set(parameters))
    if unknown:
        known = ", ".join(parameters)
        raise ValueError(f"asr kind {config.kind!r}: unknown options {unknown}; known: {known}")
    required = [o for o, p in parameters.items() if p.default is inspect.Parameter.empty]
    absent = [o for o in required if o not in config.options]
    if absent:
        raise ValueError(f"asr kind {config.kind!r} needs the option(s) {', '.join(absent)}")
    options: dict[str, Any] = dict(config.options)
    return cls(**options)


def _keyword_options(cls: type[Transcriber]) -> dict[str, inspect.Parameter]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
