"""Native ``/v1/tts`` wire types: CosyVoice's modes and vocabulary, plus the
controls a production service needs (format, sample rate, streaming)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voxgate.audio.formats import AudioFormat
from voxgate.engines.base import Mode


class TTSRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(description="Text to speak; CosyVoice inline tags and annotations allowed.")
    mode: Mode | None = Field(
        None,
        description="sft, zero_shot, cross_lingual or instruct. Default: sft for a built-in "
        "speaker; for a registered voice or a reference_audio, zero_shot when its transcript "
        "is known, else cross_lingual.",
    )
    speaker_id: str | None = Field(
        None,
        max_length=256,
        description="A speaker id or alias (中文女, en-us-f3...), or a registered voice id.",
    )
    voice: str | None = Field(None, max_length=256, description="Same as speaker_id.")
    reference_audio: str | None = Field(
        None,
        max_length=44_000_000,
        description="A voice prompt for this request only: base64 of an audio file (3-15 s). "
        "With multipart/form-data, send it as a file field instead.",
    )
    reference_text: str | None = Field(
        None, max_length=2000, description="What reference_audio says (needed for zero_shot)."
    )
    instruct: str | None = Field(
        None, max_length=4096, description="Style instruction (mode instruct)."
    )
    engine: str | None = Field(None, max_length=256, description="Engine name; default if absent.")
    language: str | None = Field(
        None, max_length=32, description="Language hint: zh, en-GB, yue..."
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Tempo factor.")
    pitch: float = Field(0.0, ge=-12.0, le=12.0, description="Pitch shift in semitones.")
    volume: float = Field(1.0, ge=0.0, le=2.0, description="Loudness factor.")
    format: AudioFormat = Field(AudioFormat.WAV, description="mp3, opus, aac, flac, wav or pcm.")
    sample_rate: int | None = Field(
        None, ge=8000, le=192000, description="Output rate; the engine's own if absent."
    )
    stream: bool = Field(False, description="Send audio as it is synthesized.")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="With stream: raw audio, or server-sent events with base64 audio."
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed, for engines that use one.")
    priority: Literal["realtime", "batch"] | None = Field(
        None,
        description="realtime (default) is served before batch when engines are busy "
        "(also: header X-Voxgate-Priority).",
    )
