"""Where text that is still arriving (an LLM's tokens) may be cut.

A streamed session hands text to an engine before the whole of it is known,
so it needs to know how much of what has arrived is safe to hand over:

* :func:`sentence_end`: the complete sentences, for engines that speak text
  sentence by sentence (and for the first words of any session: synthesis
  starts as soon as one sentence is complete). A run-on text with no sentence
  end is cut at a clause or word once it is longer than a segment would be,
  so a missing full stop cannot hold all audio back until the end;
* :func:`word_end`: the complete words, for engines that take text while it
  arrives (CosyVoice 2/3). Their tokenizers read ``Hel`` and ``lo`` as two
  other words than ``Hello``, so a word is handed over once it is complete.

The cut points are the splitter's (:func:`voxgate.text.split.breaks`), and a
cut is never placed inside markup: not inside a tag or an annotation, not
inside a ``<strong>`` span (closed or still open), not in front of a tag
that has not been closed yet, and not right after a bracket token, which
the next piece may continue (``[h]`` then ``[ào]`` is one pinyin syllable).
"""

from __future__ import annotations

import re

from voxgate.text.split import CLAUSE, SENTENCE, WORD, breaks

# Complete markup tokens: a cut may not fall inside one.
_TOKEN = re.compile(r"\[[^\[\]\s<>]{1,24}\]|<\|[A-Za-z_]{1,32}\|>|</?(?:strong|laughter)>")
_SPAN = re.compile(r"<(/)?(strong|laughter)>")
_TRAILING_BRACKETS = re.compile(r"(?:\[[^\[\]\s<>]{1,24}\])+$")


def _tail_limit(text: str) -> int:
    """The last index a cut may take: before an unclosed ``[``, ``<`` or
    span, and before a run of bracket tokens that ends the text."""
    limit = len(text)
    bracket = text.rfind("[")
    if bracket > text.rfind("]"):
        limit = bracket
    angle = text.rfind("<")
    if angle > text.rfind(">"):
        limit = min(limit, angle)
    open_spans: list[int] = []
    for m in _SPAN.finditer(text):
        if m.group(1):
            if open_spans:
                open_spans.pop()
        else:
            open_spans.append(m.start())
    if open_spans:
        limit = min(limit, open_spans[0])
    run = _TRAILING_BRACKETS.search(text[:limit])
    if run is not None:
        limit = run.start()
    return limit


def _inside(text: str) -> list[tuple[int, int]]:
    """Regions a cut may not fall strictly inside: tokens and closed spans."""
    regions = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    stack: list[int] = []
    for m in _SPAN.finditer(text):
        if m.group(1):
            if stack:
                regions.append((stack.pop(), m.end()))
        else:
            stack.append(m.start())
    return regions


def _last_cut(text: str, level: int, limit: int) -> int:
    """The largest cut of at least ``level`` at or before ``limit`` that is
    outside markup; 0 if there is none."""
    regions = _inside(text)
    for at, strength in sorted(breaks(text).items(), reverse=True):
        if at <= limit and strength >= level and not any(a < at < b for a, b in regions):
            return at
    return 0


def sentence_end(text: str, max_chars: int = 200) -> int:
    """How much of ``text`` is complete sentences (0: none yet). Past
    ``max_chars`` without a sentence end, the last clause, else word, will do."""
    limit = _tail_limit(text)
    cut = _last_cut(text, SENTENCE, limit)
    if cut or limit <= max_chars:
        return cut
    return _last_cut(text, CLAUSE, limit) or _last_cut(text, WORD, limit)


def word_end(text: str) -> int:
    """How much of ``text`` is complete words (0: none yet)."""
    return _last_cut(text, WORD, _tail_limit(text))
