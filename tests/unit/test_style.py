from __future__ import annotations

import pytest

from voxgate.text.style import interpret


@pytest.mark.parametrize(
    ("instruction", "applied"),
    [
        ("Speak slowly.", ["slow"]),
        ("请慢一点说", ["slow"]),
        ("用开心的语气说这句话", ["happy"]),  # 开心 is happy; 快乐 must not read as 快 (fast)
        ("快乐地说", ["happy"]),
        ("用悲伤的语气朗读", ["sad"]),
        ("Speak loudly and fast", ["loud", "fast"]),
        ("大声一点，高音", ["loud", "high"]),
        ("用粤语说", ["cantonese"]),
        ("very slow and soft", ["slowest", "soft"]),
    ],
)
def test_cues(instruction: str, applied: list[str]) -> None:
    cues = interpret(instruction)
    assert sorted(cues.applied) == sorted(applied)
    assert not cues.leftover, cues.leftover


def test_effects() -> None:
    assert interpret("slowly").rate < 1 < interpret("fast").rate
    assert interpret("sad").pitch < 0 < interpret("happy").pitch
    assert interpret("loud").volume > 1 > interpret("soft").volume
    assert interpret("用粤语").language == "yue"


def test_not_understood_and_dialects() -> None:
    cues = interpret("Sound like a pirate captain")
    assert not cues.understood
    assert "pirate" in cues.leftover
    cues = interpret("用四川话说")
    assert cues.dialect == "四川"
    assert not cues.understood
    partial = interpret("speak slowly like a robot")
    assert partial.applied == ["slow"]
    assert "robot" in partial.leftover
