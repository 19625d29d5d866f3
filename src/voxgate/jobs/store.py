"""Jobs in the database, their text and audio in the blob store.

Every state change is one conditional UPDATE (``WHERE state = ... AND
lease_owner = ...``), so two runners can never both own a job, on SQLite or
PostgreSQL, and a runner that lost its lease (it stalled, another took over)
finds out at its next write instead of corrupting the job.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from voxgate.jobs.model import Job, JobSpec, JobState, new_job_id, segment_key, text_key
from voxgate.store.blobs import BlobStore
from voxgate.store.db import Database
from voxgate.store.models import JobRow, JobSegmentRow, utcnow


class JobStore:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    # -- callers -----------------------------------------------------------------

    async def create(
        self,
        *,
        tenant: str,
        spec: JobSpec,
        segments: Sequence[str],
        characters: int,
        priority: int,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> tuple[Job, bool]:
        """A new queued job, or the tenant's existing one with the same
        idempotency key (and False: nothing new was created). The caller
        looks the key up first (before charging the quota); the unique index
        settles a submission racing it."""
        job_id = new_job_id()
        payload = json.dumps(list(segments), ensure_ascii=False).encode()
        await asyncio.to_thread(self.blobs.put, text_key(job_id), payload)
        row = JobRow(
            id=job_id,
            tenant=tenant,
            state=JobState.QUEUED.value,
            priority=priority,
            spec=spec.to_json(),
            characters=characters,
            segments_total=len(segments),
            segments_done=0,
            audio_seconds=0.0,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            attempts=0,
            cancel_requested=False,
            webhook_attempts=0,
            created_at=utcnow(),
        )
        try:
            async with self.db.session() as session, session.begin():
                session.add(row)
        except IntegrityError:
            # the same key submitted twice at once: the other one won
            await asyncio.to_thread(self.blobs.delete_prefix, f"jobs/{job_id}/")
            if idempotency_key is not None:
                existing = await self.get_by_idempotency(tenant, idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        return _job(row), True

    async def get(self, job_id: str, tenant: str | None = None) -> Job | None:
        """A job by id; another tenant's job is None, as if it did not exist."""
        async with self.db.session() as session:
            row = await session.get(JobRow, job_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        return _job(row)

    async def page(
        self, tenant: str, *, limit: int, after: Job | None = None, state: str | None = None
    ) -> tuple[list[Job], bool]:
        """Newest first."""
        query = select(JobRow).where(JobRow.tenant == tenant)
        if state is not None:
            query = query.where(JobRow.state == state)
        if after is not None:
            query = query.where(
                or_(
                    JobRow.created_at < after.created_at,
                    and_(JobRow.created_at == after.created_at, JobRow.id < after.id),
                )
            )
        query = query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        return [_job(r) for r in rows[:limit]], len(rows) > limit

    async def segments_text(self, job_id: str) -> list[str]:
        data = await asyncio.to_thread(self.blobs.get, text_key(job_id))
        texts: list[str] = json.loads(data)
        return texts

    async def request_cancel(self, job_id: str, tenant: str) -> Job | None:
        """Cancel: a queued job at once; a running one at its runner's next
        check (between segments, and while one is synthesizing)."""
        async with self.db.session() as session, session.begin():
            row = await session.get(JobRow, job_id, with_for_update=True)
            if row is None or row.tenant != tenant:
                return None
            if row.state == JobState.QUEUED.value:
                row.state = JobState.CANCELLED.value
                row.finished_at = utcnow()
                row.error_code = "cancelled"
            elif row.state == JobState.RUNNING.value:
                row.cancel_requested = True
        return _job(row)

    # -- runners ------------------------------------------------------------------

    async def claim(self, owner: str, lease_s: float, *, job_id: str | None = None) -> Job | None:
        """Take the next queued job (or this one), first by priority then age."""
        for _ in range(5):  # lost races retry with the next candidate
            query = select(JobRow.id).where(JobRow.state == JobState.QUEUED.value)
            if job_id is not None:
                query = query.where(JobRow.id == job_id)
            query = query.order_by(JobRow.priority, JobRow.created_at).limit(1)
            async with self.db.session() as session, session.begin():
                candidate = await session.scalar(query)
                if candidate is None:
                    return None
                now = utcnow()
                result = await session.execute(
                    update(JobRow)
                    .where(JobRow.id == candidate, JobRow.state == JobState.QUEUED.value)
                    .values(
                        state=JobState.RUNNING.value,
                        lease_owner=owner,
                        lease_expires_at=now + timedelta(seconds=lease_s),
                        started_at=func.coalesce(JobRow.started_at, now),
                        attempts=JobRow.attempts + 1,
                    )
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    row = await session.get(JobRow, candidate, populate_existing=True)
                    assert row is not None
                    return _job(row)
        return None

    async def renew(self, job_id: str, owner: str, lease_s: float) -> bool | None:
        """Extend the lease. None: it is no longer ours; else whether a cancel
        was requested."""
        async with self.db.session() as session, session.begin():
            result = await session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.lease_owner == owner,
                    JobRow.state == JobState.RUNNING.value,
                )
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            flag = await session.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))
        return bool(flag)

    async def lease_expiry(self, job_id: str) -> datetime | None:
        async with self.db.session() as session:
            return await session.scalar(select(JobRow.lease_expires_at).where(JobRow.id == job_id))

    async def requeue_expired(self) -> list[str]:
        """Jobs whose runner stopped renewing (it died) go back to the queue."""
        now = utcnow()
        async with self.db.session() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(JobRow.id).where(
                        JobRow.state == JobState.RUNNING.value, JobRow.lease_expires_at < now
                    )
                )
            )
            if ids:
                await session.execute(
                    update(JobRow)
                    .where(JobRow.id.in_(ids), JobRow.state == JobState.RUNNING.value)
                    .values(state=JobState.QUEUED.value, lease_owner=None, lease_expires_at=None)
                )
        return ids

    async def requeue_orphans(self, is_dead: Callable[[str | None], bool]) -> list[str]:
        """At start: running jobs whose owner is known to be dead (a process
        of this host that no longer exists) go back to the queue now, rather
        than after their lease runs out."""
        async with self.db.session() as session, session.begin():
            rows = (
                await session.execute(
                    select(JobRow.id, JobRow.lease_owner).where(
                        JobRow.state == JobState.RUNNING.value
                    )
                )
            ).all()
            ids = [job_id for job_id, owner in rows if is_dead(owner)]
            if ids:
                await session.execute(
                    update(JobRow)
                    .where(JobRow.id.in_(ids), JobRow.state == JobState.RUNNING.value)
                    .values(state=JobState.QUEUED.value, lease_owner=None, lease_expires_at=None)
                )
        return ids

    async def release(self, job_id: str, owner: str) -> None:
        """Give a job back to the queue untouched (a runner shutting down)."""
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == owner)
                .where(JobRow.state == JobState.RUNNING.value)
                .values(state=JobState.QUEUED.value, lease_owner=None, lease_expires_at=None)
            )

    async def done_segments(self, job_id: str) -> list[JobSegmentRow]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(JobSegmentRow)
                .where(JobSegmentRow.job_id == job_id)
                .order_by(JobSegmentRow.index)
            )
            return list(rows)

    async def add_segment(
        self, job: Job, owner: str, index: int, text: str, pcm: bytes, sample_rate: int
    ) -> bool:
        """Record a finished segment: audio first, then the row that makes it
        count. False if it was already recorded, or the job is not ours."""
        await asyncio.to_thread(self.blobs.put, segment_key(job.id, index), pcm)
        samples = len(pcm) // 2
        try:
            async with self.db.session() as session, session.begin():
                owned = await session.execute(
                    update(JobRow)
                    .where(JobRow.id == job.id, JobRow.lease_owner == owner)
                    .where(JobRow.state == JobState.RUNNING.value)
                    .values(
                        segments_done=JobRow.segments_done + 1,
                        audio_seconds=JobRow.audio_seconds + samples / sample_rate,
                    )
                )
                if owned.rowcount != 1:  # type: ignore[attr-defined]
                    return False
                session.add(
                    JobSegmentRow(
                        job_id=job.id,
                        index=index,
                        samples=samples,
                        sample_rate=sample_rate,
                        text=text,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def succeed(
        self,
        job_id: str,
        owner: str,
        *,
        result: Path,
        result_key: str,
        subtitles: dict[str, tuple[str, str]],
        keep_s: float,
        webhook: bool,
    ) -> bool:
        """Store the finished audio and subtitles, and mark the job done."""
        size = await asyncio.to_thread(os.path.getsize, result)
        await asyncio.to_thread(self.blobs.put_file, result_key, result)
        for key, text in subtitles.values():
            await asyncio.to_thread(self.blobs.put, key, text.encode())
        return await self._end(
            job_id, owner, JobState.SUCCEEDED, keep_s, webhook, result_bytes=size
        )

    async def finish_unsuccessfully(
        self,
        job_id: str,
        owner: str,
        *,
        state: JobState,
        code: str,
        message: str,
        keep_s: float,
        webhook: bool,
    ) -> bool:
        return await self._end(
            job_id, owner, state, keep_s, webhook, error_code=code, error_message=message[:2000]
        )

    async def _end(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        keep_s: float,
        webhook: bool,
        **outcome: object,
    ) -> bool:
        """End a job this runner still owns: its state, keep time, callback
        due; then its checkpointed segments go. False if it is not ours."""
        now = utcnow()
        async with self.db.session() as session, session.begin():
            done = await session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == owner)
                .where(JobRow.state == JobState.RUNNING.value)
                .values(
                    state=state.value,
                    finished_at=now,
                    expires_at=now + timedelta(seconds=keep_s),
                    lease_owner=None,
                    lease_expires_at=None,
                    webhook_state="pending" if webhook else None,
                    webhook_next_at=now if webhook else None,
                    **outcome,
                )
            )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await asyncio.to_thread(self.blobs.delete_prefix, f"jobs/{job_id}/segments/")
        return True

    # -- housekeeping ---------------------------------------------------------------

    async def expire(self) -> int:
        """Remove finished jobs kept past their time, with all their files."""
        now = utcnow()
        async with self.db.session() as session, session.begin():
            rows = list(
                await session.scalars(
                    select(JobRow.id).where(JobRow.expires_at.is_not(None), JobRow.expires_at < now)
                )
            )
            for job_id in rows:
                row = await session.get(JobRow, job_id)
                if row is not None:
                    await session.delete(row)
        for job_id in rows:
            await asyncio.to_thread(self.blobs.delete_prefix, f"jobs/{job_id}/")
        return len(rows)

    async def webhooks_due(self, limit: int = 20) -> list[Job]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(JobRow)
                .where(JobRow.webhook_state == "pending", JobRow.webhook_next_at <= utcnow())
                .order_by(JobRow.webhook_next_at)
                .limit(limit)
            )
            return [_job(r) for r in rows]

    async def claim_webhook(self, job_id: str, lease_s: float) -> bool:
        """Take a due delivery (pushing its next attempt past this one's
        timeout), so two dispatchers never post the same attempt."""
        now = utcnow()
        async with self.db.session() as session, session.begin():
            result = await session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.webhook_state == "pending",
                    JobRow.webhook_next_at <= now,
                )
                .values(webhook_next_at=now + timedelta(seconds=lease_s))
            )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def webhook_result(
        self, job_id: str, *, delivered: bool, error: str | None, next_at: datetime | None
    ) -> None:
        async with self.db.session() as session, session.begin():
            row = await session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                return
            row.webhook_attempts += 1
            row.webhook_last_error = error
            if delivered:
                row.webhook_state, row.webhook_next_at = "delivered", None
            elif next_at is None:
                row.webhook_state, row.webhook_next_at = "failed", None
            else:
                row.webhook_next_at = next_at

    async def get_by_idempotency(self, tenant: str, key: str) -> Job | None:
        async with self.db.session() as session:
            row = await session.scalar(
                select(JobRow).where(JobRow.tenant == tenant, JobRow.idempotency_key == key)
            )
        return None if row is None else _job(row)


def _job(row: JobRow) -> Job:
    return Job.from_row(row)
