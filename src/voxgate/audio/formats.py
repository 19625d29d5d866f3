"""Output formats: what each one is, what it may carry, how it is served."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AudioFormat(StrEnum):
    MP3 = "mp3"
    OPUS = "opus"
    AAC = "aac"
    FLAC = "flac"
    WAV = "wav"
    PCM = "pcm"


MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
MIN_RATE = 8000
MAX_RATE = 192000


@dataclass(frozen=True, slots=True)
class FormatInfo:
    media_type: str
    extension: str
    rates: tuple[int, ...] | None  # None: any rate in MIN_RATE..MAX_RATE
    lossless: bool
    # Samples a decoder emits before the audio when the container cannot say
    # how many to drop (MP3 without an Info tag, AAC in ADTS). Documented in
    # docs/api.md; zero where the container carries it (Ogg pre-skip).
    priming_samples: int


FORMATS: dict[AudioFormat, FormatInfo] = {
    AudioFormat.MP3: FormatInfo("audio/mpeg", "mp3", MP3_RATES, False, 1105),
    AudioFormat.OPUS: FormatInfo("audio/ogg; codecs=opus", "opus", OPUS_RATES, False, 0),
    AudioFormat.AAC: FormatInfo("audio/aac", "aac", AAC_RATES, False, 1024),
    AudioFormat.FLAC: FormatInfo("audio/flac", "flac", None, True, 0),
    AudioFormat.WAV: FormatInfo("audio/wav", "wav", None, True, 0),
    AudioFormat.PCM: FormatInfo("audio/pcm", "pcm", None, True, 0),
}


def info(fmt: AudioFormat) -> FormatInfo:
    return FORMATS[fmt]


def rate_allowed(fmt: AudioFormat, rate: int) -> bool:
    rates = FORMATS[fmt].rates
    if rates is None:
        return MIN_RATE <= rate <= MAX_RATE
    return rate in rates


def nearest_rate(fmt: AudioFormat, rate: int) -> int:
    """The closest rate the format can carry, preferring not to lose bandwidth."""
    rates = FORMATS[fmt].rates
    if rates is None:
        return min(max(rate, MIN_RATE), MAX_RATE)
    higher = [r for r in rates if r >= rate]
    return min(higher) if higher else max(rates)


def from_extension(path: str) -> AudioFormat | None:
    """Guess a format from a file name (for the CLI's ``-o out.mp3``)."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    aliases = {"ogg": AudioFormat.OPUS, "raw": AudioFormat.PCM, "m4a": AudioFormat.AAC}
    for fmt, fi in FORMATS.items():
        if fi.extension == ext:
            return fmt
    return aliases.get(ext)
