"""Which writing system a piece of text is in: enough to route a segment to
the right language of a multilingual engine. Latin text cannot be told apart
by script (en/fr/de...), so the voice's own language decides there."""

from __future__ import annotations

from enum import StrEnum


class Script(StrEnum):
    HAN = "han"
    KANA = "kana"
    HANGUL = "hangul"
    LATIN = "latin"
    CYRILLIC = "cyrillic"


def _script_of(ch: str) -> Script | None:
    cp = ord(ch)
    if 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9D:
        return Script.KANA
    if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return Script.HANGUL
    if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2FA1F:
        return Script.HAN
    if 0x0400 <= cp <= 0x04FF:
        return Script.CYRILLIC
    if ch.isalpha() and (cp < 0x0250 or 0x1E00 <= cp <= 0x1EFF):
        return Script.LATIN
    return None


_WEIGHT = {Script.LATIN: 0.25, Script.CYRILLIC: 0.25}


def dominant_script(text: str) -> Script | None:
    """The script of a text; any kana makes it Japanese, any Hangul Korean.

    Japanese mixes kanji with kana and Chinese never uses kana, so kana wins
    over Han even when Han characters are the majority. A Han character or a
    Hangul block is about a syllable, an alphabetic letter a quarter of one, so
    "我喜欢Python编程" is Chinese with an English word in it.
    """
    counts: dict[Script, float] = {}
    for ch in text:
        s = _script_of(ch)
        if s is not None:
            counts[s] = counts.get(s, 0) + _WEIGHT.get(s, 1.0)
    if not counts:
        return None
    for decisive in (Script.KANA, Script.HANGUL):
        if decisive in counts:
            return decisive
    return max(counts, key=lambda s: counts[s])


LANGUAGE_OF_SCRIPT = {
    Script.HAN: "zh",
    Script.KANA: "ja",
    Script.HANGUL: "ko",
    Script.CYRILLIC: "ru",
    Script.LATIN: "en",
}
