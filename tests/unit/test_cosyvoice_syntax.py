"""CosyVoice's prompt-prefix rules, applied per version and removed from
text written for upstream."""

from __future__ import annotations

import pytest

from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.cosyvoice.texts import segment_text, upstream_texts
from voxgate.text.cosyvoice_syntax import V3_PREFIX, apply, split_language_tag, strip
from voxgate.text.markup import parse
from voxgate.text.split import split


def test_v3_zero_shot_prefixes_the_transcript_only() -> None:
    texts = apply(3, "zero_shot", "八百标兵", prompt_text="希望你以后能够做的比我还好呦。")
    assert texts.tts_text == "八百标兵"
    assert (
        texts.prompt_text
        == "You are a helpful assistant.<|endofprompt|>希望你以后能够做的比我还好呦。"
    )


@pytest.mark.parametrize("mode", ["sft", "cross_lingual"])
def test_v3_sft_and_cross_lingual_prefix_the_text(mode: str) -> None:
    assert apply(3, mode, "[breath]因为他们").tts_text == V3_PREFIX + "[breath]因为他们"


def test_instruct_rules_per_version() -> None:
    v3 = apply(3, "instruct", "好少咯", instruct="请用广东话表达。")
    assert v3.instruct_text == "You are a helpful assistant. 请用广东话表达。<|endofprompt|>"
    assert v3.tts_text == "好少咯"
    assert apply(2, "instruct", "x", instruct="用四川话说这句话").instruct_text == (
        "用四川话说这句话<|endofprompt|>"
    )
    assert apply(1, "instruct", "x", instruct="A fiery rebel.").instruct_text == (
        "A fiery rebel.<|endofprompt|>"
    )


def test_v2_and_v1_leave_zero_shot_alone() -> None:
    for version in (1, 2):
        texts = apply(version, "zero_shot", "hello", prompt_text="prompt words")  # type: ignore[arg-type]
        assert (texts.tts_text, texts.prompt_text) == ("hello", "prompt words")


def test_v1_cross_lingual_language_tags() -> None:
    assert apply(1, "cross_lingual", "And then", language="en").tts_text == "<|en|>And then"
    assert apply(1, "cross_lingual", "粤语", language="yue").tts_text == "<|yue|>粤语"
    assert apply(1, "cross_lingual", "<|ja|>こんにちは", language="en").tts_text == (
        "<|ja|>こんにちは"
    )  # a tag the caller wrote wins
    assert apply(1, "cross_lingual", "Hallo", language="de").tts_text == "Hallo"  # no such tag
    assert apply(2, "cross_lingual", "And then", language="en").tts_text == "And then"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("You are a helpful assistant.<|endofprompt|>希望你以后", "希望你以后"),
        ("You are a helpful assistant. 请用广东话表达。<|endofprompt|>", "请用广东话表达。"),
        ("用四川话说这句话<|endofprompt|>", "用四川话说这句话"),
        ("plain text", "plain text"),
    ],
)
def test_strip_then_apply_never_doubles(typed: str, meant: str) -> None:
    assert strip(typed) == meant
    assert strip(strip(typed)) == meant
    again = apply(3, "instruct", "x", instruct=strip(typed)).instruct_text
    assert again.count("<|endofprompt|>") == 1
    assert again.count("You are a helpful assistant.") == 1


def test_split_language_tag() -> None:
    assert split_language_tag("<|en|>Hello") == ("en", "Hello")
    assert split_language_tag("Hello") == (None, "Hello")


def _request(text: str, mode: Mode, **kw: object) -> tuple[EngineRequest, list]:  # type: ignore[type-arg]
    segments = split(parse(text), max_chars=80, first_max_chars=80)
    return EngineRequest("r", mode, segments, None, **kw), segments  # type: ignore[arg-type]


def test_v3_japanese_is_read_in_katakana() -> None:
    _, segments = _request("歴史的世界においては。", Mode.CROSS_LINGUAL)
    assert segment_text(3, segments[0]) == "レキシテキセカイニオイテハ。"
    assert segment_text(2, segments[0]) == "歴史的世界においては。"


def test_upstream_texts_keeps_markup_and_uses_the_segment_script() -> None:
    request, segments = _request("Hello [laughter] there.", Mode.CROSS_LINGUAL)
    texts = upstream_texts(1, request, segments[0])
    assert texts.tts_text == "<|en|>Hello [laughter] there."
