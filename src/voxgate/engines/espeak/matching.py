"""Voice matching: what the embedded engine does with a voice prompt.

espeak-ng is a formant synthesizer; it cannot clone a voice. What it can
imitate is where a voice sits (median F0), how much it moves (F0 spread)
and how fast it talks, which is what a listener notices first. So for the
cloning modes the engine picks a speaker variant of the right gender for
the prompt's pitch and sets espeak's pitch, range and rate from the
prompt's :class:`~voxgate.audio.pitch.VoiceProfile`.

espeak's pitch and range parameters are not in Hz: each variant has its own
base pitch and the mapping is far from linear (en-us+m3 speaks at 69 Hz at
pitch 0, 103 Hz at 50 and 172 Hz at 100), and the range parameter moves
the median too (91 to 117 Hz over range 0-100 at pitch 50). So nothing is
guessed: the first time a variant is matched, the engine speaks a fixed
phrase in that variant's language at six pitch settings, measures each
with the same tracker that measured the prompt, and interpolates. The
same measurement gives the variant's F0 spread and syllable rate at the
normal speed, against which the prompt's are set. Calibrations are kept
per variant and range setting (a few dozen at most); profiles per prompt,
keyed by its registered voice id or its digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from voxgate.audio.pcm import Samples
from voxgate.audio.pitch import VoiceProfile, profile
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import EngineRequest, Speaker
from voxgate.engines.espeak.catalog import LANGUAGES, SPEAKERS, normalize_language, variant_of
from voxgate.engines.espeak.render import segment_language

log = logging.getLogger(__name__)

# (espeak voice, text, pitch, range, rate) -> samples and their rate
Speak = Callable[[str, str, int, int, int], Awaitable[tuple[Samples, int]]]

NORMAL_RATE = 175  # espeak's words per minute at speed 1.0
PITCH_LEVELS = (0, 20, 40, 60, 80, 100)
RANGE_LEVELS = (0, 25, 50, 75, 100)  # measured: spread 0.4, 2.2, 3.7, 5.1, 6.2 st (en-us+m3)
# Below this median F0 a voice is matched with a male variant, above with a
# female one. Adult male speech centres on 85-155 Hz, female on 165-255 Hz;
# both kinds of espeak variant reach 145-170 Hz, so a voice near the border
# is within reach of either.
MALE_BELOW_HZ = 160.0
# Rates the pace is measured at: 0.63x to 1.6x normal, which is also how far
# matching goes (beyond, a rate estimate is likelier wrong than the voice).
RATE_LEVELS = (110, NORMAL_RATE, 280)
MIN_SPREAD = 0.3  # semitones: espeak at range 0 still moves this much

# Three plain sentences per language, to measure a variant with: sentence
# resets and final falls are part of a voice's spread, and a single sentence
# measured about 2 semitones narrower than a typical prompt. Japanese in kana
# (espeak-ng reads no kanji).
_ENGLISH = (
    "Good afternoon, and thank you for calling. The weather today is mild, with a light "
    "breeze from the west. Please leave a message after the tone, and we will call you back."
)
CALIBRATION_TEXT = {
    "en-US": _ENGLISH,
    "en-GB": _ENGLISH,
    "zh": "今天天气很好，我们一起去公园散步吧。下午可能会下雨，记得带伞。晚上我们在家吃饭。",
    "yue": "今日天氣好好，我哋一齊去公園行吓啦。下晝可能會落雨，記得帶遮。夜晚我哋喺屋企食飯。",
    "ja": "きょうは いい てんきですね。いっしょに こうえんへ いきましょう。"
    "ごごは あめが ふるかもしれません。",
    "ko": "오늘은 날씨가 좋아서 공원에 산책하러 갑니다. 오후에는 비가 올 수도 있어요. "
    "저녁에는 집에서 밥을 먹을 거예요.",
    "de": "Heute ist schönes Wetter, und wir gehen zusammen in den Park. Am Nachmittag "
    "könnte es regnen. Am Abend essen wir zu Hause.",
    "fr": "Il fait beau aujourd'hui, alors nous allons nous promener au parc. Il pourrait "
    "pleuvoir cet après-midi. Ce soir, nous dînons à la maison.",
    "es": "Hoy hace muy buen tiempo, así que vamos a pasear por el parque. Por la tarde "
    "podría llover. Esta noche cenamos en casa.",
    "it": "Oggi fa bel tempo, quindi andiamo a fare una passeggiata nel parco. Nel "
    "pomeriggio potrebbe piovere. Stasera ceniamo a casa.",
    "ru": "Сегодня хорошая погода, и мы идём гулять в парк. Днём может пойти дождь. "
    "Вечером мы ужинаем дома.",
}


@dataclass(frozen=True, slots=True)
class Point:
    """The calibration phrase measured at one pitch setting."""

    pitch: int
    f0: float
    spread: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """How one espeak variant's output moves with its pitch setting, at one range."""

    voice: str  # e.g. "en-us+m3"
    range: int
    points: tuple[Point, ...]  # by pitch setting, F0 increasing
    pace: tuple[tuple[int, float], ...]  # (rate setting, syllables per second), increasing

    def _axes(self) -> tuple[list[float], list[float]]:
        return [float(p.pitch) for p in self.points], [math.log(p.f0) for p in self.points]

    def pitch_for(self, f0: float) -> float:
        """The pitch setting whose output has median ``f0`` (interpolated on log F0),
        clamped to what the variant can reach."""
        pitches, logs = self._axes()
        return float(np.interp(math.log(f0), logs, pitches))

    def f0_at(self, pitch: float) -> float:
        pitches, logs = self._axes()
        return math.exp(float(np.interp(pitch, pitches, logs)))

    def spread_at(self, pitch: float) -> float:
        pitches, _ = self._axes()
        return float(np.interp(pitch, pitches, [p.spread for p in self.points]))

    def rate_for(self, syllables_per_second: float) -> float:
        """The rate setting whose output has this many syllables per second.

        espeak's syllable rate grows more slowly than its rate setting
        (measured on en-us+m3: 2.6, 3.8, 5.6 and 7.0 syllables/s at 100,
        175, 250 and 350 wpm), so the setting is interpolated, not scaled."""
        if len(self.pace) < 2:
            return float(NORMAL_RATE)
        rates, measured = zip(*self.pace, strict=True)
        return float(np.interp(syllables_per_second, measured, rates))


@dataclass(frozen=True, slots=True)
class Match:
    """espeak settings that imitate one prompt."""

    speaker: Speaker
    pitch: int  # espeak 0-100
    range: int  # espeak 0-100
    rate_factor: float  # times the normal rate
    target_f0: float  # Hz, the prompt's median with any requested pitch shift
    expected_f0: float  # Hz, what the calibration says the setting gives
    profile: VoiceProfile


def prompt_key(prompt: PromptAudio) -> str:
    """A registered voice is known by its id; an inline prompt by its content."""
    if prompt.voice_id:
        return f"voice:{prompt.voice_id}:{prompt.sample_rate}:{len(prompt.samples)}"
    h = hashlib.sha256(np.ascontiguousarray(prompt.samples).tobytes())
    h.update(prompt.sample_rate.to_bytes(4, "little"))
    return "sha256:" + h.hexdigest()


class CalibrationError(Exception):
    """A variant's output could not be measured; matching falls back to no match."""


def _transient_failure(task: asyncio.Task[Calibration]) -> bool:
    """A calibration that failed for a reason other than the voice itself
    (the engine restarting, a cancelled start) is worth another try."""
    if task.cancelled():
        return True
    error = task.exception()
    return error is not None and not isinstance(error, CalibrationError)


def language_speaker(
    language: str, gender: str | None = None, speakers: Sequence[Speaker] = SPEAKERS
) -> Speaker:
    """The first variant of ``language`` (of ``gender``, if given): the catalog
    lists each language's plainest variants (f3, m3) first."""
    of_language = [s for s in speakers if s.language == language] or list(speakers)
    for speaker in of_language:
        if gender is None or speaker.gender == gender:
            return speaker
    return of_language[0]


def choose_speaker(
    profile: VoiceProfile, language: str, speakers: Sequence[Speaker] = SPEAKERS
) -> Speaker:
    """A variant of ``language`` of the gender the prompt's F0 suggests."""
    gender = "male" if profile.median_f0 < MALE_BELOW_HZ else "female"
    return language_speaker(language, gender, speakers)


def request_language(request: EngineRequest) -> str:
    """The language asked for, else the one the text is written in."""
    asked = normalize_language(request.language)
    if asked is not None:
        return asked
    for segment in request.segments:
        if segment.script is not None:
            return segment_language(segment, LANGUAGES["en-US"], None).code
    return "en-US"


def nearest_level(value: float) -> int:
    return min(RANGE_LEVELS, key=lambda level: abs(level - value))


class VoiceMatcher:
    """Profiles prompts and calibrates variants lazily, each once."""

    def __init__(self, speak: Speak, *, max_profiles: int = 256) -> None:
        self._speak = speak
        self._max_profiles = max_profiles
        self._profiles: OrderedDict[str, VoiceProfile | None] = OrderedDict()
        self._calibrations: dict[tuple[str, str, int], asyncio.Task[Calibration]] = {}

    async def profile(self, prompt: PromptAudio) -> VoiceProfile | None:
        # hashing an inline prompt (up to 3 MB) is CPU work too: off the event loop
        key = prompt_key(prompt) if prompt.voice_id else await asyncio.to_thread(prompt_key, prompt)
        if key in self._profiles:
            self._profiles.move_to_end(key)
            return self._profiles[key]
        found = await asyncio.to_thread(profile, prompt.samples, prompt.sample_rate)
        self._profiles[key] = found
        while len(self._profiles) > self._max_profiles:
            self._profiles.popitem(last=False)
        return found

    async def calibration(self, speaker: Speaker, range_: int) -> Calibration:
        """Single-flight: concurrent requests for a new variant share one measurement."""
        voice = f"{LANGUAGES[speaker.language].espeak}+{variant_of(speaker)}"
        key = (voice, speaker.language, range_)
        task = self._calibrations.get(key)
        if task is None or (task.done() and _transient_failure(task)):
            task = asyncio.ensure_future(self._calibrate(voice, speaker.language, range_))
            # its requester may be gone by the time it fails; the next one retries
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._calibrations[key] = task
        return await asyncio.shield(task)

    async def _calibrate(self, voice: str, language: str, range_: int) -> Calibration:
        text = CALIBRATION_TEXT.get(language, CALIBRATION_TEXT["en-US"])
        rates = RATE_LEVELS if range_ == 50 else ()  # pace is read at the default range only
        spoken = await asyncio.gather(
            *(self._speak(voice, text, pitch, range_, NORMAL_RATE) for pitch in PITCH_LEVELS),
            *(self._speak(voice, text, 50, range_, rate) for rate in rates),
        )
        profiles = await asyncio.to_thread(lambda: [profile(s, r) for s, r in spoken])
        points: list[Point] = []
        for pitch, found in zip(PITCH_LEVELS, profiles, strict=False):
            if found and (not points or found.median_f0 > points[-1].f0):  # monotonic
                points.append(Point(pitch, found.median_f0, found.spread_semitones))
        pace: list[tuple[int, float]] = []
        for rate, found in zip(rates, profiles[len(PITCH_LEVELS) :], strict=True):
            if found and (not pace or found.syllables_per_second > pace[-1][1]):
                pace.append((rate, found.syllables_per_second))
        if len(points) < 2:
            raise CalibrationError(f"espeak voice {voice} gave no measurable pitch")
        return Calibration(voice, range_, tuple(points), tuple(pace))

    async def match(
        self,
        request: EngineRequest,
        prompt: PromptAudio,
        *,
        pitch_shift: float = 0.0,
        range_scale: float = 1.0,
    ) -> Match | None:
        """espeak settings for ``request`` that imitate ``prompt``; None when the
        prompt holds no voiced speech to measure (whisper, noise)."""
        found = await self.profile(prompt)
        if found is None:
            return None
        speaker = request.speaker or choose_speaker(found, request_language(request))
        target = found.median_f0 * 2.0 ** (pitch_shift / 12.0)
        try:
            return await self._settings(speaker, found, target, range_scale)
        except CalibrationError as exc:
            log.warning("voice matching skipped: %s", exc)
            return None

    async def _settings(
        self, speaker: Speaker, found: VoiceProfile, target: float, range_scale: float
    ) -> Match:
        base = await self.calibration(speaker, 50)
        spread_here = base.spread_at(base.pitch_for(target))
        wanted = 50.0 * max(found.spread_semitones, MIN_SPREAD) / max(spread_here, MIN_SPREAD)
        range_ = nearest_level(min(100.0, wanted * range_scale))
        calibration = base if range_ == 50 else await self.calibration(speaker, range_)
        pitch = calibration.pitch_for(target)
        rate_factor = 1.0
        if found.syllables_per_second > 0:
            rate_factor = base.rate_for(found.syllables_per_second) / NORMAL_RATE
        return Match(
            speaker=speaker,
            pitch=round(pitch),
            range=range_,
            rate_factor=rate_factor,
            target_f0=target,
            expected_f0=calibration.f0_at(pitch),
            profile=found,
        )
