"""A job as its owner sees it, independent of how it is stored or run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from voxgate.store.models import JobRow


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def new_job_id() -> str:
    return "job_" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """The synthesis fields of a job (those of ``/v1/tts``), stored as JSON."""

    engine: str | None = None
    voice: str | None = None
    mode: str | None = None
    instruct: str | None = None
    language: str | None = None
    speed: float = 1.0
    pitch: float = 0.0
    volume: float = 1.0
    format: str = "mp3"
    sample_rate: int | None = None
    seed: int = 0
    subtitles: tuple[str, ...] = ()  # srt, vtt

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "voice": self.voice,
            "mode": self.mode,
            "instruct": self.instruct,
            "language": self.language,
            "speed": self.speed,
            "pitch": self.pitch,
            "volume": self.volume,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "seed": self.seed,
            "subtitles": list(self.subtitles),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        fields = dict(data)
        fields["subtitles"] = tuple(fields.get("subtitles") or ())
        return cls(**fields)


@dataclass(slots=True)
class Job:
    id: str
    tenant: str
    state: JobState
    priority: int
    spec: JobSpec
    characters: int
    segments_total: int
    segments_done: int
    audio_seconds: float
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    result_bytes: int | None = None
    webhook_state: str | None = None
    webhook_attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        return cls(
            id=row.id,
            tenant=row.tenant,
            state=JobState(row.state),
            priority=row.priority,
            spec=JobSpec.from_json(row.spec),
            characters=row.characters,
            segments_total=row.segments_total,
            segments_done=row.segments_done,
            audio_seconds=row.audio_seconds,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            expires_at=row.expires_at,
            error_code=row.error_code,
            error_message=row.error_message,
            callback_url=row.callback_url,
            idempotency_key=row.idempotency_key,
            attempts=row.attempts,
            cancel_requested=row.cancel_requested,
            result_bytes=row.result_bytes,
            webhook_state=row.webhook_state,
            webhook_attempts=row.webhook_attempts,
        )

    @property
    def progress(self) -> float:
        return self.segments_done / self.segments_total if self.segments_total else 1.0


def audio_key(job_id: str, fmt: str) -> str:
    return f"jobs/{job_id}/audio.{fmt}"


def subtitles_key(job_id: str, kind: str) -> str:
    return f"jobs/{job_id}/subtitles.{kind}"


def segment_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/segments/{index:07d}.pcm"


def text_key(job_id: str) -> str:
    return f"jobs/{job_id}/segments.json"
