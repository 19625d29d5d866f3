"""Inline markup: CosyVoice's tags and pronunciation annotations, as typed nodes.

voxgate's canonical text is CosyVoice's own syntax, so text written for
CosyVoice passes through unchanged. Parsing it once into nodes lets the
pipeline split long text without cutting a tag in half, ask each engine which
features it renders itself, and lower the rest sensibly (see
:func:`voxgate.text.lowering.lower`).

Recognised:

* paralinguistic events ``[breath] [laughter] [noise] [cough] [sigh]
  [quick_breath] [lipsmack]`` and a few more CosyVoice 3 uses;
* spans ``<strong>..</strong>`` and ``<laughter>..</laughter>``;
* pinyin annotations: an initial and a toned final as separate bracket tokens,
  ``她[h][ào]干净``, or a final alone, ``[ài]``;
* ARPAbet annotations: consecutive upper-case phones with stress,
  ``[M][AY0][N][UW1][T]``;
* control tokens ``<|...|>`` (language tags, ``<|endofprompt|>``).

Bracketed text that is none of these stays literal text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Feature(StrEnum):
    """Markup features an engine may declare it renders natively."""

    EVENTS = "events"
    EMPHASIS = "emphasis"
    PINYIN = "pinyin"
    ARPABET = "arpabet"
    CONTROL = "control"


EVENT_TAGS = frozenset(
    {
        "breath",
        "laughter",
        "noise",
        "cough",
        "sigh",
        "quick_breath",
        "lipsmack",
        "clucking",
        "hissing",
        "vocalized-noise",
        "mn",
    }
)
SPAN_TAGS = frozenset({"strong", "laughter"})

PINYIN_INITIALS = frozenset("b p m f d t n l g k h j q x zh ch sh r z c s y w".split())
_TONE_MARKS = {
    "ā": ("a", 1), "á": ("a", 2), "ǎ": ("a", 3), "à": ("a", 4),
    "ē": ("e", 1), "é": ("e", 2), "ě": ("e", 3), "è": ("e", 4),
    "ī": ("i", 1), "í": ("i", 2), "ǐ": ("i", 3), "ì": ("i", 4),
    "ō": ("o", 1), "ó": ("o", 2), "ǒ": ("o", 3), "ò": ("o", 4),
    "ū": ("u", 1), "ú": ("u", 2), "ǔ": ("u", 3), "ù": ("u", 4),
    "ǖ": ("ü", 1), "ǘ": ("ü", 2), "ǚ": ("ü", 3), "ǜ": ("ü", 4),
}  # fmt: skip
PINYIN_FINALS = frozenset(
    """a o e ai ei ao ou an en ang eng ong er i ia ie iao iu ian in iang ing iong
    u ua uo uai ui uan un uang ueng ü üe üan ün ue ve van vn v io""".split()
)
ARPABET_PHONES = frozenset(
    """AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S
    SH T TH UH UW V W Y Z ZH""".split()
)
ARPABET_VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Event:
    name: str


@dataclass(frozen=True, slots=True)
class Span:
    name: str
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Pinyin:
    """One syllable: ``initial`` may be empty; ``final`` plain letters; ``tone`` 1-5."""

    initial: str
    final: str
    tone: int
    source: str  # the bracket tokens as written, for lossless rendering

    @property
    def numbered(self) -> str:
        return f"{self.initial}{self.final}{self.tone}"


@dataclass(frozen=True, slots=True)
class Arpabet:
    phones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Control:
    token: str


Node = Text | Event | Span | Pinyin | Arpabet | Control

_TOKEN = re.compile(
    r"\[(?P<bracket>[^\[\]\s<>]{1,24})\]"
    r"|<(?P<close>/)?(?P<tag>strong|laughter)>"
    r"|<\|(?P<control>[A-Za-z_]{1,32})\|>"
)
_ARPA = re.compile(r"^([A-Z]{1,2})([012])?$")


def split_tone(token: str) -> tuple[str, int] | None:
    """``ào`` -> ("ao", 4); ``ao4`` -> ("ao", 4); ``ao`` -> None."""
    token = unicodedata.normalize("NFC", token)
    if token[-1:].isdigit():
        tone = int(token[-1])
        return (token[:-1], tone) if 1 <= tone <= 5 and token[:-1] else None
    tone = 0
    letters = []
    for ch in token:
        if ch in _TONE_MARKS:
            base, tone = _TONE_MARKS[ch]
            letters.append(base)
        else:
            letters.append(ch)
    return ("".join(letters), tone) if tone else None


def _is_final(token: str) -> bool:
    parsed = split_tone(token)
    return parsed is not None and parsed[0] in PINYIN_FINALS


def _arpabet_phone(token: str) -> bool:
    m = _ARPA.match(token)
    if not m or m.group(1) not in ARPABET_PHONES:
        return False
    return m.group(2) is None or m.group(1) in ARPABET_VOWELS


def parse(text: str) -> tuple[Node, ...]:
    """Parse markup into nodes. Never fails: what is not markup is text."""
    root: list[Node] = []
    stack: list[tuple[str, list[Node]]] = []
    pending_brackets: list[str] = []

    def out() -> list[Node]:
        return stack[-1][1] if stack else root

    def add_text(s: str) -> None:
        if not s:
            return
        target = out()
        if target and isinstance(target[-1], Text):
            target[-1] = Text(target[-1].text + s)
        else:
            target.append(Text(s))

    def flush_brackets() -> None:
        tokens = pending_brackets[:]
        pending_brackets.clear()
        out().extend(_group_annotations(tokens))

    pos = 0
    for m in _TOKEN.finditer(text):
        gap = text[pos : m.start()]
        if gap:
            flush_brackets()
            add_text(gap)
        pos = m.end()
        if (b := m.group("bracket")) is not None:
            if b in EVENT_TAGS:
                flush_brackets()
                out().append(Event(b))
            else:
                pending_brackets.append(b)
            continue
        flush_brackets()
        if (c := m.group("control")) is not None:
            out().append(Control(c))
        elif m.group("close"):
            tag = m.group("tag")
            if stack and stack[-1][0] == tag:
                name, children = stack.pop()
                out().append(Span(name, tuple(children)))
            else:
                add_text(m.group(0))  # stray closing tag: keep as text
        else:
            stack.append((m.group("tag"), []))
    flush_brackets()
    add_text(text[pos:])
    while stack:  # unclosed span: keep its opening tag as text, then its content
        name, children = stack.pop()
        add_text(f"<{name}>")
        for child in children:
            if isinstance(child, Text):
                add_text(child.text)
            else:
                out().append(child)
    return tuple(root)


def _group_annotations(tokens: list[str]) -> list[Node]:
    """Turn a run of bracket tokens into pinyin syllables / ARPAbet words."""
    nodes: list[Node] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if _arpabet_phone(tok):
            j = i
            while j < len(tokens) and _arpabet_phone(tokens[j]):
                j += 1
            nodes.append(Arpabet(tuple(tokens[i:j])))
            i = j
            continue
        if tok in PINYIN_INITIALS and i + 1 < len(tokens) and _is_final(tokens[i + 1]):
            final, tone = split_tone(tokens[i + 1])  # type: ignore[misc]
            nodes.append(Pinyin(tok, final, tone, f"[{tok}][{tokens[i + 1]}]"))
            i += 2
            continue
        if _is_final(tok):
            final, tone = split_tone(tok)  # type: ignore[misc]
            nodes.append(Pinyin("", final, tone, f"[{tok}]"))
            i += 1
            continue
        nodes.append(Text(f"[{tok}]"))
        i += 1
    return merge_texts(nodes)


def merge_texts(nodes: Iterable[Node]) -> list[Node]:
    """Join adjacent text nodes, as rewriting a node list leaves them apart."""
    merged: list[Node] = []
    for n in nodes:
        if merged and isinstance(n, Text) and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + n.text)
        else:
            merged.append(n)
    return merged


def render(nodes: tuple[Node, ...] | list[Node]) -> str:
    """Back to canonical (CosyVoice) syntax; ``render(parse(s)) == s`` for markup."""
    parts: list[str] = []
    for n in nodes:
        if isinstance(n, Text):
            parts.append(n.text)
        elif isinstance(n, Event):
            parts.append(f"[{n.name}]")
        elif isinstance(n, Span):
            parts.append(f"<{n.name}>{render(n.children)}</{n.name}>")
        elif isinstance(n, Pinyin):
            parts.append(n.source)
        elif isinstance(n, Arpabet):
            parts.append("".join(f"[{p}]" for p in n.phones))
        else:
            parts.append(f"<|{n.token}|>")
    return "".join(parts)


def plain(nodes: tuple[Node, ...] | list[Node]) -> str:
    """Only the words meant to be read literally (no tags, no annotations)."""
    parts: list[str] = []
    for n in nodes:
        if isinstance(n, Text):
            parts.append(n.text)
        elif isinstance(n, Span):
            parts.append(plain(n.children))
    return "".join(parts)


_WORD_CHAR = re.compile(r"\w")


def has_content(nodes: tuple[Node, ...] | list[Node]) -> bool:
    """Whether there is anything to say: a word, an event or an annotation."""
    for n in nodes:
        if isinstance(n, Text):
            if _WORD_CHAR.search(n.text):
                return True
        elif isinstance(n, Span):
            if has_content(n.children):
                return True
        elif not isinstance(n, Control):
            return True
    return False


def features(nodes: tuple[Node, ...] | list[Node]) -> set[Feature]:
    """Which markup features occur in the nodes."""
    found: set[Feature] = set()
    for n in nodes:
        if isinstance(n, Event):
            found.add(Feature.EVENTS)
        elif isinstance(n, Span):
            found.add(Feature.EMPHASIS if n.name == "strong" else Feature.EVENTS)
            found |= features(n.children)
        elif isinstance(n, Pinyin):
            found.add(Feature.PINYIN)
        elif isinstance(n, Arpabet):
            found.add(Feature.ARPABET)
        elif isinstance(n, Control):
            found.add(Feature.CONTROL)
    return found
