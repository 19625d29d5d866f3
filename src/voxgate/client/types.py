"""What the SDK returns: plain, typed dataclasses built from the server's JSON.

Each object keeps the JSON it came from in ``raw``, so fields a newer server
adds are reachable before the SDK learns their names.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import unquote

import httpx

__all__ = [
    "AudioFormat",
    "AudioInfo",
    "AudioStart",
    "IntakeReport",
    "Job",
    "JobError",
    "JobProgress",
    "JobState",
    "Page",
    "SpeechResult",
    "Timings",
    "Usage",
    "Voice",
]

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})

T = TypeVar("T")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


@dataclass(frozen=True, kw_only=True)
class AudioInfo:
    """What the response headers say about the audio (known before its first byte)."""

    format: str
    """mp3, opus, aac, flac, wav or pcm."""
    sample_rate: int | None
    """The audio's rate: for ``pcm`` the only place it is said."""
    channels: int = 1
    content_type: str | None = None
    engine: str | None = None
    """The engine that spoke."""
    voice: str | None = None
    """The speaker id (percent-decoded: 中文女, not %E4%B8%AD...)."""
    warnings: list[str] = field(default_factory=list)
    """``X-Voxgate-Warning`` values, ``code: message``."""
    request_id: str | None = None
    cache: str | None = None
    """``hit``, ``miss`` or ``shared`` when the result cache was used."""
    etag: str | None = None

    @property
    def warning_codes(self) -> list[str]:
        return [w.split(":", 1)[0].strip() for w in self.warnings]

    @classmethod
    def from_headers(cls, headers: httpx.Headers, default_format: str) -> AudioInfo:
        return cls(**_info_fields(headers, default_format))


def _info_fields(headers: httpx.Headers, default_format: str) -> dict[str, Any]:
    def decoded(name: str) -> str | None:
        value = headers.get(name)
        return unquote(value) if value is not None else None

    return {
        "format": headers.get("x-audio-format") or default_format,
        "sample_rate": _int(headers.get("x-sample-rate")),
        "channels": _int(headers.get("x-channels")) or 1,
        "content_type": headers.get("content-type"),
        "engine": decoded("x-voxgate-engine"),
        "voice": decoded("x-voxgate-voice"),
        "warnings": headers.get_list("x-voxgate-warning", split_commas=False),
        "request_id": headers.get("x-request-id"),
        "cache": headers.get("x-voxgate-cache"),
        "etag": headers.get("etag"),
    }


@dataclass(frozen=True, kw_only=True)
class SpeechResult(AudioInfo):
    """A whole audio file and what the headers said about it."""

    audio: bytes = b""

    @classmethod
    def from_response(cls, response: httpx.Response, default_format: str) -> SpeechResult:
        return cls(audio=response.content, **_info_fields(response.headers, default_format))

    def write_to_file(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.write_bytes(self.audio)
        return out

    def __repr__(self) -> str:
        return (
            f"SpeechResult(format={self.format!r}, sample_rate={self.sample_rate!r}, "
            f"bytes={len(self.audio)}, engine={self.engine!r}, voice={self.voice!r}, "
            f"request_id={self.request_id!r})"
        )


@dataclass(frozen=True, kw_only=True)
class IntakeReport:
    """What the prompt intake found in a voice recording (docs/voices.md)."""

    container: str | None = None
    codec: str | None = None
    original_sample_rate: int | None = None
    channels: int | None = None
    original_seconds: float | None = None
    seconds: float | None = None
    trimmed_start_s: float | None = None
    trimmed_end_s: float | None = None
    peak_dbfs: float | None = None
    gain_db: float | None = None
    clipped_fraction: float | None = None
    snr_db: float | None = None
    warnings: list[str] = field(default_factory=list)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IntakeReport:
        floats = (
            "original_seconds", "seconds", "trimmed_start_s", "trimmed_end_s",
            "peak_dbfs", "gain_db", "clipped_fraction", "snr_db",
        )  # fmt: skip
        return cls(
            container=_str(data.get("container")),
            codec=_str(data.get("codec")),
            original_sample_rate=_int(data.get("original_sample_rate")),
            channels=_int(data.get("channels")),
            warnings=[str(w) for w in _list(data.get("warnings"))],
            raw=dict(data),
            **{name: _float(data.get(name)) for name in floats},
        )


@dataclass(frozen=True, kw_only=True)
class Voice:
    """A built-in speaker (``type == "builtin"``) or a registered voice (``audio_sample``)."""

    id: str
    name: str
    type: str
    created_at: int = 0
    engine: str | None = None
    language: str | None = None
    gender: str | None = None
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    updated_at: int | None = None
    consent: str | None = None
    prompt_text: str | None = None
    transcript_source: str | None = None
    tags: list[str] = field(default_factory=list)
    duration_s: float | None = None
    sample_rate: int | None = None
    sample_url: str | None = None
    use_count: int | None = None
    last_used_at: int | None = None
    intake: IntakeReport | None = None
    """Only on registration: what the prompt intake found and did."""
    notes: list[str] = field(default_factory=list)
    """Only on registration: what to know (a transcript made by ASR, ...)."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Voice:
        intake = data.get("intake")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            type=str(data.get("type") or ""),
            created_at=_int(data.get("created_at")) or 0,
            engine=_str(data.get("engine")),
            language=_str(data.get("language")),
            gender=_str(data.get("gender")),
            aliases=[str(a) for a in _list(data.get("aliases"))],
            description=str(data.get("description") or ""),
            updated_at=_int(data.get("updated_at")),
            consent=_str(data.get("consent")),
            prompt_text=_str(data.get("prompt_text")),
            transcript_source=_str(data.get("transcript_source")),
            tags=[str(t) for t in _list(data.get("tags"))],
            duration_s=_float(data.get("duration_s")),
            sample_rate=_int(data.get("sample_rate")),
            sample_url=_str(data.get("sample_url")),
            use_count=_int(data.get("use_count")),
            last_used_at=_int(data.get("last_used_at")),
            intake=IntakeReport.from_json(intake) if isinstance(intake, Mapping) else None,
            notes=[str(n) for n in _list(data.get("notes"))],
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class JobProgress:
    segments_done: int = 0
    segments_total: int = 0
    fraction: float = 0.0
    audio_seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class JobError:
    code: str
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class Job:
    """A background synthesis (docs/jobs.md)."""

    id: str
    state: str
    """queued, running, succeeded, failed or cancelled."""
    progress: JobProgress
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    characters: int = 0
    request: Mapping[str, Any] = field(default_factory=dict)
    priority: str | None = None
    attempts: int = 0
    error: JobError | None = None
    callback_url: str | None = None
    webhook: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    result: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """The job ended (succeeded, failed or cancelled)."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @property
    def format(self) -> str | None:
        value = self.request.get("format")
        return str(value) if value is not None else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        progress = data.get("progress") or {}
        error = data.get("error")
        return cls(
            id=str(data["id"]),
            state=str(data.get("state") or ""),
            progress=JobProgress(
                segments_done=_int(progress.get("segments_done")) or 0,
                segments_total=_int(progress.get("segments_total")) or 0,
                fraction=_float(progress.get("fraction")) or 0.0,
                audio_seconds=_float(progress.get("audio_seconds")) or 0.0,
            ),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            expires_at=_time(data.get("expires_at")),
            characters=_int(data.get("characters")) or 0,
            request=dict(data.get("request") or {}),
            priority=_str(data.get("priority")),
            attempts=_int(data.get("attempts")) or 0,
            error=JobError(code=str(error.get("code")), message=_str(error.get("message")))
            if isinstance(error, Mapping)
            else None,
            callback_url=_str(data.get("callback_url")),
            webhook=dict(data["webhook"]) if isinstance(data.get("webhook"), Mapping) else None,
            idempotency_key=_str(data.get("idempotency_key")),
            result=dict(data["result"]) if isinstance(data.get("result"), Mapping) else None,
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    """One page of a list; ``last_id`` is the cursor for the next one."""

    data: list[T]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class AudioStart:
    """A WebSocket session's ``audio.start``: what the binary frames hold."""

    format: str
    sample_rate: int | None
    channels: int = 1
    engine: str | None = None
    voice: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AudioStart:
        return cls(
            format=str(data.get("format") or ""),
            sample_rate=_int(data.get("sample_rate")),
            channels=_int(data.get("channels")) or 1,
            engine=_str(data.get("engine")),
            voice=_str(data.get("voice")),
        )


@dataclass(frozen=True, kw_only=True)
class Usage:
    characters: int = 0
    audio_seconds: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> Usage | None:
        if not isinstance(data, Mapping):
            return None
        return cls(
            characters=_int(data.get("characters")) or 0,
            audio_seconds=_float(data.get("audio_seconds")) or 0.0,
        )


@dataclass(frozen=True, kw_only=True)
class Timings:
    first_audio_ms: float | None = None
    total_ms: float | None = None
    last_text_to_first_audio_ms: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> Timings | None:
        if not isinstance(data, Mapping):
            return None
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: _float(data.get(name)) for name in names})
