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
asyncio loop in a background thread, once, and runs every task on it. With
``VOXGATE_CELERY_METRICS_PORT`` that loop also serves ``/metrics`` (the same
series as a gateway's, for the job segments this worker synthesizes) and
``/healthz``, so job workers are scraped and probed like everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import uvicorn
from celery import Celery, Task
from prometheus_client import make_asgi_app
from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from voxgate.config import Settings, load_settings
from voxgate.heap import freeze_startup_heap
from voxgate.obs.logging import configure_logging

if TYPE_CHECKING:
    from voxgate.obs.metrics import Metrics

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
        self._metrics_server: Any = None

    async def _build(self) -> None:
        from voxgate.asr.base import build_transcriber
        from voxgate.engines.registry import EngineRegistry
        from voxgate.jobs.runner import JobRunner
        from voxgate.jobs.setup import runner_config
        from voxgate.jobs.store import JobStore
        from voxgate.obs.metrics import Metrics
        from voxgate.pipeline import Pipeline
        from voxgate.serving.breaker import breaker_factory
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
        registry = EngineRegistry.from_settings(settings, breaker_factory(settings, redis))
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
        observers = []
        if settings.metrics_enabled and settings.celery_metrics_port is not None:
            metrics = Metrics(pipeline, State())  # no cache or HTTP routes here
            observers.append(metrics)
            self._metrics_server = await _serve_metrics(metrics, settings)
        self.runner = JobRunner(pipeline, self.store, runner_config(settings), observers=observers)
        if settings.gc_freeze:
            freeze_startup_heap()

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


async def _serve_metrics(metrics: Metrics, settings: Settings) -> uvicorn.Server | None:
    """``/metrics`` and ``/healthz`` on the runtime's loop: the collectors read
    the pipeline from the thread that changes it, as on a gateway."""
    exposition = make_asgi_app(metrics.registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
            return
        await exposition(scope, receive, send)  # any other path: the metrics

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.celery_metrics_port or 0,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(), name="celery-metrics")
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.02)
    if task.done():  # uvicorn logged why; jobs run on without an endpoint
        with contextlib.suppress(BaseException):
            await task
        log.error("job worker metrics cannot listen on %s:%d", settings.host, config.port)
        return None
    log.info("job worker metrics on http://%s:%d/metrics", settings.host, config.port)
    return server


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
