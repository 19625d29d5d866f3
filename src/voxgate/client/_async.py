"""The asynchronous client: :class:`AsyncClient` and its resources over
``httpx.AsyncClient``. It mirrors ``_sync.py`` call for call; both build their
requests with ``_ops`` and take their decisions with ``_core`` and ``_shared``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from voxgate.client import _ops as ops
from voxgate.client._core import (
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    FileInput,
    Options,
    RequestSpec,
    _NotGiven,
    error_from_response,
    status_retry,
    transport_retry,
)
from voxgate.client._shared import (
    PathLike,
    ProgressTracker,
    aiter_pages,
    check_event_stream,
    download_plan,
    events_timeout,
    job_id_of,
    parse_event,
    part_path,
    session_settings,
    stream_failure,
)
from voxgate.client._sse import SSEDecoder
from voxgate.client.errors import APIConnectionError, APIStatusError
from voxgate.client.session import AsyncSession
from voxgate.client.types import AudioInfo, Job, Page, SpeechResult, Voice

__all__ = ["AsyncClient", "AsyncSpeechStream"]


class AsyncClient:
    """An asyncio voxgate client; the same API as :class:`~voxgate.client.Client`
    with ``await`` (and ``async for`` / ``async with`` for streams and lists)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        initial_backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 60.0,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._options = Options.build(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._options.timeout)
        self.speech = AsyncSpeech(self)
        self.voices = AsyncVoices(self)
        self.jobs = AsyncJobs(self)

    @property
    def base_url(self) -> str:
        return self._options.base_url

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(self, spec: RequestSpec, *, stream: bool = False) -> httpx.Response:
        """Send with retries (see ``Client._send``)."""
        policy = self._options.policy
        attempt = 0
        while True:
            try:
                request = self._http.build_request(
                    spec.method, self._options.url(spec.path), **self._options.request_kwargs(spec)
                )
                response = await self._http.send(request, stream=True)
                if spec.answers(response.status_code):
                    if not stream:
                        try:
                            await response.aread()
                        finally:
                            await response.aclose()
                    return response
            except httpx.TransportError as exc:
                error, delay = transport_retry(policy, spec, attempt, exc)
                if delay is None:
                    raise error from exc
                await asyncio.sleep(delay)
                attempt += 1
                continue
            try:
                await response.aread()
            except httpx.TransportError:
                pass  # the status is enough
            finally:
                await response.aclose()
            status_error = error_from_response(response)
            delay = status_retry(policy, spec, attempt, status_error)
            if delay is None:
                raise status_error
            await asyncio.sleep(delay)
            attempt += 1

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Call a route the SDK does not wrap (the admin API, the audit log...)
        with this client's credentials, retries and typed errors. Returns the
        response, its body read. ``idempotent`` (default: true for GET, HEAD,
        PUT, DELETE) allows a retry once the request may have arrived."""
        spec = ops.request(
            method, path, params=params, json=json, headers=headers, idempotent=idempotent
        )
        return await self._send(spec)

    async def tts(
        self,
        text: str,
        *,
        mode: str | None = None,
        speaker: str | None = None,
        instruct: str | None = None,
        reference_audio: FileInput | None = None,
        reference_text: str | None = None,
        engine: str | None = None,
        language: str | None = None,
        speed: float | None = None,
        pitch: float | None = None,
        volume: float | None = None,
        format: str = "wav",
        sample_rate: int | None = None,
        seed: int | None = None,
        priority: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> SpeechResult:
        """Native ``/v1/tts`` (see ``Client.tts``)."""
        spec = ops.tts(
            text=text, mode=mode, speaker=speaker, instruct=instruct,
            reference_audio=reference_audio, reference_text=reference_text, engine=engine,
            language=language, speed=speed, pitch=pitch, volume=volume, format=format,
            sample_rate=sample_rate, seed=seed, stream=False, priority=priority,
            extra_body=extra_body, extra_headers=extra_headers,
        )  # fmt: skip
        return SpeechResult.from_response(await self._send(spec), format)

    def tts_stream(
        self,
        text: str,
        *,
        mode: str | None = None,
        speaker: str | None = None,
        instruct: str | None = None,
        reference_audio: FileInput | None = None,
        reference_text: str | None = None,
        engine: str | None = None,
        language: str | None = None,
        speed: float | None = None,
        pitch: float | None = None,
        volume: float | None = None,
        format: str = "wav",
        sample_rate: int | None = None,
        seed: int | None = None,
        priority: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> AsyncSpeechStream:
        """:meth:`tts`, streamed: ``async with client.tts_stream(...) as s``."""
        spec = ops.tts(
            text=text, mode=mode, speaker=speaker, instruct=instruct,
            reference_audio=reference_audio, reference_text=reference_text, engine=engine,
            language=language, speed=speed, pitch=pitch, volume=volume, format=format,
            sample_rate=sample_rate, seed=seed, stream=True, priority=priority,
            extra_body=extra_body, extra_headers=extra_headers,
        )  # fmt: skip
        return AsyncSpeechStream(self, spec, format)

    async def healthz(self) -> dict[str, Any]:
        return ops.health(await self._send(ops.healthz()))

    async def readyz(self) -> dict[str, Any]:
        """A 503 (not ready) is returned, not raised."""
        return ops.health(await self._send(ops.readyz()))


class AsyncSpeechStream:
    """Audio as it is synthesized (see ``SpeechStream``): ``async with`` it, or
    ``await stream.open()``, and ``async for chunk in stream``."""

    def __init__(self, client: AsyncClient, spec: RequestSpec, default_format: str) -> None:
        self._client = client
        self._spec = spec
        self._default_format = default_format
        self._response: httpx.Response | None = None
        self._info: AudioInfo | None = None
        self.bytes_received = 0

    async def open(self) -> AsyncSpeechStream:
        if self._response is None:
            self._response = await self._client._send(self._spec, stream=True)
            self._info = AudioInfo.from_headers(self._response.headers, self._default_format)
        return self

    @property
    def info(self) -> AudioInfo:
        """Known once open (after ``async with`` or ``await open()``)."""
        if self._info is None:
            raise RuntimeError("open the stream first: async with, or await stream.open()")
        return self._info

    @property
    def sample_rate(self) -> int | None:
        return self.info.sample_rate

    @property
    def format(self) -> str:
        return self.info.format

    @property
    def request_id(self) -> str | None:
        return self.info.request_id

    async def iter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        response = (await self.open())._response
        assert response is not None
        try:
            async for chunk in response.aiter_bytes(chunk_size):
                self.bytes_received += len(chunk)
                yield chunk
        except httpx.TransportError as exc:
            raise stream_failure(exc, self.bytes_received, self.request_id) from exc
        finally:
            await response.aclose()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_bytes()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_bytes()])

    async def stream_to_file(self, path: PathLike) -> AudioInfo:
        """Write the audio to ``path`` as it arrives; a broken stream removes
        the partial file and raises."""
        out = Path(path)
        file = await asyncio.to_thread(out.open, "wb")
        try:
            async for chunk in self.iter_bytes():
                file.write(chunk)
        except BaseException:
            file.close()
            await asyncio.to_thread(out.unlink, missing_ok=True)
            raise
        file.close()
        return self.info

    async def close(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> AsyncSpeechStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncSpeech:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        input: str,
        voice: str | None = None,
        model: str | None = None,
        response_format: str = "mp3",
        speed: float | None = None,
        instructions: str | None = None,
        sample_rate: int | None = None,
        language: str | None = None,
        priority: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> SpeechResult:
        spec = ops.speech(
            input=input, voice=voice, model=model, response_format=response_format,
            speed=speed, instructions=instructions, sample_rate=sample_rate,
            language=language, priority=priority, extra_body=extra_body,
            extra_headers=extra_headers,
        )  # fmt: skip
        return SpeechResult.from_response(await self._client._send(spec), response_format)

    def stream(
        self,
        *,
        input: str,
        voice: str | None = None,
        model: str | None = None,
        response_format: str = "mp3",
        speed: float | None = None,
        instructions: str | None = None,
        sample_rate: int | None = None,
        language: str | None = None,
        priority: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> AsyncSpeechStream:
        """``async with client.speech.stream(...) as s: async for chunk in s: ...``"""
        spec = ops.speech(
            input=input, voice=voice, model=model, response_format=response_format,
            speed=speed, instructions=instructions, sample_rate=sample_rate,
            language=language, priority=priority, extra_body=extra_body,
            extra_headers=extra_headers,
        )  # fmt: skip
        return AsyncSpeechStream(self._client, spec, response_format)

    def session(
        self,
        *,
        voice: str | None = None,
        format: str = "pcm",
        model: str | None = None,
        engine: str | None = None,
        mode: str | None = None,
        instruct: str | None = None,
        language: str | None = None,
        speed: float | None = None,
        sample_rate: int | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> AsyncSession:
        """A WebSocket session (``async with client.speech.session(...) as s``)."""
        config = ops.session_config(
            voice=voice, model=model, engine=engine, mode=mode, instruct=instruct,
            language=language, speed=speed, format=format, sample_rate=sample_rate,
            extra=extra_config,
        )  # fmt: skip
        return AsyncSession(session_settings(self._client._options), config)


class AsyncVoices:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def register(
        self,
        audio_sample: FileInput,
        *,
        name: str,
        consent: str,
        prompt_text: str | None = None,
        language: str | None = None,
        engine: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> Voice:
        spec = ops.voice_register(
            audio_sample=audio_sample, name=name, consent=consent, prompt_text=prompt_text,
            language=language, engine=engine, tags=tags,
        )  # fmt: skip
        return ops.voice(await self._client._send(spec))

    async def list_page(
        self,
        *,
        limit: int = 100,
        after: str | None = None,
        type: str | None = None,
        engine: str | None = None,
        language: str | None = None,
    ) -> Page[Voice]:
        spec = ops.voice_list(limit=limit, after=after, type=type, engine=engine, language=language)
        return ops.voice_page(await self._client._send(spec))

    async def list(
        self,
        *,
        type: str | None = None,
        engine: str | None = None,
        language: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Voice]:
        """``async for voice in client.voices.list()``: page by page."""
        pages = aiter_pages(
            lambda after: self.list_page(
                limit=page_size, after=after, type=type, engine=engine, language=language
            )
        )
        async for voice in pages:
            yield voice

    async def get(self, voice_id: str) -> Voice:
        return ops.voice(await self._client._send(ops.voice_get(voice_id)))

    async def update(
        self,
        voice_id: str,
        *,
        name: str | _NotGiven = NOT_GIVEN,
        prompt_text: str | _NotGiven = NOT_GIVEN,
        language: str | _NotGiven = NOT_GIVEN,
        tags: Sequence[str] | _NotGiven = NOT_GIVEN,
    ) -> Voice:
        spec = ops.voice_update(
            voice_id, name=name, prompt_text=prompt_text, language=language, tags=tags
        )
        return ops.voice(await self._client._send(spec))

    async def delete(self, voice_id: str) -> bool:
        return ops.voice_deleted(await self._client._send(ops.voice_delete(voice_id)))

    async def sample(self, voice_id: str) -> bytes:
        return (await self._client._send(ops.voice_sample(voice_id))).content

    async def download_sample(self, voice_id: str, path: PathLike) -> Path:
        out = Path(path)
        data = await self.sample(voice_id)
        await asyncio.to_thread(out.write_bytes, data)
        return out


class AsyncJobs:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def submit(
        self,
        text: str | None = None,
        *,
        file: FileInput | None = None,
        voice: str | None = None,
        engine: str | None = None,
        mode: str | None = None,
        instruct: str | None = None,
        language: str | None = None,
        speed: float | None = None,
        pitch: float | None = None,
        volume: float | None = None,
        format: str = "mp3",
        sample_rate: int | None = None,
        seed: int | None = None,
        subtitles: Sequence[str] | str | None = None,
        priority: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> Job:
        spec = ops.job_submit(
            text=text, file=file, voice=voice, engine=engine, mode=mode, instruct=instruct,
            language=language, speed=speed, pitch=pitch, volume=volume, format=format,
            sample_rate=sample_rate, seed=seed, subtitles=subtitles, priority=priority,
            callback_url=callback_url, idempotency_key=idempotency_key, extra_body=extra_body,
        )  # fmt: skip
        return ops.job(await self._client._send(spec))

    async def get(self, job: str | Job) -> Job:
        return ops.job(await self._client._send(ops.job_get(job_id_of(job))))

    async def cancel(self, job: str | Job) -> Job:
        return ops.job(await self._client._send(ops.job_cancel(job_id_of(job))))

    async def list_page(
        self, *, limit: int = 20, after: str | None = None, state: str | None = None
    ) -> Page[Job]:
        spec = ops.job_list(limit=limit, after=after, state=state)
        return ops.job_page(await self._client._send(spec))

    async def list(self, *, state: str | None = None, page_size: int = 20) -> AsyncIterator[Job]:
        pages = aiter_pages(lambda after: self.list_page(limit=page_size, after=after, state=state))
        async for job in pages:
            yield job

    async def events(
        self,
        job: str | Job,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the sync API's signature; bounds reads)
    ) -> AsyncIterator[Job]:
        deadline = None if timeout is None else time.monotonic() + timeout
        spec = ops.job_events(job_id_of(job), events_timeout(deadline))
        response = await self._client._send(spec, stream=True)
        try:
            check_event_stream(response)
            decoder = SSEDecoder()
            try:
                async for line in response.aiter_lines():
                    event = decoder.feed(line)
                    found = parse_event(event) if event else None
                    if found is not None:
                        yield found
                        if found.done:
                            return
            except httpx.TransportError as exc:
                raise stream_failure(exc, 1, None) from exc
            raise APIConnectionError("the job's event stream ended before the job did")
        finally:
            await response.aclose()

    async def wait(
        self,
        job: str | Job,
        *,
        on_progress: Callable[[Job], object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the sync API's signature)
        poll_interval: float = 1.0,
        use_events: bool = True,
    ) -> Job:
        """See ``Jobs.wait``; ``on_progress`` may be a plain or an async function."""
        job_id = job_id_of(job)
        tracker = ProgressTracker(on_progress, timeout)

        async def report(current: Job) -> None:
            if tracker.changed(current):
                assert tracker.on_progress is not None
                result = tracker.on_progress(current)
                if inspect.isawaitable(result):
                    await result

        if use_events:
            try:
                async for current in self.events(job_id, timeout=tracker.remaining()):
                    await report(current)
                    if current.done:
                        return current
                    tracker.check(job_id, current)
            except APIConnectionError:
                pass
            except APIStatusError as error:
                if error.status in (401, 403, 404):
                    raise
        while True:
            current = await self.get(job_id)
            await report(current)
            if current.done:
                return current
            tracker.check(job_id, current)
            remaining = tracker.remaining()
            await asyncio.sleep(
                poll_interval if remaining is None else min(poll_interval, remaining)
            )

    async def download(self, job: str | Job, path: PathLike, *, resume: bool = True) -> Path:
        """See ``Jobs.download``."""
        job_id = job_id_of(job)
        out = Path(path)
        part = part_path(out)
        if not resume:
            await asyncio.to_thread(part.unlink, missing_ok=True)
        policy = self._client._options.policy
        failures = 0
        etag: str | None = None
        while True:
            offset = await asyncio.to_thread(_size, part)
            response = await self._client._send(ops.job_audio(job_id, offset, etag), stream=True)
            try:
                plan = download_plan(response, offset)
                etag = plan.etag or etag
                if plan.restart:
                    await asyncio.to_thread(part.unlink, missing_ok=True)
                    continue
                if not plan.complete:
                    file: IO[bytes] = await asyncio.to_thread(
                        part.open, "ab" if plan.append else "wb"
                    )
                    try:
                        async for chunk in response.aiter_bytes():
                            file.write(chunk)
                    finally:
                        file.close()
                if plan.total is not None and await asyncio.to_thread(_size, part) != plan.total:
                    raise httpx.ReadError("the audio ended early")
            except httpx.TransportError as exc:
                delay = policy.delay(failures)
                if delay is None:
                    raise stream_failure(exc, 1, response.headers.get("x-request-id")) from exc
                failures += 1
                await asyncio.sleep(delay)
                continue
            finally:
                await response.aclose()
            await asyncio.to_thread(part.replace, out)
            return out

    async def subtitles(self, job: str | Job, kind: str = "srt") -> str:
        return (await self._client._send(ops.job_subtitles(job_id_of(job), kind))).text


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
