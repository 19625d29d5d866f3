from __future__ import annotations

import pytest

from voxgate.text.lowering import lower
from voxgate.text.markup import (
    Arpabet,
    Control,
    Event,
    Feature,
    Pinyin,
    Span,
    Text,
    features,
    has_content,
    parse,
    plain,
    render,
)

ROUND_TRIP = [
    "plain text",
    "她[h][ào]干净",
    "报道[j][ǐ]予好评",
    "[breath]他说<strong>不</strong>[laughter]",
    "I read the [M][AY0][N][UW1][T] hand.",
    "<|en|>Hello<|endofprompt|>",
    "<laughter>哈哈</laughter>，太好了",
    "a [bracket] that is just text",
    "unclosed <strong>emphasis",
    "stray </strong> close",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_render_inverts_parse(text: str) -> None:
    assert render(parse(text)) == text


def test_nodes() -> None:
    assert parse("她[h][ào]干净") == (Text("她"), Pinyin("h", "ao", 4, "[h][ào]"), Text("干净"))
    assert parse("[ài]") == (Pinyin("", "ai", 4, "[ài]"),)
    assert parse("[zh][ong1]") == (Pinyin("zh", "ong", 1, "[zh][ong1]"),)
    assert parse("[M][AY0][N][UW1][T]") == (Arpabet(("M", "AY0", "N", "UW1", "T")),)
    assert parse("[breath]") == (Event("breath"),)
    assert parse("<strong>a[cough]b</strong>") == (
        Span("strong", (Text("a"), Event("cough"), Text("b"))),
    )
    assert parse("<|zh|>") == (Control("zh"),)
    # not annotations: a consonant alone, a stressed consonant, an unknown word
    assert parse("[h]") == (Text("[h]"),)
    assert parse("[M1]") == (Text("[M1]"),)
    assert parse("[note]") == (Text("[note]"),)


def test_plain_and_features() -> None:
    nodes = parse("[breath]她[h][ào]<strong>干净</strong>[M][AY0]<|en|>")
    assert plain(nodes) == "她干净"
    assert features(nodes) == {
        Feature.EVENTS,
        Feature.PINYIN,
        Feature.EMPHASIS,
        Feature.ARPABET,
        Feature.CONTROL,
    }


def test_has_content() -> None:
    assert has_content(parse("hello"))
    assert has_content(parse("[laughter]"))
    assert not has_content(parse("。。。"))
    assert not has_content(parse("<|en|>"))
    assert not has_content(parse("<strong>!</strong>"))


def test_lowering_replaces_pinyin_with_a_character_of_that_reading() -> None:
    nodes, lowered = lower(parse("她[h][ào]干净"), frozenset())
    assert lowered == {Feature.PINYIN}
    text = plain(nodes)
    assert text.startswith("她")
    assert text.endswith("干净")
    assert len(text) == 4
    from pypinyin import Style, pinyin

    assert pinyin(text[1], style=Style.TONE3)[0][0] == "hao4"


def test_lowering_keeps_what_the_engine_supports() -> None:
    nodes = parse("a<strong>b</strong>[laughter][M][AY0]<|en|>")
    kept, lowered = lower(nodes, frozenset({Feature.EMPHASIS, Feature.ARPABET}))
    assert lowered == {Feature.EVENTS, Feature.CONTROL}
    assert render(kept) == "a<strong>b</strong>[M][AY0]"
    flat, lowered = lower(nodes, frozenset())
    assert render(flat) == "ab"
    assert lowered == {Feature.EVENTS, Feature.EMPHASIS, Feature.ARPABET, Feature.CONTROL}
