"""The embedded engine's speakers: stable ids over espeak-ng voices and variants.

A speaker id is ``<language>-<variant>`` (``en-us-f3``: espeak's en-US voice
with its female3 variant), so ids never change between releases. CosyVoice's
built-in speaker names and OpenAI's voice names are aliases, so clients
written for either keep working against the embedded engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxgate.engines.base import Speaker


@dataclass(frozen=True, slots=True)
class Language:
    code: str  # what callers say: zh, yue, en-US, ...
    espeak: str  # espeak-ng voice name
    name: str
    latin: bool  # written in Latin script


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("zh", "cmn", "Chinese (Mandarin)", False),
        Language("yue", "yue", "Chinese (Cantonese)", False),
        Language("en-US", "en-us", "English (US)", True),
        Language("en-GB", "en", "English (UK)", True),
        Language("ja", "ja", "Japanese", False),
        Language("ko", "ko", "Korean", False),
        Language("de", "de", "German", True),
        Language("fr", "fr-fr", "French", True),
        Language("es", "es", "Spanish", True),
        Language("it", "it", "Italian", True),
        Language("ru", "ru", "Russian", False),
    )
}
# Accepted spellings of a language, lower-case, to the code above.
LANGUAGE_ALIASES = {
    "zh": "zh", "zh-cn": "zh", "cmn": "zh", "zh-hans": "zh", "mandarin": "zh",
    "yue": "yue", "zh-hk": "yue", "cantonese": "yue",
    "en": "en-US", "en-us": "en-US", "en-gb": "en-GB", "en-uk": "en-GB",
    "ja": "ja", "jp": "ja", "ko": "ko", "kr": "ko",
    "de": "de", "fr": "fr", "es": "es", "it": "it", "ru": "ru",
}  # fmt: skip

_GENDER = {"f": "female", "m": "male"}

# (language, variant, description, aliases)
_SPEAKERS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("zh", "f3", "Mandarin, female", ("中文女",)),
    ("zh", "m3", "Mandarin, male", ("中文男",)),
    ("zh", "f1", "Mandarin, female, soft", ()),
    ("zh", "m1", "Mandarin, male, deep", ()),
    ("yue", "f3", "Cantonese, female", ("粤语女",)),
    ("yue", "m3", "Cantonese, male", ()),
    ("en-US", "f3", "American English, female", ("英文女", "coral")),
    ("en-US", "m3", "American English, male", ("英文男", "echo")),
    ("en-US", "f1", "American English, female, warm", ("nova",)),
    ("en-US", "f2", "American English, female, bright", ("alloy",)),
    ("en-US", "f4", "American English, female, clear", ("sage",)),
    ("en-US", "f5", "American English, female, airy", ("marin",)),
    ("en-US", "m1", "American English, male, calm", ("ash",)),
    ("en-US", "m2", "American English, male, resonant", ("verse",)),
    ("en-US", "m4", "American English, male, low", ("onyx",)),
    ("en-US", "m6", "American English, male, steady", ("cedar",)),
    ("en-GB", "f4", "British English, female", ("shimmer",)),
    ("en-GB", "m2", "British English, male", ("fable",)),
    ("en-GB", "m5", "British English, male, gentle", ("ballad",)),
    ("en-GB", "f2", "British English, female, bright", ()),
    ("ja", "m3", "Japanese, male", ("日语男",)),
    ("ja", "f3", "Japanese, female", ("日语女",)),
    ("ko", "f3", "Korean, female", ("韩语女",)),
    ("ko", "m3", "Korean, male", ("韩语男",)),
    ("de", "f3", "German, female", ()),
    ("de", "m3", "German, male", ()),
    ("fr", "f3", "French, female", ()),
    ("fr", "m3", "French, male", ()),
    ("es", "f3", "Spanish, female", ()),
    ("es", "m3", "Spanish, male", ()),
    ("it", "f3", "Italian, female", ()),
    ("it", "m3", "Italian, male", ()),
    ("ru", "f3", "Russian, female", ()),
    ("ru", "m3", "Russian, male", ()),
]


def speaker_id(language: str, variant: str) -> str:
    return f"{language.lower()}-{variant}"


SPEAKERS: tuple[Speaker, ...] = tuple(
    Speaker(
        id=speaker_id(lang, variant),
        name=desc,
        language=lang,
        gender=_GENDER[variant[0]],
        description=f"espeak-ng {LANGUAGES[lang].espeak}+{variant}",
        aliases=aliases,
    )
    for lang, variant, desc, aliases in _SPEAKERS
)
SPEAKERS_BY_ID = {s.id: s for s in SPEAKERS}


def variant_of(speaker: Speaker) -> str:
    return speaker.id.rsplit("-", 1)[1]


def normalize_language(value: str | None) -> str | None:
    if value is None:
        return None
    return LANGUAGE_ALIASES.get(value.strip().lower())
