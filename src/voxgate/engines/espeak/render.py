"""Segments to espeak-ng input: which espeak voice speaks it, and the SSML.

espeak-ng renders emphasis and pauses through its SSML subset and reads
``[[...]]`` as its own phoneme notation, so CosyVoice's ``<strong>``, event
tags and ARPAbet annotations have real renderings here. Per-segment
language follows the script of the text: a Mandarin voice reading an English
sentence switches to English with the same voice variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from voxgate.engines.espeak.catalog import LANGUAGES, Language
from voxgate.text.kana import to_hiragana
from voxgate.text.markup import Arpabet, Event, Node, Span, Text
from voxgate.text.script import Script
from voxgate.text.split import Segment

# ARPAbet -> espeak-ng's English phoneme mnemonics.
_ARPA_TO_ESPEAK = {
    "AA": "A:", "AE": "a", "AH": "V", "AO": "O:", "AW": "aU", "AY": "aI", "B": "b",
    "CH": "tS", "D": "d", "DH": "D", "EH": "E", "ER": "3:", "EY": "eI", "F": "f",
    "G": "g", "HH": "h", "IH": "I", "IY": "i:", "JH": "dZ", "K": "k", "L": "l",
    "M": "m", "N": "n", "NG": "N", "OW": "oU", "OY": "OI", "P": "p", "R": "r",
    "S": "s", "SH": "S", "T": "t", "TH": "T", "UH": "U", "UW": "u:", "V": "v",
    "W": "w", "Y": "j", "Z": "z", "ZH": "Z",
}  # fmt: skip
_EVENT_PAUSE_MS = {"breath": 250, "quick_breath": 150, "sigh": 400, "laughter": 350}
_DEFAULT_PAUSE_MS = 200


def arpabet_to_espeak(phones: tuple[str, ...]) -> str:
    out = []
    for phone in phones:
        base, stress = (phone[:-1], phone[-1]) if phone[-1].isdigit() else (phone, "")
        if base == "AH" and stress == "0":
            sym = "@"
        elif base == "ER" and stress == "0":
            sym = "3"
        else:
            sym = _ARPA_TO_ESPEAK[base]
        out.append({"1": "'", "2": ","}.get(stress, "") + sym)
    return "".join(out)


def _to_kana(text: str) -> str:
    """Kanji to hiragana: espeak-ng's Japanese voice only reads kana."""
    return to_hiragana(text)


def _has_han(text: str) -> bool:
    return any(0x4E00 <= ord(ch) <= 0x9FFF or 0x3400 <= ord(ch) <= 0x4DBF for ch in text)


def _ssml(nodes: tuple[Node, ...], kana: bool) -> str:
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            parts.append(escape(_to_kana(node.text) if kana else node.text))
        elif isinstance(node, Event):
            ms = _EVENT_PAUSE_MS.get(node.name, _DEFAULT_PAUSE_MS)
            parts.append(f'<break time="{ms}ms"/>')
        elif isinstance(node, Span):
            inner = _ssml(node.children, kana)
            parts.append(f"<emphasis>{inner}</emphasis>" if node.name == "strong" else inner)
        elif isinstance(node, Arpabet):
            parts.append(f" [[{arpabet_to_espeak(node.phones)}]] ")
        # Pinyin and control tokens were lowered by the pipeline.
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class RenderedSegment:
    voice: str  # espeak voice name with variant, e.g. "cmn+f3"
    ssml: str


_SCRIPTS_OF = {
    "zh": {Script.HAN},
    "yue": {Script.HAN},
    "ja": {Script.HAN, Script.KANA},
    "ko": {Script.HANGUL},
    "ru": {Script.CYRILLIC},
}


def _compatible(lang: Language, script: Script | None) -> bool:
    if script is None:
        return True
    if lang.latin:
        return script is Script.LATIN
    return script in _SCRIPTS_OF.get(lang.code, set())


def segment_language(segment: Segment, base: Language, override: str | None) -> Language:
    """The language a segment is spoken in.

    An explicit language (request or instruction) wins where the text's
    script allows it; otherwise the voice's own language where the script
    allows it; otherwise the usual language of the script.
    """
    script = segment.script
    if override in LANGUAGES and _compatible(LANGUAGES[override], script):
        return LANGUAGES[override]
    if _compatible(base, script):
        return base
    default = {
        Script.LATIN: "en-US",
        Script.HAN: "zh",
        Script.KANA: "ja",
        Script.HANGUL: "ko",
        Script.CYRILLIC: "ru",
    }
    assert script is not None
    return LANGUAGES[default[script]]


def render_segment(
    segment: Segment, base: Language, variant: str, override: str | None
) -> RenderedSegment:
    lang = segment_language(segment, base, override)
    kana = lang.code == "ja" and _has_han(segment.plain)
    return RenderedSegment(f"{lang.espeak}+{variant}", _ssml(segment.nodes, kana))


def needs_kana(segment: Segment, base: Language, override: str | None) -> bool:
    """True when rendering will load the kanji reader (slow the first time)."""
    return segment_language(segment, base, override).code == "ja" and _has_han(segment.plain)
