"""Natural-language style instructions as prosody cues.

CosyVoice's instruct mode takes free text ("用悲伤的语气朗读", "speak slowly
and softly"). An engine without that ability can still honour the part of an
instruction that is about prosody: rate, pitch, pitch range, loudness, and
a language variant it has. :func:`interpret` finds those cues and says what
it could not use, so the caller is told instead of the instruction being
dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# CosyVoice 3's dialect instructions: recognised so we can say precisely that
# an engine cannot speak them (instead of "not understood").
DIALECTS = (
    "广东", "东北", "甘肃", "贵州", "河南", "湖北", "湖南", "江西", "闽南",
    "宁夏", "山西", "陕西", "山东", "上海", "四川", "天津", "云南",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Cue:
    name: str
    rate: float = 1.0
    pitch: float = 0.0  # semitones
    range: float = 1.0
    volume: float = 1.0
    language: str | None = None


# Longest phrases first, so "快乐" (happy) is not read as "快" (fast).
_CUES: list[tuple[tuple[str, ...], _Cue]] = [
    (("very slowly", "very slow", "slowest", "非常慢", "最慢", "极慢"), _Cue("slowest", rate=0.65)),
    (("very fast", "very quickly", "fastest", "非常快", "最快", "极快"), _Cue("fastest", rate=1.5)),
    (
        (
            "happy",
            "happily",
            "cheerful",
            "joyful",
            "excited",
            "开心",
            "高兴",
            "快乐",
            "兴奋",
            "愉快",
            "欢快",
        ),
        _Cue("happy", rate=1.08, pitch=2.0, range=1.4),
    ),
    (
        ("sad", "sadly", "sorrowful", "melancholy", "悲伤", "伤心", "难过", "忧伤", "悲痛"),
        _Cue("sad", rate=0.85, pitch=-2.0, range=0.6, volume=0.85),
    ),
    (
        ("angry", "angrily", "furious", "生气", "愤怒", "恼火"),
        _Cue("angry", rate=1.1, pitch=1.0, range=1.3, volume=1.3),
    ),
    (("calm", "calmly", "平静", "冷静", "沉稳"), _Cue("calm", rate=0.95, range=0.7)),
    (("whisper", "whispering", "耳语", "悄悄"), _Cue("whisper", volume=0.5, range=0.6)),
    (("loudly", "loud", "shout", "shouting", "大声", "响亮", "高声"), _Cue("loud", volume=1.5)),
    (
        ("softly", "soft", "quietly", "quiet", "gently", "gentle", "小声", "轻声", "轻柔", "温柔"),
        _Cue("soft", volume=0.65),
    ),
    (("high-pitched", "high pitch", "higher", "高音", "高调", "尖细"), _Cue("high", pitch=3.0)),
    (("low-pitched", "low pitch", "deep voice", "lower", "低沉", "低音"), _Cue("low", pitch=-3.0)),
    (("slowly", "slower", "slow", "慢速", "缓慢", "慢"), _Cue("slow", rate=0.8)),
    (
        ("quickly", "faster", "fast", "quick", "rapidly", "快速", "语速快", "快"),
        _Cue("fast", rate=1.25),
    ),
    (("cantonese", "粤语", "广东话", "白话"), _Cue("cantonese", language="yue")),
    (("mandarin", "普通话", "国语"), _Cue("mandarin", language="cmn")),
    (("british", "英式"), _Cue("british", language="en-gb")),
    (("american", "美式"), _Cue("american", language="en-us")),
]
_WORD = re.compile(r"[A-Za-z]")
# Words that carry no instruction: whatever remains after removing cues and
# these is what we report as not understood.
_FILLER = re.compile(
    r"(?i)\b(?:please|speak|say|read|talk|it|this|in|a|an|the|and|with|voice|tone|way|"
    r"manner|style|very|bit|little|more|like|you|are|is|be|to|of|as|if|sound|"
    r"accent|dialect|helpful|assistant)\b|"
    r"[用以的语气声音说话朗读请地得一点些稍微非常很比较方式风格口吻腔调来读讲这句段篇文字内容下面把给我们吧呢啊，。,.!！?？\s]"
)


@dataclass(slots=True)
class StyleCues:
    rate: float = 1.0
    pitch: float = 0.0
    range: float = 1.0
    volume: float = 1.0
    language: str | None = None
    applied: list[str] = field(default_factory=list)
    dialect: str | None = None  # a CosyVoice dialect the instruction asked for
    leftover: str = ""  # the part of the instruction no cue explained

    @property
    def understood(self) -> bool:
        return bool(self.applied)


def _matches(text: str, phrase: str) -> list[tuple[int, int]]:
    if _WORD.match(phrase):
        pattern = r"(?<![A-Za-z])" + re.escape(phrase) + r"(?![A-Za-z])"
        return [(m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE)]
    return [(m.start(), m.end()) for m in re.finditer(re.escape(phrase), text)]


def interpret(instruction: str) -> StyleCues:
    """Find prosody cues in an instruction (English or Chinese)."""
    cues = StyleCues()
    taken = [False] * len(instruction)
    for phrases, cue in _CUES:
        hit = False
        for phrase in sorted(phrases, key=len, reverse=True):
            for start, end in _matches(instruction, phrase):
                if any(taken[start:end]):
                    continue
                for i in range(start, end):
                    taken[i] = True
                hit = True
        if hit and cue.name not in cues.applied:
            cues.applied.append(cue.name)
            cues.rate *= cue.rate
            cues.pitch += cue.pitch
            cues.range *= cue.range
            cues.volume *= cue.volume
            cues.language = cue.language or cues.language
    for dialect in DIALECTS:
        if dialect in instruction and dialect != "广东":
            cues.dialect = dialect
            for m in re.finditer(re.escape(dialect) + "[话方言口音]*", instruction):
                for i in range(m.start(), m.end()):
                    taken[i] = True
    rest = "".join(ch if not t else " " for ch, t in zip(instruction, taken, strict=True))
    cues.leftover = " ".join(_FILLER.sub(" ", rest).split())
    return cues
