"""Where text that is still arriving may be cut, and how a streamed piece
reaches an engine (text/incremental.py, serving/session.py)."""

from __future__ import annotations

import pytest

from voxgate.serving.session import clean_piece
from voxgate.text.incremental import sentence_end, word_end
from voxgate.text.markup import Feature


@pytest.mark.parametrize(
    ("text", "sentences", "words"),
    [
        ("Hello world. How", 13, 13),
        ("Hello world", 0, 6),
        ("Hello. ", 7, 7),
        ("Dr. Smith is", 0, 10),  # an abbreviation ends no sentence
        ("It costs 3.", 0, 9),  # nor does a number that may go on (3.5)
        ("你好。我们", 3, 3),
        ("第一句！第二", 4, 4),
        ("One.\nTwo", 5, 5),
    ],
)
def test_cuts_in_plain_text(text: str, sentences: int, words: int) -> None:
    assert sentence_end(text) == sentences
    assert word_end(text) == words


@pytest.mark.parametrize(
    ("text", "sentences", "words"),
    [
        ("a <strong>b. c", 0, 2),  # not inside a span whose end has not come
        ("a <strong>b. c</strong> d. e", 27, 27),  # nor inside a closed one
        ("Hi [laugh", 0, 3),  # not inside an unclosed bracket
        ("Hi. <|e", 4, 4),  # nor an unclosed control token
        ("Hi. [laughter]", 4, 4),  # a tag at the end may be followed by more
        ("Hi. 她[h]", 4, 4),  # [h] may be continued by [ào]
        ("Hi. 她[h][ào] there. So", 20, 20),
    ],
)
def test_cuts_never_fall_inside_markup(text: str, sentences: int, words: int) -> None:
    assert sentence_end(text) == sentences
    assert word_end(text) == words


def test_a_run_on_text_is_cut_once_it_is_too_long() -> None:
    text = "word " * 30  # 150 characters, no sentence end
    assert sentence_end(text, max_chars=200) == 0
    assert sentence_end(text, max_chars=100) == len(text)
    clauses = "one, two, three, four" * 10
    assert clauses[: sentence_end(clauses, max_chars=50)].endswith(", ")


@pytest.mark.parametrize(
    ("piece", "markup", "expected"),
    [
        ("Hello ", frozenset(), "Hello "),
        (" world.\u200b", frozenset(), " world."),
        ("  a   b  ", frozenset(), " a b "),
        ("\n", frozenset(), " "),
        ("Ha [laughter] ha ", frozenset(), "Ha ha "),
        ("Ha [laughter] ha ", frozenset({Feature.EVENTS}), "Ha [laughter] ha "),
        ("<strong>Now</strong> ", frozenset(), "Now "),
    ],
)
def test_a_piece_is_normalized_and_lowered_for_its_engine(
    piece: str, markup: frozenset[Feature], expected: str
) -> None:
    assert clean_piece(piece, markup) == expected
