from __future__ import annotations

from voxgate.text.markup import Pinyin, Span, parse, render
from voxgate.text.normalize import normalize
from voxgate.text.script import Script, dominant_script
from voxgate.text.split import split


def texts(s: str, **kw: int) -> list[str]:
    return [seg.text for seg in split(parse(s), **kw)]


def test_english_sentences() -> None:
    assert texts("Hello there. How are you? Fine!") == ["Hello there.", "How are you?", "Fine!"]


def test_chinese_sentences() -> None:
    assert texts("你好。今天天气很好！我们去公园吧？") == [
        "你好。",
        "今天天气很好！",
        "我们去公园吧？",
    ]


def test_mixed_text_and_scripts() -> None:
    segs = split(parse("我喜欢Python编程。It is fun. 日本語も話せます。"))
    assert [s.text for s in segs] == ["我喜欢Python编程。", "It is fun.", "日本語も話せます。"]
    assert [s.script for s in segs] == [Script.HAN, Script.LATIN, Script.KANA]


def test_abbreviations_initials_and_decimals_do_not_end_sentences() -> None:
    got = texts("Dr. Smith paid $3.50 to J. R. Tolkien, e.g. today. Next one.", first_max_chars=200)
    assert got == ["Dr. Smith paid $3.50 to J. R. Tolkien, e.g. today.", "Next one."]


def test_ellipsis_and_quotes() -> None:
    assert texts("他说：“走吧。”然后离开了。") == ["他说：“走吧。”", "然后离开了。"]
    assert texts("Wait... what?") == ["Wait...", "what?"]


def test_first_segment_is_short_for_fast_first_audio() -> None:
    long_first = (
        "This opening sentence goes on for quite a while, with several clauses, "
        "each adding a little more, until it finally ends."
    )
    segs = texts(long_first, first_max_chars=60, max_chars=200)
    assert len(segs[0]) <= 60
    assert " ".join(segs) == long_first


def test_long_sentences_are_cut_at_clauses_then_hard() -> None:
    clauses = "，".join(["这是一个比较长的分句"] * 30) + "。"
    segs = texts(clauses, max_chars=50, first_max_chars=50)
    assert all(len(s) <= 50 for s in segs)
    assert "".join(segs) == clauses
    run_on = "好" * 130
    segs = texts(run_on, max_chars=50, first_max_chars=50)
    assert all(len(s) <= 50 for s in segs)
    assert "".join(segs) == run_on


def test_tags_are_never_cut() -> None:
    text = "第一句<strong>重要。真的重要</strong>。她[h][ào]干净。[laughter]最后。"
    segs = split(parse(text))
    assert "".join(s.text for s in segs) == text
    assert any(isinstance(n, Span) for s in segs for n in s.nodes)
    assert any(isinstance(n, Pinyin) for s in segs for n in s.nodes)


def test_punctuation_only_pieces_are_folded() -> None:
    assert texts("Hello. ... World.") == ["Hello. ...", "World."]
    assert texts("！！你好") == ["！！你好"]


def test_newlines_split_paragraphs() -> None:
    assert texts("Title\nFirst line of text") == ["Title", "First line of text"]


def test_normalize() -> None:
    assert normalize("  a\u200b b\t\tc \r\n\r\n\r\n\r\nd\x00 ") == "a b c\n\nd"
    assert normalize("ｶﾀｶﾅ") == "ｶﾀｶﾅ"  # NFC keeps half-width kana for the engine


def test_dominant_script() -> None:
    assert dominant_script("今日は良い天気です") is Script.KANA
    assert dominant_script("你好 hello") is Script.HAN
    assert dominant_script("안녕 hi") is Script.HANGUL
    assert dominant_script("Привет") is Script.CYRILLIC
    assert dominant_script("123 !!") is None


def test_segment_render_round_trip() -> None:
    text = "Alpha. <strong>Beta</strong> gamma, delta. 她[h][ào]。"
    assert "".join(render(s.nodes) for s in split(parse(text))).replace(" ", "") == text.replace(
        " ", ""
    )
