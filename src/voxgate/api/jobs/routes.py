"""The jobs API: long text in, a job id out at once; progress, audio and
subtitles when it is done. Everything is scoped to the caller's tenant: a
job of another tenant answers 404, exactly like one that does not exist."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from voxgate import errors
from voxgate.api import deps
from voxgate.api.errors import error_responses
from voxgate.api.forms import JsonOrForm, multipart_variant
from voxgate.api.jobs.protocol import JobList, JobObject, JobRequest
from voxgate.audio.formats import AudioFormat, info
from voxgate.config import Settings
from voxgate.errors import RequestError, VoxgateError
from voxgate.jobs.model import Job, JobSpec, audio_key, subtitles_key
from voxgate.jobs.service import JobService
from voxgate.serving.admission import Priority

router = APIRouter(
    tags=["Jobs"], route_class=JsonOrForm, responses=error_responses(400, 404, 409, 413, 415, 429)
)
JobId = Path(min_length=1, max_length=64, description="A job id (job_...).")


async def service(request: Request) -> JobService:
    jobs: JobService | None = request.app.state.jobs
    if jobs is None:
        raise VoxgateError(
            "jobs are disabled on this gateway",
            code=errors.NOT_FOUND,
            hint="Set VOXGATE_JOBS_ENABLED=true.",
        )
    return jobs


def _text_of(body: JobRequest) -> str:
    if body.text is not None and body.file is not None:
        raise RequestError(
            "send text or file, not both",
            code=errors.INVALID_REQUEST,
            hint="Put the text in one of them.",
            param="file",
        )
    if body.file is not None:
        try:
            return base64.b64decode(body.file, validate=True).decode("utf-8")
        except ValueError:  # not base64 (binascii.Error), or not UTF-8 (UnicodeDecodeError)
            raise RequestError(
                "file is not UTF-8 text",
                code=errors.INVALID_REQUEST,
                hint="Upload a UTF-8 .txt or .md file.",
                param="file",
            ) from None
    if body.text is None:
        raise RequestError(
            "a job needs text or a file",
            code=errors.MISSING_FIELD,
            hint='Send "text", or upload a .txt/.md file as "file".',
            param="text",
        )
    return body.text


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobObject,
    openapi_extra=multipart_variant("JobRequest", {"file": "A UTF-8 .txt or .md file."}),
)
async def submit(
    body: JobRequest,
    request: Request,
    response: Response,
    jobs: JobService = Depends(service),
) -> JobObject:
    """Queue a long synthesis; answers at once with the job (202)."""
    subtitles = body.subtitles if isinstance(body.subtitles, list) else [body.subtitles]
    spec = JobSpec(
        engine=body.engine,
        voice=body.voice,
        mode=body.mode.value if body.mode else None,
        instruct=body.instruct,
        language=body.language,
        speed=body.speed,
        pitch=body.pitch,
        volume=body.volume,
        format=body.format.value,
        sample_rate=body.sample_rate,
        seed=body.seed,
        subtitles=tuple(s for s in subtitles if s),
    )
    job, created = await jobs.submit(
        text=_text_of(body),
        spec=spec,
        principal=deps.principal(request),
        priority=Priority.parse(body.priority),
        callback_url=body.callback_url,
        idempotency_key=body.idempotency_key or request.headers.get("idempotency-key"),
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.status_code = 200  # the same idempotency key: the first job
    return JobObject.of(job)


@router.get("/v1/jobs", response_model=JobList)
async def list_jobs(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="Cursor: the last id of the previous page."),
    state: str | None = Query(None, pattern="^(queued|running|succeeded|failed|cancelled)$"),
    jobs: JobService = Depends(service),
) -> JobList:
    """The caller's jobs, newest first."""
    tenant = deps.tenant(request)
    cursor = None
    if after is not None:
        cursor = await jobs.store.get(after, tenant)
        if cursor is None:
            raise RequestError(
                f"cursor {after!r} is not one of your jobs",
                code=errors.INVALID_REQUEST,
                hint="Pass the last_id of the previous page.",
                param="after",
            )
    page, more = await jobs.store.page(tenant, limit=limit, after=cursor, state=state)
    data = [JobObject.of(j) for j in page]
    return JobList(
        data=data,
        has_more=more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


async def _job(jobs: JobService, job_id: str, request: Request) -> Job:
    job = await jobs.store.get(job_id, deps.tenant(request))
    if job is None:
        raise VoxgateError(
            f"no job {job_id!r}", code=errors.JOB_NOT_FOUND, hint="GET /v1/jobs lists yours."
        )
    return job


@router.get("/v1/jobs/{job_id}", response_model=JobObject)
async def get_job(
    request: Request, job_id: str = JobId, jobs: JobService = Depends(service)
) -> JobObject:
    return JobObject.of(await _job(jobs, job_id, request))


@router.delete("/v1/jobs/{job_id}", response_model=JobObject)
async def cancel_job(
    request: Request, job_id: str = JobId, jobs: JobService = Depends(service)
) -> JobObject:
    """Cancel: a queued job at once, a running one within a segment. A job
    that already ended is returned unchanged."""
    job = await jobs.store.request_cancel(job_id, deps.tenant(request))
    if job is None:
        raise VoxgateError(
            f"no job {job_id!r}", code=errors.JOB_NOT_FOUND, hint="GET /v1/jobs lists yours."
        )
    return JobObject.of(job)


@router.get("/v1/jobs/{job_id}/events")
async def job_events(
    request: Request,
    job_id: str = JobId,
    jobs: JobService = Depends(service),
    settings: Settings = Depends(deps.settings),
) -> StreamingResponse:
    """Server-sent events: ``progress`` whenever the job changes, then
    ``done`` with the final job; a comment every 15 s keeps proxies open."""
    job = await _job(jobs, job_id, request)
    tenant = deps.tenant(request)

    async def events() -> AsyncIterator[bytes]:
        current: Job | None = job
        last = None
        quiet = 0.0
        while current is not None:
            snapshot = JobObject.of(current).model_dump(mode="json")
            if snapshot != last:
                last = snapshot
                kind = "done" if current.state.terminal else "progress"
                yield _sse(kind, snapshot)
                quiet = 0.0
                if current.state.terminal:
                    return
            elif quiet >= 15.0:
                yield b": keep-alive\n\n"
                quiet = 0.0
            await asyncio.sleep(jobs.poll_s)
            quiet += jobs.poll_s
            if await request.is_disconnected():
                return
            current = await jobs.store.get(job_id, tenant)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _finished(job: Job) -> None:
    if job.state.value != "succeeded":
        raise VoxgateError(
            f"job {job.id} is {job.state.value}; it has no audio",
            code=errors.JOB_NOT_FINISHED,
            hint="Wait for state succeeded (GET /v1/jobs/{id}/events streams progress).",
        )


@router.get("/v1/jobs/{job_id}/audio", response_class=Response)
async def job_audio(
    request: Request, job_id: str = JobId, jobs: JobService = Depends(service)
) -> Response:
    """The finished audio; byte ranges supported (resumable downloads, seeking)."""
    job = await _job(jobs, job_id, request)
    _finished(job)
    key = audio_key(job.id, job.spec.format)
    media_type = info(AudioFormat(job.spec.format)).media_type
    filename = f"{job.id}.{job.spec.format}"
    path = jobs.store.blobs.local_path(key)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename)
    data = await asyncio.to_thread(jobs.store.blobs.get, key)
    return Response(data, media_type=media_type)


@router.get("/v1/jobs/{job_id}/subtitles.{kind}", response_class=Response)
async def job_subtitles(
    request: Request,
    job_id: str = JobId,
    kind: str = Path(pattern="^(srt|vtt)$"),
    jobs: JobService = Depends(service),
) -> Response:
    """Cues timed from the audio actually produced, one per segment."""
    job = await _job(jobs, job_id, request)
    _finished(job)
    data = await asyncio.to_thread(jobs.store.blobs.get, subtitles_key(job.id, kind))
    media_type = "text/vtt; charset=utf-8" if kind == "vtt" else "application/x-subrip"
    return Response(data, media_type=media_type)
