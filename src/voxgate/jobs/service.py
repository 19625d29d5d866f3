"""Submitting jobs: what is checked before a job id is handed out.

Everything a caller can get wrong is answered with a 4xx here, before the
job exists: the text (empty, too long), the engine, the callback URL (SSRF),
the daily character quota (charged once, for the whole text). Segmentation
happens here too and is stored with the job, so every runner (after a
restart, on another host) resumes against exactly the same segments.
"""

from __future__ import annotations

from voxgate import errors
from voxgate.errors import RequestError
from voxgate.jobs.model import Job, JobSpec
from voxgate.jobs.queue import JobQueue
from voxgate.jobs.store import JobStore
from voxgate.jobs.webhooks import AllowList, check_callback_url
from voxgate.pipeline import Pipeline
from voxgate.serving.admission import Priority
from voxgate.serving.principal import Principal
from voxgate.text.markup import has_content, parse
from voxgate.text.normalize import normalize
from voxgate.text.split import split


class JobService:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        pipeline: Pipeline,
        *,
        max_chars: int,
        segment_chars: int,
        allow: AllowList,
        poll_s: float = 0.5,
    ) -> None:
        self.store = store
        self.queue = queue
        self.pipeline = pipeline
        self.max_chars = max_chars
        self.segment_chars = segment_chars
        self.allow = allow
        self.poll_s = poll_s

    def segments(self, text: str) -> tuple[list[str], int]:
        """The job's segments (sentences, grouped up to ``segment_chars``) and
        its character count."""
        text = normalize(text)
        if len(text) > self.max_chars:
            raise RequestError(
                f"text is {len(text)} characters; a job takes at most {self.max_chars}",
                code=errors.TEXT_TOO_LONG,
                hint="Split it into several jobs (or raise VOXGATE_JOB_MAX_CHARS).",
                param="text",
            )
        nodes = parse(text)
        if not has_content(nodes):
            raise RequestError(
                "text is empty", code=errors.TEXT_EMPTY, hint="Send words to speak.", param="text"
            )
        parts = split(nodes, max_chars=self.segment_chars, first_max_chars=self.segment_chars)
        return [p.text for p in parts if p.plain.strip()], len(text)

    async def submit(
        self,
        *,
        text: str,
        spec: JobSpec,
        principal: Principal,
        priority: Priority,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> tuple[Job, bool]:
        segments, characters = self.segments(text)
        if spec.engine is not None:
            self.pipeline.registry.get(spec.engine)  # model_not_found now, not later
        if callback_url is not None:
            await check_callback_url(callback_url, self.allow)
        if idempotency_key is not None:
            existing = await self.store.get_by_idempotency(principal.tenant, idempotency_key)
            if existing is not None:
                return existing, False
        if self.pipeline.quota is not None:
            await self.pipeline.quota.reserve(principal, characters)
        job, created = await self.store.create(
            tenant=principal.tenant,
            spec=spec,
            segments=segments,
            characters=characters,
            priority=int(priority),
            callback_url=callback_url,
            idempotency_key=idempotency_key,
        )
        if created:
            await self.queue.submit(job)
        return job, created
