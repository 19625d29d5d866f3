"""Stand-in for funasr.utils.postprocess_utils: ``rich_transcription_postprocess``
with upstream's behaviour (written anew, not copied; compared with funasr
1.4.16 on single and multi-piece outputs). SenseVoice's tags are removed;
language tags split the text into pieces; in each piece the events other
than Speech/Breath become emoji in front (the last listed first), and the
strongest emotion other than NEUTRAL an emoji at the end. Pieces are joined
without spaces, dropping an event that repeats the previous piece's and an
emotion that repeats the text's last."""

from __future__ import annotations

import re

EMOTIONS = {
    "HAPPY": "😊",
    "SAD": "😔",
    "ANGRY": "😡",
    "NEUTRAL": "",
    "FEARFUL": "😰",
    "DISGUSTED": "🤢",
    "SURPRISED": "😮",
}
EVENTS = {
    "BGM": "🎼",
    "Speech": "",
    "Applause": "👏",
    "Laughter": "😀",
    "Cry": "😭",
    "Sneeze": "🤧",
    "Breath": "",
    "Cough": "🤧",
}
EMOJI = {e for e in (*EMOTIONS.values(), *EVENTS.values(), "😷") if e}
EVENT_EMOJI = {"🎼", "👏", "😀", "😭", "🤧", "😷"}
EMOTION_EMOJI = {e for e in EMOTIONS.values() if e}
LANGUAGES = ("zh", "en", "yue", "ja", "ko", "nospeech")
_TAG = re.compile(r"<\|([^|]*)\|>")


def _piece(text: str) -> str:
    tags = _TAG.findall(text)
    words = _TAG.sub("", text)
    emotion = "NEUTRAL"
    for e in EMOTIONS:  # the first that beats NEUTRAL's count, then beats that
        if tags.count(e) > tags.count(emotion):
            emotion = e
    events = "".join(EVENTS[e] for e in reversed(EVENTS) if e in tags)
    out = events + words + EMOTIONS[emotion]
    for emoji in EMOJI:
        out = out.replace(" " + emoji, emoji).replace(emoji + " ", emoji)
    return out.strip()


def _event(text: str) -> str | None:
    return text[0] if text and text[0] in EVENT_EMOJI else None


def _emotion(text: str) -> str | None:
    return text[-1] if text and text[-1] in EMOTION_EMOJI else None


def rich_transcription_postprocess(s: str) -> str:
    s = s.replace("<|nospeech|><|Event_UNK|>", "❓")
    for language in LANGUAGES:
        s = s.replace(f"<|{language}|>", "<|lang|>")
    first, *rest = [_piece(p).strip(" ") for p in s.split("<|lang|>")]
    text = " " + first
    event = _event(text)
    for piece in rest:
        if piece and event is not None and _event(piece) == event:
            piece = piece[1:]
        if not piece:
            continue
        event = _event(piece)
        if _emotion(piece) is not None and _emotion(piece) == _emotion(text):
            text = text[:-1]
        text += piece.strip()
    return text.replace("The.", " ").strip()
