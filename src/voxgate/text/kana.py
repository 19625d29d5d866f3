"""Japanese kanji to kana readings.

Two engines need it: espeak-ng's Japanese voice reads only kana, and
CosyVoice 3 was trained on katakana for Japanese (its examples convert
first). pykakasi builds its dictionaries on first use (a few hundred ms), so
the converter is made once, lazily, and shared under a lock.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_kakasi: Any = None


def _convert(text: str) -> list[dict[str, str]]:
    global _kakasi
    with _lock:
        if _kakasi is None:
            import pykakasi

            _kakasi = pykakasi.kakasi()  # type: ignore[no-untyped-call]
        return list(_kakasi.convert(text))


def to_hiragana(text: str) -> str:
    return "".join(item["hira"] for item in _convert(text))


def to_katakana(text: str) -> str:
    return "".join(item["kana"] for item in _convert(text))
