"""What the stand-in adds for tests (not part of upstream's interface): the
table of recordings it "hears", and counters of what the adapter did.

A test teaches the stand-in a recording with :func:`teach`, giving the audio
exactly as the model receives it (float32, 16 kHz, after the adapter's
resampling), the language Whisper would detect, and the segments' texts. The
table and the counting are shared with the funasr stand-in (``_asr_standin``);
``active`` and ``peak`` read this stand-in's own gauge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# ``x as x``: re-exported, what tests and the stand-in's model read as ``standin.x``
from _asr_standin import TABLE as TABLE
from _asr_standin import Gauge, remember
from _asr_standin import fingerprint as fingerprint
from _asr_standin import lookup as lookup

calls: list[dict[str, Any]] = []  # one per transcribe(): its options and thread
consumed_in: list[str] = []  # the thread that read each segment (decoded it)
_gauge = Gauge()  # decodings running now (active), and at most (peak)
enter = _gauge.enter
leave = _gauge.leave


def teach(
    model_dir: Path,
    audio: Any,
    segments: Sequence[str],
    *,
    language: str = "en",
    language_probability: float = 0.95,
    avg_logprob: float = -0.25,
    delay_s: float = 0.0,
    error: str | None = None,
) -> str:
    """Make the stand-in recognize ``audio`` as ``segments`` in ``language``."""
    entry = {
        "segments": list(segments),
        "language": language,
        "language_probability": language_probability,
        "avg_logprob": avg_logprob,
        "delay_s": delay_s,
        "error": error,
    }
    return remember(model_dir, audio, entry)


def reset() -> None:
    _gauge.reset(calls, consumed_in)


def __getattr__(name: str) -> int:
    return _gauge.read(__name__, name)
