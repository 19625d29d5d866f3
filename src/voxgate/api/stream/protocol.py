"""The messages of ``/v1/audio/speech/stream`` (docs/api.md, "Streaming text
in: WebSocket"). Client messages are JSON text frames with a ``type``; the
server answers JSON text frames and binary audio frames.

Client:  ``session.config`` (first, once), ``input.text`` (any number),
``input.done``, ``cancel``.
Server:  ``session.ready``, ``audio.start``, binary audio, ``audio.done``;
``error`` or ``cancelled`` before it closes otherwise.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxgate import errors
from voxgate.engines.base import Mode
from voxgate.errors import RequestError, VoxgateError

CONFIG, TEXT, DONE, CANCEL = "session.config", "input.text", "input.done", "cancel"


class SessionConfig(BaseModel):
    """``session.config``: everything about the session but its text. Speed,
    sample rate, voice and engine are checked like a ``/v1/tts`` request's."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["session.config"]
    voice: str | None = Field(None, max_length=256)
    model: str | None = Field(None, max_length=256)
    engine: str | None = Field(None, max_length=256)  # wins over model
    mode: Mode | None = None
    instruct: str | None = Field(None, max_length=4096)
    language: str | None = Field(None, max_length=32)
    speed: float = 1.0
    format: Literal["pcm", "opus"] = "pcm"
    sample_rate: int | None = None


def unexpected(message: str, hint: str) -> RequestError:
    return RequestError(message, code=errors.UNEXPECTED_MESSAGE, hint=hint)


def parse(text: str) -> dict[str, Any]:
    """A client message: a JSON object with a string ``type``."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise RequestError(
            f"message is not valid JSON: {exc}",
            code=errors.INVALID_JSON,
            hint='Send JSON objects such as {"type": "input.text", "text": "Hello"}.',
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise RequestError(
            "message must be a JSON object with a string type",
            code=errors.INVALID_JSON,
            hint='Send JSON objects such as {"type": "input.text", "text": "Hello"}.',
        )
    return message


def config(message: dict[str, Any]) -> SessionConfig:
    try:
        return SessionConfig.model_validate(message)
    except ValidationError as exc:
        raise _invalid(exc) from None


def text(message: dict[str, Any]) -> str:
    value = message.get("text")
    if not isinstance(value, str):
        raise RequestError(
            "input.text needs a string text",
            code=errors.MISSING_FIELD if value is None else errors.INVALID_REQUEST,
            hint='Send {"type": "input.text", "text": "..."}.',
            param="text",
        )
    return value


def _invalid(exc: ValidationError) -> VoxgateError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    kind = first.get("type", "")
    code = errors.INVALID_REQUEST
    if kind == "missing":
        code = errors.MISSING_FIELD
    elif field == "format":
        code = errors.FORMAT_UNSUPPORTED
    elif field == "mode":
        code = errors.MODE_UNSUPPORTED
    hint = {
        errors.FORMAT_UNSUPPORTED: 'A session streams "pcm" (s16le mono) or "opus" (Ogg).',
        errors.MODE_UNSUPPORTED: "Use sft, zero_shot, cross_lingual or instruct.",
    }.get(code, "See the session.config fields in docs/api.md.")
    return RequestError(f"{field}: {first.get('msg')}", code=code, hint=hint, param=field)


def ready(request_id: str) -> dict[str, Any]:
    return {"type": "session.ready", "request_id": request_id}


def audio_start(fmt: str, sample_rate: int, engine: str, voice: str) -> dict[str, Any]:
    return {
        "type": "audio.start",
        "format": fmt,
        "sample_rate": sample_rate,
        "channels": 1,
        "engine": engine,
        "voice": voice,
    }


def audio_done(summary: dict[str, Any]) -> dict[str, Any]:
    return {"type": "audio.done", **summary}


def error(exc: VoxgateError) -> dict[str, Any]:
    return {"type": "error", "code": exc.code, "message": exc.message, "hint": exc.hint}


CANCELLED: dict[str, Any] = {"type": "cancelled"}
