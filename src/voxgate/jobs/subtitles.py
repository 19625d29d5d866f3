"""SRT and WebVTT from the audio actually produced.

Each cue is one job segment (a sentence or so), timed by the number of
samples its audio really had, not by an estimate from the text: cue times
are exact to the sample against the delivered file (for codecs with priming
delay, MP3 and AAC, a player shows them shifted by those few milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def cues(segments: Iterable[tuple[str, int]], sample_rate: int) -> list[Cue]:
    """Cues from (text, samples) in order."""
    out: list[Cue] = []
    at = 0
    for text, samples in segments:
        start, at = at, at + samples
        words = " ".join(text.split())
        if words:
            out.append(Cue(start / sample_rate, at / sample_rate, words))
    return out


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(cue_list: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_stamp(c.start_s, ',')} --> {_stamp(c.end_s, ',')}\n{c.text}\n"
        for i, c in enumerate(cue_list, 1)
    ]
    return "\n".join(blocks)


def vtt(cue_list: list[Cue]) -> str:
    blocks = [f"{_stamp(c.start_s, '.')} --> {_stamp(c.end_s, '.')}\n{c.text}\n" for c in cue_list]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(kind: str, cue_list: list[Cue]) -> str:
    if kind == "srt":
        return srt(cue_list)
    if kind == "vtt":
        return vtt(cue_list)
    raise ValueError(f"unknown subtitle format {kind!r}")
