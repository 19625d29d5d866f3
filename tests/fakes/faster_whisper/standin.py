"""What the stand-in adds for tests (not part of upstream's interface): the
table of recordings it "hears", and counters of what the adapter did.

A test teaches the stand-in a recording with :func:`teach`, giving the audio
exactly as the model receives it (float32, 16 kHz, after the adapter's
resampling), the language Whisper would detect, and the segments' texts.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TABLE = "standin_transcripts.json"  # in the model directory

_lock = threading.Lock()
calls: list[dict[str, Any]] = []  # one per transcribe(): its options and thread
consumed_in: list[str] = []  # the thread that read each segment (decoded it)
active = 0  # decodings running now, across all models
peak = 0  # the most that ever ran at once


def fingerprint(audio: Any) -> str:
    pcm = np.round(np.clip(np.asarray(audio, dtype=np.float32), -1, 1) * 32767).astype("<i2")
    return hashlib.sha1(pcm.tobytes()).hexdigest()[:16]


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
    path = Path(model_dir) / TABLE
    table = json.loads(path.read_text()) if path.exists() else {}
    key = fingerprint(audio)
    table[key] = {
        "segments": list(segments),
        "language": language,
        "language_probability": language_probability,
        "avg_logprob": avg_logprob,
        "delay_s": delay_s,
        "error": error,
    }
    path.write_text(json.dumps(table, ensure_ascii=False))
    return key


def lookup(model_dir: Path, audio: Any) -> dict[str, Any] | None:
    path = Path(model_dir) / TABLE
    if not path.exists():
        return None
    entry: dict[str, Any] | None = json.loads(path.read_text()).get(fingerprint(audio))
    return entry


def enter() -> None:
    global active, peak
    with _lock:
        active += 1
        peak = max(peak, active)


def leave() -> None:
    global active
    with _lock:
        active -= 1


def reset() -> None:
    global active, peak
    with _lock:
        calls.clear()
        consumed_in.clear()
        active = peak = 0
