"""Building the jobs part of a gateway from settings (kept out of app.py so
the wiring of jobs reads in one place)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from voxgate.config import Settings
from voxgate.jobs.queue import EmbeddedQueue, JobQueue
from voxgate.jobs.runner import JobRunner, RunnerConfig
from voxgate.jobs.service import JobService
from voxgate.jobs.store import JobStore
from voxgate.jobs.webhooks import AllowList, WebhookDispatcher
from voxgate.pipeline import Pipeline
from voxgate.store.blobs import BlobStore
from voxgate.store.db import Database


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        lease_s=settings.job_lease_s,
        keep_s=settings.job_keep_s,
        max_segment_chars=settings.job_segment_chars,
    )


def housekeeping_s(settings: Settings) -> float:
    """How often dead runners' jobs are requeued and expired jobs removed:
    often enough for the lease and the keep time configured."""
    return max(0.2, min(5.0, settings.job_lease_s / 3, settings.job_keep_s / 2))


def public_url(settings: Settings) -> str:
    return settings.public_url or f"http://{settings.host}:{settings.port}"


@dataclass
class Jobs:
    service: JobService
    queue: JobQueue
    webhooks: WebhookDispatcher
    runner: JobRunner

    async def start(self) -> None:
        await self.queue.start()
        self.webhooks.start()

    async def close(self) -> None:
        await self.queue.close()
        await self.webhooks.close()


def build_jobs(
    settings: Settings, pipeline: Pipeline, db: Database, blobs: BlobStore
) -> Jobs | None:
    if not settings.jobs_enabled:
        return None
    store = JobStore(db, blobs)
    runner = JobRunner(pipeline, store, runner_config(settings))
    queue: JobQueue
    if settings.job_backend == "celery":
        from voxgate.jobs.celery_queue import CeleryQueue

        queue = CeleryQueue(settings, store, housekeeping_s=housekeeping_s(settings))
    else:
        queue = EmbeddedQueue(
            runner, store, concurrency=settings.job_workers, housekeeping_s=housekeeping_s(settings)
        )
    allow = AllowList.parse(settings.webhook_allow)
    service = JobService(
        store,
        queue,
        pipeline,
        max_chars=settings.job_max_chars,
        segment_chars=settings.job_segment_chars,
        allow=allow,
    )
    webhooks = WebhookDispatcher(
        store,
        secret=webhook_secret(settings),
        allow=allow,
        base_url=public_url(settings),
        max_attempts=settings.webhook_max_attempts,
    )
    return Jobs(service, queue, webhooks, runner)


def webhook_secret(settings: Settings) -> str:
    """The configured secret; without one, a random one per process (callbacks
    are then signed but receivers cannot verify them: the docs say so)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value()
    return _EPHEMERAL


_EPHEMERAL = secrets.token_hex(32)
