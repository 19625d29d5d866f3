"""Who runs jobs.

The embedded queue runs them inside the server process: the database is the
queue (a job row in state ``queued``), so a job survives anything the process
survives, including SIGKILL. Workers wake at once when a job is submitted and
otherwise poll, so jobs submitted through another gateway sharing the
database are found too.

The distributed queue (``jobs/celery_app.py``) hands job ids to Celery
workers instead; both run :class:`~voxgate.jobs.runner.JobRunner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Protocol

from voxgate.jobs.model import Job
from voxgate.jobs.runner import JobRunner
from voxgate.jobs.store import JobStore

log = logging.getLogger("voxgate.jobs")


class JobQueue(Protocol):
    async def start(self) -> None: ...
    async def submit(self, job: Job) -> None: ...
    async def close(self) -> None: ...


def _owner_is_dead(owner: str | None) -> bool:
    """Whether a lease owner (``host:pid:nonce``) is a process that died on
    this host; owners on other hosts are left to their lease's expiry."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != os.uname().nodename or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class EmbeddedQueue:
    def __init__(
        self,
        runner: JobRunner,
        store: JobStore,
        *,
        concurrency: int = 1,
        poll_s: float = 1.0,
        housekeeping_s: float = 10.0,
    ) -> None:
        self.runner = runner
        self.store = store
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.housekeeping_s = housekeeping_s
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    async def start(self) -> None:
        requeued = await self.store.requeue_orphans(_owner_is_dead)
        if requeued:
            log.info("jobs resumed after a restart", extra={"jobs": requeued})
        self._tasks = [
            asyncio.create_task(self._work(), name=f"job-worker-{i}")
            for i in range(self.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="job-housekeeping"))

    async def submit(self, job: Job) -> None:
        self._wake.set()

    async def close(self) -> None:
        """Stop taking jobs; give running ones back to the queue at once so a
        restart (or another gateway) resumes them without waiting for a lease
        to run out."""
        self._closing = True
        running = list(self._running)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job_id in running:
            await self.store.release(job_id, self.runner.owner)

    async def _work(self) -> None:
        while not self._closing:
            try:
                job = await self.store.claim(self.runner.owner, self.runner.config.lease_s)
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                continue
            task = asyncio.current_task()
            assert task is not None
            self._running[job.id] = task
            try:
                state = await self.runner.run(job)
                log.info("job ended", extra={"job_id": job.id, "state": state.value})
            finally:
                self._running.pop(job.id, None)

    async def _housekeeping(self) -> None:
        while True:
            try:
                requeued = await self.store.requeue_expired()
                if requeued:
                    log.warning("jobs whose runner stopped were requeued", extra={"jobs": requeued})
                    self._wake.set()
                await self.store.expire()
            except Exception:
                log.exception("job housekeeping failed")
            await asyncio.sleep(self.housekeeping_s)
