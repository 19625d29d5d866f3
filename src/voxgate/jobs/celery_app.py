"""Jobs on Celery workers (the distributed mode): ``voxgate celery-worker``.

Celery carries job ids, not jobs: the database stays the one source of truth
for a job's state and its finished segments, and the same
:class:`~voxgate.jobs.runner.JobRunner` runs it as in the embedded mode. So a
message delivered twice, late, or after the job was cancelled is harmless:
the task claims the job in the database first and does nothing if it cannot.

Delivery guarantees come from two layers:

* Celery with ``acks_late`` and ``reject_on_worker_lost``: a task whose
  worker dies before finishing is not acknowledged and is delivered again
  (at once when a pool child dies; after the broker's visibility timeout when
  the whole worker is killed);
* the job's lease in the database: a runner that stops renewing loses the job
  after ``VOXGATE_JOB_LEASE_S``, and every gateway's housekeeping puts such
  jobs back in the queue and sends them to Celery again. A job therefore
  continues on another worker within about one lease period, whatever died.

Each worker process builds one runtime (database, engines, pipeline) on an
asyncio loop in a background thread, once, and runs every task on it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task

from voxgate.config import Settings, load_settings
from voxgate.obs.logging import configure_logging

log = logging.getLogger("voxgate.jobs")

TASK = "voxgate.jobs.run"
QUEUE = "voxgate.jobs"


def make_celery(settings: Settings) -> Celery:
    broker = settings.celery_broker_url or settings.redis_url
    if not broker:
        raise ValueError(
            "the celery job backend needs a broker: set VOXGATE_CELERY_BROKER_URL "
            "or VOXGATE_REDIS_URL"
        )
    app = Celery("voxgate", broker=broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a long job must not hold others hostage
        task_default_queue=QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout_s,
            "global_keyprefix": settings.redis_prefix + "celery:",
        },
        worker_hijack_root_logger=False,
    )
    return app


class _Runtime:
    """One event loop thread per worker process with the parts a job needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._ready: Future[None] = asyncio.run_coroutine_threadsafe(self._build(), self.loop)

    async def _build(self) -> None:
        from voxgate.asr.base import build_transcriber
        from voxgate.engines.registry import EngineRegistry
        from voxgate.jobs.runner import JobRunner
        from voxgate.jobs.setup import runner_config
        from voxgate.jobs.store import JobStore
        from voxgate.pipeline import Pipeline
        from voxgate.serving.redis import RedisConnection
        from voxgate.store.blobs import LocalBlobStore
        from voxgate.store.db import Database
        from voxgate.voices.features import BlobFeatureStore
        from voxgate.voices.library import VoiceLibrary

        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        redis = None
        if settings.redis_url:
            redis = RedisConnection(settings.redis_url, settings.redis_prefix)
        registry = EngineRegistry.from_settings(settings)
        db = Database(settings.db_url)
        await db.migrate()
        blobs = LocalBlobStore(settings.blob_path)
        features = BlobFeatureStore(blobs)
        for engine in registry:
            engine.features = features
        library = VoiceLibrary(db, blobs, settings, registry, build_transcriber(settings.asr))
        pipeline = Pipeline(registry, settings, library, redis)
        await registry.start()
        await library.start()
        self.store = JobStore(db, blobs)
        self.runner = JobRunner(pipeline, self.store, runner_config(settings))

    def run(self, job_id: str) -> float | None:
        """Run the job; or the seconds after which to look again (another
        runner holds a live lease on it)."""
        self._ready.result()
        return asyncio.run_coroutine_threadsafe(self._run(job_id), self.loop).result()

    async def _run(self, job_id: str) -> float | None:
        job = await self.store.get(job_id)
        if job is None or job.state.terminal:
            return None
        if job.state.value == "running":
            expires = await self.store.lease_expiry(job_id)
            now = datetime.now(UTC)
            if expires is not None and expires > now:
                return (expires - now).total_seconds() + 1.0
            await self.store.requeue_expired()
        lease = self.runner.config.lease_s
        claimed = await self.store.claim(self.runner.owner, lease, job_id=job_id)
        if claimed is None:
            return None
        log.info("job claimed", extra={"job_id": job_id, "owner": self.runner.owner})
        state = await self.runner.run(claimed)
        log.info("job ended", extra={"job_id": job_id, "state": state.value})
        return None


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def _get_runtime(settings: Settings) -> _Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = _Runtime(settings)
        return _runtime


def worker_app(settings: Settings) -> Celery:
    """The Celery app of a job worker, with the job task registered."""
    celery = make_celery(settings)

    @celery.task(name=TASK, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def run_job(self: Task[Any, Any], job_id: str) -> None:
        again = _get_runtime(settings).run(job_id)
        if again is not None:
            raise self.retry(countdown=again)

    return celery


def main(argv: list[str]) -> None:
    """``voxgate celery-worker``: a Celery worker for jobs (one job at a time
    per process; run several processes for more)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    worker_app(settings).worker_main(
        ["worker", "--loglevel=INFO", "-Q", QUEUE, "--pool=solo", *argv]
    )
