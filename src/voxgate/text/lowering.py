"""What to do with markup an engine does not render itself.

Each feature has one sensible fallback, and every fallback is reported to
the caller (as a notice), never applied silently:

* events (``[laughter]``) have no textual equivalent and are dropped;
* spans (``<strong>``) keep their words and lose the emphasis;
* pinyin annotations become a character with that exact reading;
* ARPAbet cannot be written as text and is dropped;
* control tokens (``<|en|>``) are engine syntax and are dropped.
"""

from __future__ import annotations

from voxgate.text.markup import (
    Arpabet,
    Control,
    Event,
    Feature,
    Node,
    Pinyin,
    Span,
    Text,
    merge_texts,
)
from voxgate.text.pronounce import hanzi_for


def lower(
    nodes: tuple[Node, ...], supported: frozenset[Feature]
) -> tuple[tuple[Node, ...], set[Feature]]:
    """Rewrite unsupported features; return the new nodes and what was lowered."""
    lowered: set[Feature] = set()
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Event) and Feature.EVENTS not in supported:
            lowered.add(Feature.EVENTS)
        elif isinstance(node, Span):
            feature = Feature.EMPHASIS if node.name == "strong" else Feature.EVENTS
            children, inner = lower(node.children, supported)
            lowered |= inner
            if feature in supported:
                out.append(Span(node.name, children))
            else:
                lowered.add(feature)
                out.extend(children)
        elif isinstance(node, Pinyin) and Feature.PINYIN not in supported:
            lowered.add(Feature.PINYIN)
            ch = hanzi_for(node.initial, node.final, node.tone)
            if ch:
                out.append(Text(ch))
        elif isinstance(node, Arpabet) and Feature.ARPABET not in supported:
            lowered.add(Feature.ARPABET)
        elif isinstance(node, Control) and Feature.CONTROL not in supported:
            lowered.add(Feature.CONTROL)
        else:
            out.append(node)
    return tuple(merge_texts(out)), lowered
