"""Pinyin annotations for engines that cannot read them: a common character
whose usual reading is that syllable, so any Chinese engine says what was meant.

Characters come from pypinyin's dictionary, restricted to the 3,755 most
common ones (GB2312 level 1) so an engine surely knows them.
"""

from __future__ import annotations

from functools import lru_cache

from voxgate.text.markup import split_tone


def _common(ch: str) -> bool:
    try:
        code = ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(code) == 2 and 0xB0 <= code[0] <= 0xD7


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    """Syllable ("hao4") -> a common character read that way.

    pypinyin lists a character's most common reading first. A character with
    only that one reading is the safest choice; failing that, one whose first
    reading is the syllable.
    """
    from pypinyin.pinyin_dict import pinyin_dict  # large; load on first use

    only: dict[str, str] = {}
    first: dict[str, str] = {}
    for cp, readings in sorted(pinyin_dict.items()):
        ch = chr(cp)
        if not _common(ch):
            continue
        reading = readings.split(",")[0]
        parsed = split_tone(reading)
        key = (f"{parsed[0]}{parsed[1]}" if parsed else f"{reading}5").replace("v", "ü")
        target = only if "," not in readings else first
        target.setdefault(key, ch)
    return {**first, **only}


def hanzi_for(initial: str, final: str, tone: int) -> str | None:
    """A common single-reading character pronounced ``initial+final`` in ``tone``."""
    key = f"{initial}{final}".replace("v", "ü")
    index = _index()
    if tone == 5:
        return index.get(f"{key}5") or next(
            (index[f"{key}{t}"] for t in (1, 2, 3, 4) if f"{key}{t}" in index), None
        )
    return index.get(f"{key}{tone}")
