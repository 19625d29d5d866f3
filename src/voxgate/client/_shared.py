"""Helpers the sync and async resources share: decisions only, no I/O of
their own (the page iterators fetch through the callback they are given)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from voxgate.client import _ops as ops
from voxgate.client._core import Options
from voxgate.client._sse import Event
from voxgate.client.errors import (
    APIConnectionError,
    APITimeoutError,
    IncompleteStreamError,
    WaitTimeoutError,
)
from voxgate.client.session import SessionSettings
from voxgate.client.types import Job, Page

T = TypeVar("T")

PathLike = str | os.PathLike[str]

# The server sends a comment every 15 s on a quiet event stream: twice that
# without a byte means the connection is gone.
EVENTS_READ_TIMEOUT_S = 30.0


def job_id_of(job: str | Job) -> str:
    return job.id if isinstance(job, Job) else job


def next_cursor(page: Page[T]) -> str | None:
    """The ``after`` that fetches the page following ``page``; ``None`` at the
    end (a page without ``last_id`` ends the list too, never a loop)."""
    return page.last_id if page.has_more and page.last_id else None


def iter_pages(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a cursor-paged list, fetching ``fetch(after)`` lazily,
    a page at a time, as the iteration goes."""
    after: str | None = None
    while True:
        page = fetch(after)
        yield from page.data
        after = next_cursor(page)
        if after is None:
            return


async def aiter_pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """:func:`iter_pages` for the async client."""
    after: str | None = None
    while True:
        page = await fetch(after)
        for item in page.data:
            yield item
        after = next_cursor(page)
        if after is None:
            return


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def session_settings(options: Options) -> SessionSettings:
    headers = {
        k: v for k, v in options.headers.items() if k.lower() not in ("user-agent", "accept")
    }
    return SessionSettings(
        url=ops.websocket_url(options.base_url),
        headers=headers,
        policy=options.policy,
        open_timeout=options.open_timeout(),
    )


def stream_failure(
    exc: httpx.TransportError, delivered: int, request_id: str | None
) -> APIConnectionError:
    """A body that broke: incomplete when the caller already has bytes."""
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "broke"
    message = f"the response {what} after {delivered} bytes: {exc or type(exc).__name__}"
    if delivered:
        return IncompleteStreamError(message, request_id=request_id)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(message, request_id=request_id)
    return APIConnectionError(message, request_id=request_id)


def events_timeout(deadline: float | None) -> httpx.Timeout:
    read = EVENTS_READ_TIMEOUT_S
    if deadline is not None:
        read = max(0.1, min(read, deadline - time.monotonic()))
    return httpx.Timeout(10.0, read=read)


def check_event_stream(response: httpx.Response) -> None:
    kind = response.headers.get("content-type", "")
    if not kind.startswith("text/event-stream"):
        raise APIConnectionError(f"expected an event stream, got {kind or 'no content type'}")


def parse_event(event: Event) -> Job | None:
    if event.event not in ("progress", "done"):
        return None
    return Job.from_json(event.json())


class ProgressTracker:
    """Calls ``on_progress`` once per change of state or progress, and keeps
    the deadline of a wait."""

    def __init__(self, on_progress: Callable[[Job], object] | None, timeout: float | None) -> None:
        self.on_progress = on_progress
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._seen: tuple[object, ...] | None = None

    def changed(self, job: Job) -> bool:
        key = (job.state, job.progress.segments_done, job.progress.segments_total)
        if key == self._seen:
            return False
        self._seen = key
        return self.on_progress is not None

    def report(self, job: Job) -> None:
        """For the sync client; the async one awaits what the callback returns."""
        if self.changed(job):
            assert self.on_progress is not None
            self.on_progress(job)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self, job_id: str, job: Job) -> None:
        """Raise once the wait's time is up (the job goes on)."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise WaitTimeoutError(f"job {job_id} is still {job.state} after the wait's timeout")


@dataclass(frozen=True)
class DownloadPlan:
    append: bool  # 206 from where the partial file ends
    restart: bool  # the partial file cannot be continued: start again
    complete: bool  # the partial file is already the whole file
    total: int | None  # the whole file's size, when known
    etag: str | None


def download_plan(response: httpx.Response, offset: int) -> DownloadPlan:
    etag = response.headers.get("etag")
    if response.status_code == 416:
        _, total = ops.content_range(response.headers.get("content-range"))
        done = total is not None and total == offset
        return DownloadPlan(False, not done, done, total, etag)
    if response.status_code == 206:
        first, total = ops.content_range(response.headers.get("content-range"))
        if first != offset:
            return DownloadPlan(False, True, False, total, etag)
        return DownloadPlan(True, False, False, total, etag)
    length = response.headers.get("content-length")
    total = int(length) if length and length.isdigit() else None
    return DownloadPlan(False, False, False, total, etag)
