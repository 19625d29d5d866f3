"""Running one job: segment by segment through the same pipeline as realtime
requests (batch priority, so realtime traffic goes first), checkpointing each
finished segment, then assembling the file and its subtitles.

Resuming is the normal path, not a special case: a runner always starts by
asking which segments are already recorded and synthesizes only the rest. A
runner killed mid-segment leaves no row for that segment (the row is written
after its audio), so it is synthesized again, once; a segment can never be
recorded twice (its primary key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voxgate import errors
from voxgate.audio.encoders import make_encoder
from voxgate.audio.formats import AudioFormat
from voxgate.audio.pcm import from_s16le, to_s16le
from voxgate.engines.base import Mode
from voxgate.errors import EngineError, Overloaded, VoxgateError
from voxgate.jobs import subtitles
from voxgate.jobs.model import Job, JobState, audio_key, segment_key, subtitles_key
from voxgate.jobs.store import JobStore
from voxgate.obs.calls import Call
from voxgate.obs.observer import RequestObserver
from voxgate.pipeline import Pipeline, SynthesisRequest
from voxgate.serving.admission import Priority
from voxgate.store.models import JobSegmentRow

log = logging.getLogger("voxgate.jobs")


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    lease_s: float = 30.0  # a runner that stops renewing for this long is presumed dead
    keep_s: float = 86_400.0  # finished jobs (and their audio) are kept this long
    segment_attempts: int = 3  # engine failures tolerated per segment
    max_segment_chars: int = 400
    webhooks: bool = True


class Cancelled(Exception):
    """The job's owner cancelled it."""


class LeaseLost(Exception):
    """Another runner owns the job now (this one stalled past its lease)."""


class JobRunner:
    def __init__(
        self,
        pipeline: Pipeline,
        store: JobStore,
        config: RunnerConfig,
        observers: Sequence[RequestObserver] = (),
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.config = config
        # metrics and tracing: each segment is reported like a request
        # (route "job:segment"), so characters and audio produced by jobs count
        self.observers: tuple[RequestObserver, ...] = tuple(observers)
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run(self, job: Job) -> JobState:
        """Run a claimed job to its end (or until cancelled or its lease is lost)."""
        cancel = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(job, cancel), name=f"lease-{job.id}")
        try:
            await self._synthesize_missing(job, cancel)
            await self._assemble(job)
            return JobState.SUCCEEDED
        except Cancelled:
            await self._finish(job, JobState.CANCELLED, "cancelled", "cancelled by its owner")
            return JobState.CANCELLED
        except LeaseLost:
            log.warning("job lease lost", extra={"job_id": job.id})
            return JobState.RUNNING
        except VoxgateError as exc:
            await self._finish(job, JobState.FAILED, exc.code, exc.message)
            return JobState.FAILED
        except Exception as exc:
            log.exception("job failed", extra={"job_id": job.id})
            await self._finish(job, JobState.FAILED, errors.INTERNAL_ERROR, repr(exc))
            return JobState.FAILED
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, job: Job, cancel: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            flag = await self.store.renew(job.id, self.owner, self.config.lease_s)
            if flag is None or flag:
                cancel.set()  # lost, or cancelled: the runner looks at why
                return

    async def _check(self, job: Job, cancel: asyncio.Event) -> None:
        if not cancel.is_set():
            return
        current = await self.store.get(job.id)
        if current is not None and current.cancel_requested:
            raise Cancelled
        raise LeaseLost

    async def _synthesize_missing(self, job: Job, cancel: asyncio.Event) -> None:
        texts = await self.store.segments_text(job.id)
        done = {row.index for row in await self.store.done_segments(job.id)}
        for index, text in enumerate(texts):
            if index in done:
                continue
            await self._check(job, cancel)
            pcm, rate = await self._segment(job, text, cancel)
            if not await self.store.add_segment(job, self.owner, index, text, pcm, rate):
                raise LeaseLost

    async def _segment(self, job: Job, text: str, cancel: asyncio.Event) -> tuple[bytes, int]:
        """One segment's audio as 16-bit PCM, retrying engine faults and
        waiting out overload (batch work can wait)."""
        failures = 0
        backoff = 0.5
        while True:
            await self._check(job, cancel)
            try:
                work = asyncio.create_task(self._synthesize(job, text))
                stop = asyncio.create_task(cancel.wait())
                finished, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
                if work not in finished:
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await work
                    await self._check(job, cancel)
                stop.cancel()
                return work.result()
            except Overloaded as exc:
                await asyncio.sleep(min(30.0, exc.retry_after or backoff))
            except EngineError:
                failures += 1
                if failures >= self.config.segment_attempts:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(10.0, backoff * 2)

    async def _synthesize(self, job: Job, text: str) -> tuple[bytes, int]:
        spec = job.spec
        request = SynthesisRequest(
            text=text,
            voice=spec.voice,
            engine=spec.engine,
            mode=Mode(spec.mode) if spec.mode else None,
            instruct=spec.instruct,
            language=spec.language,
            speed=spec.speed,
            pitch=spec.pitch,
            volume=spec.volume,
            format=AudioFormat.PCM,
            sample_rate=spec.sample_rate,
            seed=spec.seed,
            priority=Priority(job.priority),
            request_id=f"{job.id}:{uuid.uuid4().hex[:8]}",
            max_chars=max(self.config.max_segment_chars * 2, 4096),
            tenant=job.tenant,
        )
        report = Call(
            self.observers, route="job:segment", method="JOB", request_id=request.request_id
        )
        report.fields.update(surface="job", job_id=job.id, tenant=job.tenant)
        synthesis = None
        status = 499  # cancelled
        try:
            synthesis = await self.pipeline.prepare(request)
            report.fields["engine"] = synthesis.engine.name
            chunks = [to_s16le(x) async for x in synthesis.pcm()]
            status = 200
            return b"".join(chunks), synthesis.sample_rate
        except VoxgateError as exc:
            status = exc.status
            report.fields["error"] = exc.code
            raise
        finally:
            usage = synthesis.usage if synthesis is not None else None
            if usage is not None:
                report.fields.update(characters=usage.characters, audio_s=usage.audio_seconds)
            report.finish(status, usage)

    async def _assemble(self, job: Job) -> None:
        """The whole file from the recorded segments, encoded once, and its
        subtitles from their exact lengths."""
        rows = await self.store.done_segments(job.id)
        if len(rows) != job.segments_total or [r.index for r in rows] != list(range(len(rows))):
            raise LeaseLost  # someone else's state; do not publish a partial file
        rate = rows[0].sample_rate if rows else (job.spec.sample_rate or 24000)
        fmt = AudioFormat(job.spec.format)
        path = await asyncio.to_thread(self._encode_file, job.id, rows, rate, fmt)
        try:
            cues = subtitles.cues(((r.text, r.samples) for r in rows), rate)
            subs = {
                kind: (subtitles_key(job.id, kind), subtitles.render(kind, cues))
                for kind in ("srt", "vtt")
            }
            ok = await self.store.succeed(
                job.id,
                self.owner,
                result=path,
                result_key=audio_key(job.id, fmt.value),
                subtitles=subs,
                keep_s=self.config.keep_s,
                webhook=bool(job.callback_url) and self.config.webhooks,
            )
            if not ok:
                raise LeaseLost
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    def _encode_file(
        self, job_id: str, rows: list[JobSegmentRow], rate: int, fmt: AudioFormat
    ) -> Path:
        """Encode the segments in order into a local file (in a worker thread:
        a long job's encoding takes seconds of CPU)."""
        fd, name = tempfile.mkstemp(prefix=f".{job_id}-", suffix=f".{fmt.value}")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                encoder = make_encoder(fmt, rate, whole=False)
                try:
                    for row in rows:
                        pcm = self.store.blobs.get(segment_key(job_id, row.index))
                        out.write(encoder.encode(from_s16le(pcm)))
                    out.write(encoder.finish())
                finally:
                    encoder.close()
            if fmt is AudioFormat.WAV:
                _fix_wav_lengths(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def _finish(self, job: Job, state: JobState, code: str, message: str) -> None:
        await self.store.finish_unsuccessfully(
            job.id,
            self.owner,
            state=state,
            code=code,
            message=message,
            keep_s=self.config.keep_s,
            webhook=bool(job.callback_url) and self.config.webhooks,
        )


def _fix_wav_lengths(path: Path) -> None:
    """A streamed WAV header says "unknown length"; a finished file knows it."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(4)
        f.write(struct.pack("<I", min(size - 8, 0xFFFFFFFF)))
        f.seek(40)
        f.write(struct.pack("<I", min(size - 44, 0xFFFFFFFF)))
