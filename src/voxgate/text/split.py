"""Sentence splitting for Chinese, English and mixed text.

Why split at all: the first audio can leave after the first sentence instead
of after the whole text, engines behave better on bounded segments, and
CosyVoice skips its own splitting for text that contains tags, so voxgate
must do it. Splitting works on markup nodes, so a tag or an annotation is
never cut in half.

The first segment is kept short on purpose (``first_max_chars``): it is the
one the listener waits for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voxgate.text.markup import Node, Span, Text, merge_texts, plain, render
from voxgate.text.script import Script, dominant_script

_SENTENCE = re.compile(r"(?:[。！？!?；;]+|…+|\.{3,}|(?<![.\d])\.(?=\s|$)|\n+)[\"'”’」』）)\]]*\s*")
_CLAUSE = re.compile(r"[，,、：:—–]+\s*")
_WORD = re.compile(r"\s+")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e inc ltd co no fig approx dept".split()
)
_SPEAKABLE = re.compile(r"\w", re.UNICODE)

# How strongly a piece ends: a segment may be cut after it at this level.
NONE, WORD, CLAUSE, SENTENCE = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Segment:
    index: int
    nodes: tuple[Node, ...]
    script: Script | None

    @property
    def text(self) -> str:
        return render(self.nodes)

    @property
    def plain(self) -> str:
        return plain(self.nodes)


@dataclass(slots=True)
class _Piece:
    node: Node
    length: int  # characters that count against the limits
    level: int = NONE  # break level after this piece


def _is_abbreviation(text: str, dot: int) -> bool:
    word = re.search(r"([A-Za-z.]+)$", text[:dot])
    if not word:
        return False
    w = word.group(1).lower()
    return w in _ABBREVIATIONS or (len(w) == 1 and text[dot - 1].isupper())


def breaks(text: str) -> dict[int, int]:
    """Where a plain text may be cut, and how strongly: the index after each
    sentence end, clause end and word (its trailing spaces included) -> level.
    Text that is still arriving is cut at the same places (text/incremental.py)."""
    cuts: dict[int, int] = {}
    for m in _SENTENCE.finditer(text):
        dot = m.group(0).startswith(".") and not m.group(0).startswith("...")
        if not (dot and _is_abbreviation(text, m.start())):
            cuts[m.end()] = SENTENCE
    for level, pattern in ((CLAUSE, _CLAUSE), (WORD, _WORD)):
        for m in pattern.finditer(text):
            cuts[m.end()] = max(cuts.get(m.end(), NONE), level)
    return cuts


def _text_pieces(text: str) -> list[_Piece]:
    """Cut a text run after each sentence end, clause end and word."""
    cuts = breaks(text)
    pieces: list[_Piece] = []
    start = 0
    for end in sorted(cuts):
        if end > start:
            pieces.append(_Piece(Text(text[start:end]), end - start, cuts[end]))
            start = end
    if start < len(text):
        pieces.append(_Piece(Text(text[start:]), len(text) - start))
    return pieces


def _hard_cut(piece: _Piece, limit: int) -> list[_Piece]:
    """A clause longer than the limit with no place to break (CJK run-on)."""
    assert isinstance(piece.node, Text)
    text = piece.node.text
    out = [
        _Piece(Text(text[i : i + limit]), len(text[i : i + limit]), WORD)
        for i in range(0, len(text), limit)
    ]
    out[-1].level = piece.level
    return out


def _flatten(nodes: tuple[Node, ...], limit: int) -> list[_Piece]:
    pieces: list[_Piece] = []
    for node in nodes:
        if isinstance(node, Text):
            for p in _text_pieces(node.text):
                pieces.extend(_hard_cut(p, limit) if p.length > limit else [p])
        elif isinstance(node, Span):
            pieces.append(_Piece(node, len(plain(node.children))))
        else:
            pieces.append(_Piece(node, 1))
    return pieces


def _last_break(pieces: list[_Piece]) -> int | None:
    """Index of the piece to cut after: the last clause end, else the last word end."""
    for level in (CLAUSE, WORD):
        for i in range(len(pieces) - 1, -1, -1):
            if pieces[i].level >= level:
                return i
    return None


def split(
    nodes: tuple[Node, ...],
    *,
    max_chars: int = 200,
    first_max_chars: int = 60,
) -> list[Segment]:
    """Split markup into segments of at most about ``max_chars`` characters,
    the first at most about ``first_max_chars``."""
    groups: list[list[_Piece]] = []
    cur: list[_Piece] = []
    length = 0
    for piece in _flatten(nodes, max_chars):
        limit = first_max_chars if not groups else max_chars
        if cur and length + piece.length > limit:
            cut = _last_break(cur)
            if cut is not None:
                groups.append(cur[: cut + 1])
                cur = cur[cut + 1 :]
                length = sum(p.length for p in cur)
            elif length + piece.length > max_chars:
                groups.append(cur)
                cur, length = [], 0
        cur.append(piece)
        length += piece.length
        if piece.level == SENTENCE:
            groups.append(cur)
            cur, length = [], 0
    if cur:
        groups.append(cur)
    return _finish(groups)


def _speakable(nodes: list[Node]) -> bool:
    return any(not isinstance(n, Text) or _SPEAKABLE.search(n.text) for n in nodes)


def _finish(groups: list[list[_Piece]]) -> list[Segment]:
    """Fold pieces with nothing to say (bare punctuation) into a neighbour,
    and give each segment the script of its words."""
    merged: list[list[Node]] = []
    for group in groups:
        nodes = [p.node for p in group]
        if merged and (not _speakable(nodes) or not _speakable(merged[-1])):
            merged[-1].extend(nodes)
        else:
            merged.append(nodes)
    segments: list[Segment] = []
    last_script: Script | None = None
    for nodes in merged:
        tidy = _tidy(nodes)
        script = dominant_script(plain(tidy)) or last_script
        last_script = script
        segments.append(Segment(len(segments), tidy, script))
    return segments


def _tidy(nodes: list[Node]) -> tuple[Node, ...]:
    """Joined texts, without the spaces the cuts left at either end."""
    out = merge_texts(nodes)
    if out and isinstance(out[-1], Text):
        out[-1] = Text(out[-1].text.rstrip())
    if out and isinstance(out[0], Text):
        out[0] = Text(out[0].text.lstrip())
    return tuple(n for n in out if not (isinstance(n, Text) and not n.text))
