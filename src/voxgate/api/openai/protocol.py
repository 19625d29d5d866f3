"""OpenAI ``/v1/audio/speech`` wire types (https://platform.openai.com/docs/api-reference/audio).

Optional fields stay optional: clients that omit ``voice`` or
``response_format`` must not break (a bug peers shipped). voxgate accepts a
few extensions, ignored by OpenAI clients that do not send them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceId(BaseModel):
    """A voice given as an object, ``{"id": "voice_..."}``."""

    id: str = Field(min_length=1, max_length=256)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        "tts-1",
        max_length=256,
        description="An engine name or an alias such as tts-1; see GET /v1/models.",
    )
    input: str = Field(description="The text to speak (limit: VOXGATE_MAX_INPUT_CHARS).")
    voice: str | VoiceId | None = Field(
        None,
        description='A voice name (alloy, 中文女, en-us-f3, ...) or {"id": ...}.',
        examples=["alloy"],
    )
    instructions: str | None = Field(
        None, max_length=4096, description="Free-text style control, e.g. 'speak slowly'."
    )
    response_format: ResponseFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    # voxgate extensions
    sample_rate: int | None = Field(
        None, ge=8000, le=192000, description="voxgate: output rate (default 24000)."
    )
    language: str | None = Field(
        None, max_length=32, description="voxgate: language hint, e.g. en-GB, zh, yue."
    )
    priority: Literal["realtime", "batch"] | None = Field(
        None,
        description="voxgate: realtime (default) is served before batch when engines are "
        "busy (also: header X-Voxgate-Priority).",
    )

    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "voxgate"
    engine: str
    kind: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
