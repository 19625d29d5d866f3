"""CosyVoice's prompt syntax: the prefixes and tags each model version expects.

CosyVoice 2 and 3 were trained with control text around the instruction and
the prompt transcript, and the upstream servers pass text through verbatim,
so every caller of upstream has to know these rules (see the CosyVoice
reference, "Prompt prefix rules"):

* v3 zero-shot: the prompt transcript is ``You are a helpful assistant.<|endofprompt|>``
  followed by the transcript;
* v3 cross-lingual and SFT: the text to speak starts with that prefix;
* v3 instruct: ``You are a helpful assistant. <instruction><|endofprompt|>``;
* v1 and v2 instruct: the instruction ends with ``<|endofprompt|>``;
* v1 cross-lingual: the text starts with a language tag (``<|en|>``...).

voxgate callers never type any of this: :func:`apply` adds it for the model
version behind an engine, and :func:`strip` removes it from text written for
upstream (the drop-in surfaces), so applying it later never doubles it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Version = Literal[1, 2, 3]

SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"
V3_PREFIX = SYSTEM_PROMPT + END_OF_PROMPT

# v1 cross-lingual language tags (upstream example.py).
LANGUAGE_TAGS = {"zh": "<|zh|>", "en": "<|en|>", "ja": "<|ja|>", "yue": "<|yue|>", "ko": "<|ko|>"}
_LEADING_TAG = re.compile(r"^\s*<\|(zh|en|ja|yue|ko)\|>")
_SYSTEM = re.compile(r"^\s*" + re.escape(SYSTEM_PROMPT) + r"\s*")
_END = re.compile(r"\s*" + re.escape(END_OF_PROMPT) + r"\s*")


@dataclass(frozen=True, slots=True)
class Texts:
    """The three texts of one upstream call, as the model expects them."""

    tts_text: str
    prompt_text: str = ""
    instruct_text: str = ""


def apply(
    version: Version,
    mode: str,
    text: str,
    *,
    prompt_text: str | None = None,
    instruct: str | None = None,
    language: str | None = None,
) -> Texts:
    """Add the control text the model version needs for ``mode``.

    ``language`` picks the v1 cross-lingual tag (zh, en, ja, yue, ko); text
    that already starts with a tag keeps it.
    """
    tts_text = text
    if version == 3 and mode in ("sft", "cross_lingual"):
        tts_text = V3_PREFIX + text
    elif version == 1 and mode == "cross_lingual" and not _LEADING_TAG.match(text):
        tag = LANGUAGE_TAGS.get((language or "").split("-")[0].lower())
        if tag:
            tts_text = tag + text
    transcript = prompt_text or ""
    if version == 3 and mode == "zero_shot":
        transcript = V3_PREFIX + transcript
    instruct_text = ""
    if mode == "instruct" and instruct:
        instruct_text = (
            f"{SYSTEM_PROMPT} {instruct}{END_OF_PROMPT}"
            if version == 3
            else instruct + END_OF_PROMPT
        )
    return Texts(tts_text, transcript, instruct_text)


def strip(text: str) -> str:
    """Remove the system prompt and ``<|endofprompt|>`` a caller of upstream typed.

    ``You are a helpful assistant.<|endofprompt|>Hello`` and
    ``You are a helpful assistant. 请用广东话表达。<|endofprompt|>`` become
    ``Hello`` and ``请用广东话表达。``.
    """
    text = _SYSTEM.sub("", text, count=1)
    return _END.sub("", text).strip()


def split_language_tag(text: str) -> tuple[str | None, str]:
    """A leading v1 language tag as a language code, and the rest of the text."""
    match = _LEADING_TAG.match(text)
    if not match:
        return None, text
    return match.group(1), text[match.end() :]
