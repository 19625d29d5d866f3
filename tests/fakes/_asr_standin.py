"""What the ``funasr`` and ``faster_whisper`` stand-ins share for tests (not
part of either upstream interface): the table of recordings a stand-in
"hears", kept in the model directory, and a gauge of how many model calls run
at once.

The table is a file in the model directory, so each test's directory has
its own and every model loaded from it, in any thread or process, reads it.
It is keyed by a fingerprint of the audio rounded to 16 bits, so that float
noise far below what a recording holds does not change the key.

A top-level module beside the two stand-ins, not ``fakes._asr_standin``:
they are imported as their upstream packages are, with only tests/fakes on
``sys.path`` (as site-packages would be), and so is this.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

TABLE = "standin_transcripts.json"  # in the model directory


def fingerprint(audio: Any) -> str:
    pcm = np.round(np.clip(np.asarray(audio, dtype=np.float32), -1, 1) * 32767).astype("<i2")
    return hashlib.sha1(pcm.tobytes()).hexdigest()[:16]


def remember(model_dir: Path, audio: Any, entry: dict[str, Any]) -> str:
    """Add ``entry`` to the table for ``audio``; its fingerprint, the key."""
    path = Path(model_dir) / TABLE
    table = json.loads(path.read_text()) if path.exists() else {}
    key = fingerprint(audio)
    table[key] = entry
    path.write_text(json.dumps(table, ensure_ascii=False))
    return key


def lookup(model_dir: Path, audio: Any) -> dict[str, Any] | None:
    path = Path(model_dir) / TABLE
    if not path.exists():
        return None
    entry: dict[str, Any] | None = json.loads(path.read_text()).get(fingerprint(audio))
    return entry


class Gauge:
    """Model calls running now (``active``) and the most that ever ran at once
    (``peak``), across every model of one stand-in: what tests compare with the
    adapter's concurrency. Each stand-in keeps its own, so a test of one is not
    counted by the other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def enter(self) -> None:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def reset(self, *records: list[Any]) -> None:
        """Zero the counts and empty ``records``, the stand-in's lists of calls."""
        with self._lock:
            for record in records:
                record.clear()
            self.active = self.peak = 0

    def read(self, module: str, name: str) -> int:
        """``active`` or ``peak`` for a stand-in module's ``__getattr__``, which
        keeps them readable as module attributes, as they always were."""
        if name in ("active", "peak"):
            value: int = getattr(self, name)
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
