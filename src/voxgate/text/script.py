"""Which writing system a piece of text is in: enough to route a segment to
the right language of a multilingual engine. Latin text cannot be told apart
by script (en/fr/de...), so the voice's own language decides there."""

from __future__ import annotations

import re
from enum import StrEnum


class Script(StrEnum):
    HAN = "han"
    KANA = "kana"
    HANGUL = "hangul"
    LATIN = "latin"
    CYRILLIC = "cyrillic"


# Character classes per script; counting with regexes keeps this off the
# per-request hot path (a Python loop over every character was not).
_PATTERNS = {
    Script.KANA: re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9d]"),
    Script.HANGUL: re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]"),
    Script.HAN: re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002fa1f]"),
    Script.CYRILLIC: re.compile(r"[\u0400-\u04ff]"),
    Script.LATIN: re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]"),
}
# A Han character or a Hangul block is about a syllable, an alphabetic letter a
# quarter of one, so "我喜欢Python编程" is Chinese with an English word in it.
_WEIGHT = {Script.LATIN: 0.25, Script.CYRILLIC: 0.25}


def dominant_script(text: str) -> Script | None:
    """The script of a text; any kana makes it Japanese, any Hangul Korean.

    Japanese mixes kanji with kana and Chinese never uses kana, so kana wins
    over Han even when Han characters are the majority.
    """
    for decisive in (Script.KANA, Script.HANGUL):
        if _PATTERNS[decisive].search(text):
            return decisive
    best: Script | None = None
    best_weight = 0.0
    for script in (Script.HAN, Script.LATIN, Script.CYRILLIC):
        weight = len(_PATTERNS[script].findall(text)) * _WEIGHT.get(script, 1.0)
        if weight > best_weight:
            best, best_weight = script, weight
    return best


LANGUAGE_OF_SCRIPT = {
    Script.HAN: "zh",
    Script.KANA: "ja",
    Script.HANGUL: "ko",
    Script.CYRILLIC: "ru",
    Script.LATIN: "en",
}
