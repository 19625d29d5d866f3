"""Wire types of the jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voxgate.audio.formats import AudioFormat
from voxgate.engines.base import Mode
from voxgate.jobs.model import Job


class JobRequest(BaseModel):
    """The synthesis fields of ``/v1/tts``, the text (or a .txt/.md file),
    and what to do when it is done."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = Field(None, description="The text (up to VOXGATE_JOB_MAX_CHARS).")
    file: str | None = Field(
        None,
        description="Instead of text: a UTF-8 .txt or .md file (multipart upload, or base64).",
    )
    voice: str | None = Field(None, max_length=256, description="Speaker id or voice id.")
    engine: str | None = Field(None, max_length=256)
    mode: Mode | None = None
    instruct: str | None = Field(None, max_length=4096)
    language: str | None = Field(None, max_length=32)
    speed: float = Field(1.0, ge=0.25, le=4.0)
    pitch: float = Field(0.0, ge=-12.0, le=12.0)
    volume: float = Field(1.0, ge=0.0, le=2.0)
    format: AudioFormat = AudioFormat.MP3
    sample_rate: int | None = Field(None, ge=8000, le=192000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    subtitles: list[Literal["srt", "vtt"]] | Literal["srt", "vtt"] | None = Field(
        None, description="Subtitle formats to offer (both are always made)."
    )
    priority: Literal["batch", "realtime"] = Field(
        "batch", description="Jobs run as batch work unless told otherwise."
    )
    callback_url: str | None = Field(
        None, max_length=2048, description="POSTed when the job ends (signed)."
    )
    idempotency_key: str | None = Field(
        None,
        max_length=256,
        description="Submitting the same key again returns the first job instead of a new one "
        "(also: header Idempotency-Key).",
    )


class JobError(BaseModel):
    code: str
    message: str | None = None


class JobProgress(BaseModel):
    segments_done: int
    segments_total: int
    fraction: float
    audio_seconds: float


class JobObject(BaseModel):
    id: str
    object: Literal["job"] = "job"
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    characters: int
    progress: JobProgress
    request: dict[str, Any]
    priority: Literal["realtime", "batch"]
    attempts: int
    error: JobError | None = None
    callback_url: str | None = None
    webhook: dict[str, Any] | None = None
    idempotency_key: str | None = None
    result: dict[str, Any] | None = None

    @classmethod
    def of(cls, job: Job) -> JobObject:
        result = None
        if job.state.value == "succeeded":
            fmt = job.spec.format
            result = {
                "audio_url": f"/v1/jobs/{job.id}/audio",
                "format": fmt,
                "bytes": job.result_bytes,
                "subtitles": {
                    "srt": f"/v1/jobs/{job.id}/subtitles.srt",
                    "vtt": f"/v1/jobs/{job.id}/subtitles.vtt",
                },
            }
        return cls(
            id=job.id,
            state=job.state.value,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            expires_at=job.expires_at,
            characters=job.characters,
            progress=JobProgress(
                segments_done=job.segments_done,
                segments_total=job.segments_total,
                fraction=round(job.progress, 4),
                audio_seconds=round(job.audio_seconds, 3),
            ),
            request=job.spec.to_json(),
            priority="realtime" if job.priority == 0 else "batch",
            attempts=job.attempts,
            error=JobError(code=job.error_code, message=job.error_message)
            if job.error_code
            else None,
            callback_url=job.callback_url,
            webhook={"state": job.webhook_state, "attempts": job.webhook_attempts}
            if job.webhook_state
            else None,
            idempotency_key=job.idempotency_key,
            result=result,
        )


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
