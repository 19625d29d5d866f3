"""Prompt intake: what a voice recording goes through before voxgate keeps it.

A cloning engine imitates whatever it is given, defects included: a prompt
with a second of silence at each end teaches it to pause, a clipped one to
crackle, a noisy one to hiss. So a recording is decoded whatever its
container (the bytes decide, never a file name or a content type), checked,
trimmed and peak-normalized here once, and every rejection says what is wrong
in a way a person can fix. The normalized audio also gets a digest, so the
same recording uploaded twice is stored once.

It is CPU-bound and synchronous; callers run it in a worker thread. A 15 s
48 kHz WAV takes 25-45 ms on one core, about half of it FFmpeg probing the
file; compressed formats add 10-30 ms of decoding.

The thresholds below were chosen by measuring espeak-ng speech (five
voices, three languages, resampled to 48 kHz) with white and pink noise
mixed in at known signal-to-noise ratios, and hard-clipped at known
overdrives through WAV, MP3 and Opus; the numbers are in the comments next
to each.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
from dataclasses import asdict, dataclass
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

from voxgate import errors
from voxgate.audio.pcm import Samples, sanitize, to_s16le
from voxgate.audio.prompt import PromptAudio
from voxgate.audio.resample import resample
from voxgate.errors import RequestError

MIN_RATE = 16000  # CosyVoice's speech tokenizer reads 16 kHz; less cannot be made up
MAX_RATE = 48000  # more carries nothing a voice needs; kept prompts are capped here
HARD_MAX_SECONDS = 30.0  # CosyVoice refuses longer prompts; checked before any analysis
TARGET_PEAK_DBFS = -1.0  # headroom for resampling overshoot in the engines

FRAME_S = 0.010  # analysis frame: short enough to place a word boundary within 10 ms
# Frames are ranked by level; the 10th percentile is the noise floor (the
# quietest tenth of a recording is background in any prompt with a pause
# between words), the 97th the level of loud speech.
_FLOOR_PERCENTILE = 10.0
_LOUD_PERCENTILE = 97.0
# A frame is speech when it is within 35 dB of loud speech (about the range
# from a stressed vowel to a soft fricative) and 6 dB above the floor. With a
# 150 ms margin, the kept speech starts and ends within 60 ms of where the
# tests put it, in every container.
_SPEECH_RANGE_DB = 35.0
_ABOVE_FLOOR_DB = 6.0
_MARGIN_S = 0.15  # kept on each side of the speech: onsets and releases are quiet

# Silence: a peak below -50 dBFS is a muted or unplugged microphone, or a
# voice across the room; loud frames less than 3 dB over the floor are a
# steady sound with nothing on top. Measured: white noise alone gives 1 dB,
# speech in white noise at -5 dB SNR 4 dB, at -10 dB 2 dB (refused as silent:
# it is inaudible to the tracker too). Pink noise alone wanders more (8 dB)
# and is refused as noisy instead.
SILENT_PEAK_DBFS = -50.0
SILENT_CONTRAST_DB = 3.0
QUIET_PEAK_DBFS = -30.0  # quieter prompts are amplified by more than 29 dB: warn

# Signal-to-noise ratio, estimated as the mean power of the speech frames
# (less the floor's) over the mean power of the quietest tenth of frames.
# Measured on espeak speech with white and pink noise mixed in (estimate for
# true SNR): 0 dB -> 7-9, 5 dB -> 9-11, 10 dB -> 12-15, 15 dB -> 16-19,
# 20 dB -> 21-23, 30 dB -> 30-33. Below 12 (true SNR under about 8 dB in
# white noise) the speech is hard to follow and an imitating engine
# reproduces the hiss; below 20 (true SNR under about 18 dB) the noise is
# plain in every pause.
NOISY_SNR_DB = 12.0
LOW_SNR_DB = 20.0

# Clipping: the share of the kept samples within 1% of the recording's own
# ceiling, in runs of at least 3 samples. Measured on espeak speech through
# WAV and FLAC: clean 0%, hard clipping at 1 dB overdrive 0.01-0.09%, at
# 3 dB 0.1-0.4%, at 6 dB 0.6-1.6%, at 12 dB 3-8%, at 20 dB 13-26%. Past
# about 3 dB (0.1%) the crackle is audible on peaks; past about 9 dB (2%)
# it is on every loud vowel.
# Lossy codecs (MP3, AAC, Opus) smear a flat top into ripples, so there the
# measure reads low: it is exact for lossless files only.
_CLIP_TOLERANCE = 0.99
_CLIP_RUN = 3
_CLIP_MIN_PEAK = 0.25  # a ceiling this far below full scale is a quiet recording, not a clip
CLIPPED_FRACTION = 0.02
CLIPPING_WARN_FRACTION = 0.001

_DC_OFFSET = 0.001
LONG_PAUSE_S = 2.0  # a pause this long inside the kept speech is copied by an imitator

# Warning codes (stable strings, like error codes).
WARN_CLIPPING = "prompt_clipping"
WARN_LOW_SNR = "prompt_low_snr"
WARN_QUIET = "prompt_quiet"
WARN_LONG_PAUSE = "prompt_long_pause"

# How files start: enough to tell "damaged audio" from "not audio at all".
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"RF64", "wav"),
    (0, b"ID3", "mp3"),
    (0, b"OggS", "ogg"),
    (0, b"fLaC", "flac"),
    (4, b"ftyp", "mp4"),
    (0, b"\x1a\x45\xdf\xa3", "webm"),
)
# Containers whose header states the exact duration (FLAC STREAMINFO, the MP4
# movie header, Matroska's Duration when the writer could seek back), so a
# file that decodes to much less was cut short. MP3 durations are estimated
# from the bitrate and Ogg's come from the last page, so they cannot tell.
_DURATION_IN_HEADER = {"flac", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"}


@dataclass(frozen=True, slots=True)
class IntakeReport:
    """What was found in a recording and what was done to it."""

    container: str
    codec: str
    original_sample_rate: int
    channels: int
    original_seconds: float
    seconds: float  # speech kept after trimming
    trimmed_start_s: float
    trimmed_end_s: float
    peak_dbfs: float  # of the kept speech, before normalization
    gain_db: float
    clipped_fraction: float
    snr_db: float | None  # None: no background to measure (digital silence between words)
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 6 if key == "clipped_fraction" else 3)
        out["warnings"] = list(self.warnings)
        return out


@dataclass(frozen=True, slots=True)
class Intake:
    prompt: PromptAudio  # normalized mono float32, text=None
    report: IntakeReport
    digest: str  # sha256 of the normalized int16 PCM and its rate


@dataclass(frozen=True, slots=True)
class _Decoded:
    samples: Samples  # mono
    rate: int
    original_rate: int
    channels: int
    container: str
    codec: str


def audio_signature(data: bytes) -> str | None:
    """The audio format ``data`` starts like, or None."""
    for offset, magic, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "mpeg"  # frame sync: MP3, or AAC in ADTS
    return None


def _refuse(param: str, message: str, code: str, hint: str) -> RequestError:
    return RequestError(f"the {param} {message}", code=code, hint=hint, param=param)


def _corrupt(param: str, detail: str) -> RequestError:
    return _refuse(
        param,
        f"is damaged or truncated ({detail})",
        errors.PROMPT_CORRUPT,
        "The file was cut short or damaged; export or download the recording again.",
    )


def _invalid(param: str, detail: str) -> RequestError:
    return _refuse(
        param,
        f"is not audio voxgate can decode ({detail})",
        errors.PROMPT_INVALID,
        "Send WAV, MP3, Ogg/Opus, FLAC, AAC/M4A or WebM audio.",
    )


def _too_long(param: str, seconds: float, limit: float, what: str) -> RequestError:
    return _refuse(
        param,
        f"is {seconds:.1f} s{what}; at most {limit:g} s is allowed",
        errors.PROMPT_TOO_LONG,
        "Cut it to 3-15 seconds of clear speech by one person.",
    )


def _check_wav_header(data: bytes, param: str) -> None:
    """A WAV header that promises more audio than the file holds is a cut file.

    FFmpeg decodes such a file without complaint, up to where it stops; a
    prompt that ends mid-word would then pass as a short one. Sizes of
    0xFFFFFFFF (and 0) are the streaming convention and say nothing.
    """
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = struct.unpack_from("<4sI", data, offset)
        body = offset + 8
        if chunk == b"data":
            available = len(data) - body
            if size not in (0, 0xFFFFFFFF) and size > available:
                raise _corrupt(
                    param,
                    f"the WAV header announces {size} bytes of audio, the file holds {available}",
                )
            return
        offset = body + size + (size & 1)
    raise _corrupt(param, "the WAV file ends before its audio data")


def _opus_input_rate(extradata: bytes | None) -> int:
    """The rate an Opus stream was recorded at (OpusHead), 0 if unknown.

    Opus always decodes at 48 kHz, so a telephone recording would pass the
    sample-rate rule with 4 kHz of bandwidth; the header remembers.
    """
    if extradata and extradata[:8] == b"OpusHead" and len(extradata) >= 16:
        return int(struct.unpack_from("<I", extradata, 12)[0])
    return 0


def _to_mono(frame: av.AudioFrame) -> NDArray[np.float32]:
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if arr.dtype.kind == "u":
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    elif arr.dtype.kind == "i":
        arr = arr.astype(np.float32) / float(2 ** (8 * arr.dtype.itemsize - 1))
    # planar: one row per channel; packed: channels interleaved
    arr = arr.reshape(channels, -1) if frame.format.is_planar else arr.reshape(-1, channels).T
    mono = arr[0] if channels == 1 else arr.mean(axis=0)
    return np.asarray(mono, dtype=np.float32)


def _decode(data: bytes, param: str) -> _Decoded:
    signature = audio_signature(data)
    if not data:
        raise _invalid(param, "the file is empty")
    if signature == "wav":
        _check_wav_header(data, param)
    damaged = _corrupt if signature else _invalid
    chunks: list[NDArray[np.float32]] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise damaged(param, "no audio track")
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            declared = (
                float(stream.duration * stream.time_base)
                if stream.duration and stream.time_base
                else (container.duration or 0) / 1e6
            )
            format_name = container.format.name
            if format_name in _DURATION_IN_HEADER | {"wav"} and declared > HARD_MAX_SECONDS + 0.5:
                raise _too_long(param, declared, HARD_MAX_SECONDS, "")  # before decoding
            rate = 0
            channels = stream.codec_context.channels or 0
            decoded = 0
            for frame in container.decode(stream):
                if rate and frame.sample_rate != rate:
                    raise damaged(param, "the sample rate changes midway")
                rate = frame.sample_rate
                channels = max(channels, len(frame.layout.channels))
                chunks.append(_to_mono(frame))
                decoded += frame.samples
                if decoded > (HARD_MAX_SECONDS + 0.5) * rate:
                    raise _too_long(param, decoded / rate, HARD_MAX_SECONDS, " or more")
            extradata = stream.codec_context.extradata
    except RequestError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, OSError, EOFError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise damaged(param, str(detail).lower()) from None
    if not chunks or rate == 0:
        raise damaged(param, "no audio in it")
    samples = sanitize(np.concatenate(chunks))
    seconds = len(samples) / rate
    if (
        format_name in _DURATION_IN_HEADER
        and declared > 0
        and seconds < declared - max(0.25, 0.05 * declared)
    ):
        raise _corrupt(param, f"{seconds:.2f} s decoded of the {declared:.2f} s it announces")
    original_rate = rate
    if codec in ("opus", "libopus"):
        original_rate = _opus_input_rate(extradata) or rate
    container_name = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "webm"}.get(
        format_name, format_name
    )
    return _Decoded(samples, rate, original_rate, channels, container_name, codec)


def _dbfs(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0 else -math.inf


def frame_levels(samples: Samples, rate: int) -> NDArray[np.float64]:
    """Power of consecutive 10 ms frames (the last partial frame dropped)."""
    size = max(1, round(FRAME_S * rate))
    n = len(samples) // size
    frames = samples[: n * size].astype(np.float64).reshape(n, size)
    power: NDArray[np.float64] = np.einsum("ij,ij->i", frames, frames) / size
    return power


def clipped_fraction(samples: Samples) -> float:
    """Share of samples stuck at the recording's ceiling in runs of 3 or more.

    Relative to the ceiling, not to 1.0: a recording clipped in the analog
    stage, or clipped and then turned down, is as distorted as one clipped
    at full scale. Runs, because an unclipped waveform touches its maximum
    at single samples.
    """
    if len(samples) == 0:
        return 0.0
    magnitude = np.abs(samples)
    ceiling = float(magnitude.max())
    if ceiling < _CLIP_MIN_PEAK:
        return 0.0
    near = magnitude >= _CLIP_TOLERANCE * ceiling
    if not near.any():
        return 0.0
    padded = np.concatenate([[False], near, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    return float(lengths[lengths >= _CLIP_RUN].sum() / len(samples))


@dataclass(frozen=True, slots=True)
class _Speech:
    start: int  # frames
    end: int  # frames, exclusive
    active: NDArray[np.bool_]
    floor_db: float
    loud_db: float


def _find_speech(power: NDArray[np.float64]) -> _Speech:
    level_db = 10.0 * np.log10(np.maximum(power, 1e-12))
    floor_db = float(np.percentile(level_db, _FLOOR_PERCENTILE))
    loud_db = float(np.percentile(level_db, _LOUD_PERCENTILE))
    threshold = max(loud_db - _SPEECH_RANGE_DB, floor_db + _ABOVE_FLOOR_DB)
    # 30 ms smoothing: a click is not speech, a plosive release is part of it
    padded = np.pad(level_db, 1, mode="edge")
    smooth = (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0
    active = smooth > threshold
    indices = np.flatnonzero(active)
    if len(indices) == 0:
        return _Speech(0, 0, active, floor_db, loud_db)
    return _Speech(int(indices[0]), int(indices[-1]) + 1, active, floor_db, loud_db)


def _snr_db(power: NDArray[np.float64], speech: _Speech) -> float | None:
    noise_frames = power[power <= np.percentile(power, _FLOOR_PERCENTILE)]
    noise = float(noise_frames.mean()) if len(noise_frames) else 0.0
    if noise <= 1e-9:  # below -90 dBFS: digital silence, nothing to measure
        return None
    spoken = power[speech.start : speech.end][speech.active[speech.start : speech.end]]
    signal = float(spoken.mean()) if len(spoken) else 0.0
    return 10.0 * math.log10(max(signal - noise, 1e-12) / noise)


def _longest_pause(speech: _Speech) -> float:
    inner = speech.active[speech.start : speech.end]
    if len(inner) == 0:
        return 0.0
    padded = np.concatenate([[True], inner, [True]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    if len(edges) == 0:
        return 0.0
    return float((edges[1::2] - edges[0::2]).max() * FRAME_S)


def intake(
    data: bytes, *, min_seconds: float = 3.0, max_seconds: float = 15.0, param: str = "audio_sample"
) -> Intake:
    """Decode, check, trim and normalize a voice prompt; raise a RequestError
    with its own code for each way a recording can be unusable."""
    if not 0 < min_seconds <= max_seconds <= HARD_MAX_SECONDS:
        raise ValueError(f"need 0 < min_seconds <= max_seconds <= {HARD_MAX_SECONDS:g}")
    decoded = _decode(data, param)
    rate = decoded.rate
    if min(rate, decoded.original_rate) < MIN_RATE:
        recorded = min(rate, decoded.original_rate)
        raise _refuse(
            param,
            f"was recorded at {recorded} Hz; at least {MIN_RATE} Hz is needed",
            errors.PROMPT_SAMPLE_RATE,
            "Record or export at 16 kHz or more (44.1 or 48 kHz is ideal); telephone "
            "recordings (8 kHz) lack the high frequencies a voice is recognized by.",
        )
    raw = decoded.samples
    original_seconds = len(raw) / rate
    if original_seconds > HARD_MAX_SECONDS:
        raise _too_long(param, original_seconds, HARD_MAX_SECONDS, "")
    original = raw
    if rate > MAX_RATE:
        raw, rate = resample(raw, rate, MAX_RATE), MAX_RATE
    offset = float(raw.mean())
    # A DC offset (a cheap microphone, a bad sound card) would count as level
    # everywhere and skew the peak; below -60 dBFS it is harmless and left alone,
    # so digital silence stays silence.
    samples = raw - np.float32(offset) if abs(offset) > _DC_OFFSET else raw

    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    power = frame_levels(samples, rate)
    if _dbfs(peak) < SILENT_PEAK_DBFS or len(power) == 0:
        raise _refuse(
            param,
            f"is silent (peak {_dbfs(peak):.0f} dBFS)",
            errors.PROMPT_SILENT,
            "Check that the microphone is on and not muted, then record again.",
        )
    speech = _find_speech(power)
    if speech.loud_db - speech.floor_db < SILENT_CONTRAST_DB or speech.end == 0:
        raise _refuse(
            param,
            "holds no speech: nothing stands out from the background",
            errors.PROMPT_SILENT,
            "Check that the right microphone is selected, then record 3-15 s of speech.",
        )

    frame = max(1, round(FRAME_S * rate))
    margin = round(_MARGIN_S * rate)
    start = max(0, speech.start * frame - margin)
    end = min(len(samples), speech.end * frame + margin)
    seconds = (end - start) / rate
    if seconds < min_seconds:
        raise _refuse(
            param,
            f"is {seconds:.1f} s of speech; at least {min_seconds:g} s is needed",
            errors.PROMPT_TOO_SHORT,
            f"Record {min_seconds:g}-{max_seconds:g} s of continuous speech; silence at the "
            "start and end does not count.",
        )
    if seconds > max_seconds:
        raise _too_long(param, seconds, max_seconds, " of speech")
    scale = decoded.rate / rate  # clipping is judged on the samples as they came
    clipped = clipped_fraction(original[round(start * scale) : round(end * scale)])
    if clipped >= CLIPPED_FRACTION:
        raise _refuse(
            param,
            f"is clipped: {100 * clipped:.1f}% of its samples are stuck at the ceiling",
            errors.PROMPT_CLIPPED,
            "Record again with a lower input gain, or farther from the microphone; "
            "turning a clipped file down afterwards does not repair it.",
        )
    snr = _snr_db(power, speech)
    if snr is not None and snr < NOISY_SNR_DB:
        raise _refuse(
            param,
            f"is noisy: the speech is only {snr:.0f} dB above the background",
            errors.PROMPT_NOISY,
            "Record in a quiet room, close to the microphone, without music or other voices.",
        )

    kept = samples[start:end]
    kept_peak = float(np.abs(kept).max())
    peak_dbfs = _dbfs(kept_peak)
    gain_db = TARGET_PEAK_DBFS - peak_dbfs
    normalized = (kept * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
    warnings: list[str] = []
    if clipped >= CLIPPING_WARN_FRACTION:
        warnings.append(WARN_CLIPPING)
    if snr is not None and snr < LOW_SNR_DB:
        warnings.append(WARN_LOW_SNR)
    if peak_dbfs < QUIET_PEAK_DBFS:
        warnings.append(WARN_QUIET)
    if _longest_pause(speech) >= LONG_PAUSE_S:
        warnings.append(WARN_LONG_PAUSE)
    report = IntakeReport(
        container=decoded.container,
        codec=decoded.codec,
        original_sample_rate=decoded.original_rate,
        channels=decoded.channels,
        original_seconds=original_seconds,
        seconds=seconds,
        trimmed_start_s=start / rate,
        trimmed_end_s=(len(samples) - end) / rate,
        peak_dbfs=peak_dbfs,
        gain_db=gain_db,
        clipped_fraction=clipped,
        snr_db=snr,
        warnings=tuple(warnings),
    )
    return Intake(PromptAudio(normalized, rate), report, digest(normalized, rate))


def digest(samples: Samples, rate: int) -> str:
    """sha256 of the int16 PCM a prompt is stored as, and its rate."""
    h = hashlib.sha256(to_s16le(np.clip(samples, -1.0, 1.0)))
    h.update(struct.pack("<I", rate))
    return h.hexdigest()
