"""The gateway's side of the distributed job queue: job ids go to Celery
workers (``jobs/celery_app.py``), and every gateway keeps the queue honest.

Housekeeping, in every gateway (any number may run it at once; each step is
a conditional update in the database): jobs whose runner stopped renewing
its lease go back to ``queued`` and are sent to Celery again; finished jobs
past their keep time are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from voxgate.config import Settings
from voxgate.jobs.celery_app import TASK, make_celery
from voxgate.jobs.model import Job
from voxgate.jobs.store import JobStore

log = logging.getLogger("voxgate.jobs")


class CeleryQueue:
    def __init__(self, settings: Settings, store: JobStore, *, housekeeping_s: float = 5.0) -> None:
        self.celery = make_celery(settings)
        self.store = store
        self.housekeeping_s = housekeeping_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._housekeeping(), name="job-housekeeping")

    async def submit(self, job: Job) -> None:
        await self._send(job.id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _send(self, job_id: str) -> None:
        # kombu's publish blocks on the broker's socket: keep it off the loop
        await asyncio.to_thread(self.celery.send_task, TASK, args=[job_id])

    async def _housekeeping(self) -> None:
        while True:
            try:
                for job_id in await self.store.requeue_expired():
                    log.warning("job requeued: its runner stopped", extra={"job_id": job_id})
                    await self._send(job_id)
                await self.store.expire()
            except Exception:
                log.exception("job housekeeping failed")
            await asyncio.sleep(self.housekeeping_s)
