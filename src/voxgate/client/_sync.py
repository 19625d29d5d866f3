"""The synchronous client: :class:`Client` and its resources over ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

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
    check_event_stream,
    download_plan,
    events_timeout,
    iter_pages,
    job_id_of,
    parse_event,
    part_path,
    session_settings,
    stream_failure,
)
from voxgate.client._sse import SSEDecoder
from voxgate.client.errors import APIConnectionError, APIStatusError
from voxgate.client.session import Session
from voxgate.client.types import AudioInfo, Job, Page, SpeechResult, Voice

__all__ = ["Client", "SpeechStream"]


class Client:
    """A synchronous voxgate client.

    ``base_url`` is the server's root (``http://host:8080``; a trailing ``/v1``
    is accepted); ``api_key`` is sent as ``Authorization: Bearer`` (default:
    ``$VOXGATE_API_KEY``). Requests refused with 429/503, or sent into a
    failed connection, are retried up to ``max_retries`` times with
    exponential backoff and jitter, waiting at least the server's
    ``Retry-After``. Use it as a context manager, or call :meth:`close`.
    """

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
        http_client: httpx.Client | None = None,
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
        self._http = http_client or httpx.Client(timeout=self._options.timeout)
        self.speech = Speech(self)
        self.voices = Voices(self)
        self.jobs = Jobs(self)

    @property
    def base_url(self) -> str:
        return self._options.base_url

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _send(self, spec: RequestSpec, *, stream: bool = False) -> httpx.Response:
        """Send with retries. An error status raises its typed error; with
        ``stream`` the body is left unread (the caller closes the response)."""
        policy = self._options.policy
        attempt = 0
        while True:
            try:
                request = self._http.build_request(
                    spec.method, self._options.url(spec.path), **self._options.request_kwargs(spec)
                )
                response = self._http.send(request, stream=True)
                if spec.answers(response.status_code):
                    if not stream:
                        try:
                            response.read()
                        finally:
                            response.close()
                    return response
            except httpx.TransportError as exc:
                error, delay = transport_retry(policy, spec, attempt, exc)
                if delay is None:
                    raise error from exc
                time.sleep(delay)
                attempt += 1
                continue
            try:
                response.read()
            except httpx.TransportError:
                pass  # the status is enough
            finally:
                response.close()
            status_error = error_from_response(response)
            delay = status_retry(policy, spec, attempt, status_error)
            if delay is None:
                raise status_error
            time.sleep(delay)
            attempt += 1

    def request(
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
        return self._send(spec)

    # -- native speech and health ---------------------------------------------------------

    def tts(
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
        """Native ``/v1/tts``: CosyVoice's modes (``sft``, ``zero_shot``,
        ``cross_lingual``, ``instruct``), a speaker or registered voice id, and a
        one-off ``reference_audio`` prompt (bytes, a path or a binary file;
        sent as multipart)."""
        spec = ops.tts(
            text=text, mode=mode, speaker=speaker, instruct=instruct,
            reference_audio=reference_audio, reference_text=reference_text, engine=engine,
            language=language, speed=speed, pitch=pitch, volume=volume, format=format,
            sample_rate=sample_rate, seed=seed, stream=False, priority=priority,
            extra_body=extra_body, extra_headers=extra_headers,
        )  # fmt: skip
        return SpeechResult.from_response(self._send(spec), format)

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
    ) -> SpeechStream:
        """:meth:`tts`, streamed (``stream: true``): audio as it is synthesized."""
        spec = ops.tts(
            text=text, mode=mode, speaker=speaker, instruct=instruct,
            reference_audio=reference_audio, reference_text=reference_text, engine=engine,
            language=language, speed=speed, pitch=pitch, volume=volume, format=format,
            sample_rate=sample_rate, seed=seed, stream=True, priority=priority,
            extra_body=extra_body, extra_headers=extra_headers,
        )  # fmt: skip
        return SpeechStream(self, spec, format)

    def healthz(self) -> dict[str, Any]:
        """``GET /healthz``: the process is alive (raises if not reachable)."""
        return ops.health(self._send(ops.healthz()))

    def readyz(self) -> dict[str, Any]:
        """``GET /readyz``: ``{"status": "ready" | "not_ready", "engines": {...}}``.
        A 503 (not ready) is returned, not raised."""
        return ops.health(self._send(ops.readyz()))


class SpeechStream:
    """Audio as it is synthesized. The request is sent on :meth:`open` (or on
    entering ``with``, or on the first iteration); the response headers, and
    so :attr:`info`, are known before the first chunk. Refusals before the
    audio starts (429/503) are retried; a stream that breaks afterwards raises
    :class:`~voxgate.client.errors.IncompleteStreamError` and is never retried."""

    def __init__(self, client: Client, spec: RequestSpec, default_format: str) -> None:
        self._client = client
        self._spec = spec
        self._default_format = default_format
        self._response: httpx.Response | None = None
        self._info: AudioInfo | None = None
        self.bytes_received = 0

    def open(self) -> SpeechStream:
        if self._response is None:
            self._response = self._client._send(self._spec, stream=True)
            self._info = AudioInfo.from_headers(self._response.headers, self._default_format)
        return self

    @property
    def info(self) -> AudioInfo:
        """Format, sample rate, engine, voice, warnings and request id."""
        self.open()
        assert self._info is not None
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

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        response = self.open()._response
        assert response is not None
        try:
            for chunk in response.iter_bytes(chunk_size):
                self.bytes_received += len(chunk)
                yield chunk
        except httpx.TransportError as exc:
            raise stream_failure(exc, self.bytes_received, self.request_id) from exc
        finally:
            response.close()

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_bytes()

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def stream_to_file(self, path: PathLike) -> AudioInfo:
        """Write the audio to ``path`` as it arrives. If the stream breaks,
        the partial file is removed and the error raised: never a short file
        that looks complete."""
        out = Path(path)
        try:
            with out.open("wb") as file:
                for chunk in self.iter_bytes():
                    file.write(chunk)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return self.info

    def close(self) -> None:
        if self._response is not None:
            self._response.close()

    def __enter__(self) -> SpeechStream:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Speech:
    """OpenAI-compatible speech (``/v1/audio/speech``) and WebSocket sessions."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
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
        """The whole file, with what the headers said (rate, engine, voice, warnings)."""
        spec = ops.speech(
            input=input, voice=voice, model=model, response_format=response_format,
            speed=speed, instructions=instructions, sample_rate=sample_rate,
            language=language, priority=priority, extra_body=extra_body,
            extra_headers=extra_headers,
        )  # fmt: skip
        return SpeechResult.from_response(self._client._send(spec), response_format)

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
    ) -> SpeechStream:
        """The audio as it is synthesized: ``with client.speech.stream(...) as s:
        for chunk in s: ...`` (``s.info`` is known before the first chunk)."""
        spec = ops.speech(
            input=input, voice=voice, model=model, response_format=response_format,
            speed=speed, instructions=instructions, sample_rate=sample_rate,
            language=language, priority=priority, extra_body=extra_body,
            extra_headers=extra_headers,
        )  # fmt: skip
        return SpeechStream(self._client, spec, response_format)

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
    ) -> Session:
        """A WebSocket session: send text as it comes, read audio meanwhile
        (see :class:`~voxgate.client.session.Session`). Opened on ``with``."""
        config = ops.session_config(
            voice=voice, model=model, engine=engine, mode=mode, instruct=instruct,
            language=language, speed=speed, format=format, sample_rate=sample_rate,
            extra=extra_config,
        )  # fmt: skip
        return Session(session_settings(self._client._options), config)


class Voices:
    """The voice library (docs/voices.md)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def register(
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
        """Register a voice from 3-15 s of speech (bytes, a path or a binary
        file). The answer carries the ``intake`` report and ``notes``."""
        spec = ops.voice_register(
            audio_sample=audio_sample, name=name, consent=consent, prompt_text=prompt_text,
            language=language, engine=engine, tags=tags,
        )  # fmt: skip
        return ops.voice(self._client._send(spec))

    def list_page(
        self,
        *,
        limit: int = 100,
        after: str | None = None,
        type: str | None = None,
        engine: str | None = None,
        language: str | None = None,
    ) -> Page[Voice]:
        spec = ops.voice_list(limit=limit, after=after, type=type, engine=engine, language=language)
        return ops.voice_page(self._client._send(spec))

    def list(
        self,
        *,
        type: str | None = None,
        engine: str | None = None,
        language: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Voice]:
        """Every voice (built-in speakers first, then registered ones), page
        by page as the iteration goes."""
        yield from iter_pages(
            lambda after: self.list_page(
                limit=page_size, after=after, type=type, engine=engine, language=language
            )
        )

    def get(self, voice_id: str) -> Voice:
        return ops.voice(self._client._send(ops.voice_get(voice_id)))

    def update(
        self,
        voice_id: str,
        *,
        name: str | _NotGiven = NOT_GIVEN,
        prompt_text: str | _NotGiven = NOT_GIVEN,
        language: str | _NotGiven = NOT_GIVEN,
        tags: Sequence[str] | _NotGiven = NOT_GIVEN,
    ) -> Voice:
        """Change only the fields given; ``prompt_text=""`` clears the transcript."""
        spec = ops.voice_update(
            voice_id, name=name, prompt_text=prompt_text, language=language, tags=tags
        )
        return ops.voice(self._client._send(spec))

    def delete(self, voice_id: str) -> bool:
        """Delete the voice, its prompt audio and every engine's features for it."""
        return ops.voice_deleted(self._client._send(ops.voice_delete(voice_id)))

    def sample(self, voice_id: str) -> bytes:
        """The normalized prompt as stored (16-bit mono WAV)."""
        return self._client._send(ops.voice_sample(voice_id)).content

    def download_sample(self, voice_id: str, path: PathLike) -> Path:
        out = Path(path)
        out.write_bytes(self.sample(voice_id))
        return out


class Jobs:
    """Long text as background jobs (docs/jobs.md)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(
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
        """Queue ``text`` (or a UTF-8 ``file``). An ``idempotency_key`` is
        generated when not given, so retries of this call never make a second job."""
        spec = ops.job_submit(
            text=text, file=file, voice=voice, engine=engine, mode=mode, instruct=instruct,
            language=language, speed=speed, pitch=pitch, volume=volume, format=format,
            sample_rate=sample_rate, seed=seed, subtitles=subtitles, priority=priority,
            callback_url=callback_url, idempotency_key=idempotency_key, extra_body=extra_body,
        )  # fmt: skip
        return ops.job(self._client._send(spec))

    def get(self, job: str | Job) -> Job:
        return ops.job(self._client._send(ops.job_get(job_id_of(job))))

    def cancel(self, job: str | Job) -> Job:
        """Cancel (a queued job at once, a running one within its segment)."""
        return ops.job(self._client._send(ops.job_cancel(job_id_of(job))))

    def list_page(
        self, *, limit: int = 20, after: str | None = None, state: str | None = None
    ) -> Page[Job]:
        return ops.job_page(self._client._send(ops.job_list(limit=limit, after=after, state=state)))

    def list(self, *, state: str | None = None, page_size: int = 20) -> Iterator[Job]:
        """Your jobs, newest first, page by page as the iteration goes."""
        yield from iter_pages(
            lambda after: self.list_page(limit=page_size, after=after, state=state)
        )

    def events(self, job: str | Job, *, timeout: float | None = None) -> Iterator[Job]:
        """The job as it changes (server-sent events), ending with the final job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        spec = ops.job_events(job_id_of(job), events_timeout(deadline))
        response = self._client._send(spec, stream=True)
        try:
            check_event_stream(response)
            decoder = SSEDecoder()
            try:
                for line in response.iter_lines():
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
            response.close()

    def wait(
        self,
        job: str | Job,
        *,
        on_progress: Callable[[Job], object] | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        use_events: bool = True,
    ) -> Job:
        """Block until the job ends and return it (check ``job.state``).
        ``on_progress(job)`` is called whenever its state or progress changes.
        Follows the server-sent events; if they are not available, or the
        connection drops, polls ``GET /v1/jobs/{id}`` every ``poll_interval`` s.
        Raises :class:`WaitTimeoutError` after ``timeout`` seconds."""
        job_id = job_id_of(job)
        tracker = ProgressTracker(on_progress, timeout)
        if use_events:
            try:
                for current in self.events(job_id, timeout=tracker.remaining()):
                    tracker.report(current)
                    if current.done:
                        return current
                    tracker.check(job_id, current)
            except APIConnectionError:
                pass  # fall back to polling
            except APIStatusError as error:
                if error.status in (401, 403, 404):
                    raise
        while True:
            current = self.get(job_id)
            tracker.report(current)
            if current.done:
                return current
            tracker.check(job_id, current)
            remaining = tracker.remaining()
            time.sleep(poll_interval if remaining is None else min(poll_interval, remaining))

    def download(self, job: str | Job, path: PathLike, *, resume: bool = True) -> Path:
        """Stream the job's audio to ``path``. Bytes go to ``<path>.part``
        first; if the connection breaks, the download continues from where it
        stopped with a ``Range`` request (also across calls, with ``resume``).
        The file appears at ``path`` only when complete."""
        job_id = job_id_of(job)
        out = Path(path)
        part = part_path(out)
        if not resume:
            part.unlink(missing_ok=True)
        policy = self._client._options.policy
        failures = 0
        etag: str | None = None
        while True:
            offset = part.stat().st_size if part.exists() else 0
            response = self._client._send(ops.job_audio(job_id, offset, etag), stream=True)
            try:
                plan = download_plan(response, offset)
                etag = plan.etag or etag
                if plan.restart:
                    part.unlink(missing_ok=True)
                    continue
                if not plan.complete:
                    with part.open("ab" if plan.append else "wb") as file:
                        for chunk in response.iter_bytes():
                            file.write(chunk)
                if plan.total is not None and part.stat().st_size != plan.total:
                    raise httpx.ReadError("the audio ended early")
            except httpx.TransportError as exc:
                delay = policy.delay(failures)
                if delay is None:
                    raise stream_failure(exc, 1, response.headers.get("x-request-id")) from exc
                failures += 1
                time.sleep(delay)
                continue
            finally:
                response.close()
            part.replace(out)
            return out

    def subtitles(self, job: str | Job, kind: str = "srt") -> str:
        """The job's subtitles, ``srt`` or ``vtt``: one cue per segment."""
        return self._client._send(ops.job_subtitles(job_id_of(job), kind)).text
