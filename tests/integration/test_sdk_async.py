"""The async SDK (``voxgate.client.AsyncClient``) against real servers: the
scenarios of test_sdk.py with ``await``, ``async for`` and ``async with``, and
the concurrency the async client is for (a request refused while another
holds the engine, text sent while audio is read)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_sdk import (
    CONSENT,
    HOLD_TEXT,
    JOB_SENTENCES,
    JOB_TEXT,
    RATE_LIMIT_RPM,
    Guarded,
    guarded_server,
    main_env,
    retry_records,
)
from tests.support.audio import decode
from tests.support.prompts import SENTENCE, speech, wav_bytes
from voxgate.client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    IncompleteStreamError,
    Job,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    WaitTimeoutError,
)
from voxgate.testing import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("sdk-async"), main_env()) as proc:
        yield proc


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    with guarded_server(tmp_path_factory.mktemp("sdk-async-guarded")) as proc:
        yield proc


@pytest.fixture(scope="module")
def prompt() -> bytes:
    """A real speech prompt (made here: the helper runs its own event loop)."""
    return wav_bytes(speech(), 24000)


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, max_retries=2, initial_backoff=0.05) as c:
        yield c


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)


def recording_client(url: str, *, max_retries: int = 2) -> tuple[AsyncClient, Recorder]:
    recorder = Recorder()
    http = httpx.AsyncClient(event_hooks={"request": [recorder]}, timeout=60)
    client = AsyncClient(url, http_client=http, max_retries=max_retries, initial_backoff=0.05)
    return client, recorder


# -- speech ---------------------------------------------------------------------------------


async def test_speech_whole_and_streamed(client: AsyncClient, tmp_path: Path) -> None:
    text = "The first sentence comes first. The second sentence follows it."
    whole = await client.speech.create(input=text, voice="nova", response_format="pcm")
    assert whole.sample_rate == 24000
    assert whole.engine == "espeak"
    assert whole.request_id

    async with client.speech.stream(input=text, voice="nova", response_format="pcm") as stream:
        assert stream.sample_rate == 24000  # known before the first chunk
        assert stream.bytes_received == 0
        chunks = [chunk async for chunk in stream]
    assert b"".join(chunks) == whole.audio
    assert decode(whole.audio, "pcm").duration > 2.0

    info = await client.speech.stream(input="To a file.", response_format="opus").stream_to_file(
        tmp_path / "out.ogg"
    )
    assert info.format == "opus"
    assert decode((tmp_path / "out.ogg").read_bytes(), "opus").duration > 0.3


async def test_native_tts_with_reference_audio(client: AsyncClient, prompt: bytes) -> None:
    cloned = await client.tts(
        "Spoken in the prompt's manner.", reference_audio=prompt,
        reference_text=SENTENCE, mode="zero_shot", format="wav",
    )  # fmt: skip
    assert "voice_matched" in cloned.warning_codes
    assert decode(cloned.audio, "wav").duration > 0.5
    async with client.tts_stream("Streamed natively.", format="flac") as stream:
        data = await stream.read()
    assert stream.info.format == "flac"
    assert decode(data, "flac").duration > 0.5


async def test_a_broken_stream_is_not_retried(server: ServerProcess) -> None:
    sdk, recorder = recording_client(server.url, max_retries=3)
    async with sdk:
        stream = sdk.speech.stream(
            input="Audio first, then #fault:mid a failure.", model="sim", response_format="pcm"
        )
        with pytest.raises(IncompleteStreamError):
            await stream.read()
        assert stream.bytes_received > 0
    assert len(recorder.requests) == 1


# -- errors and retries ---------------------------------------------------------------------


async def test_typed_errors_are_not_retried(server: ServerProcess) -> None:
    sdk, recorder = recording_client(server.url, max_retries=3)
    async with sdk:
        with pytest.raises(BadRequestError) as bad:
            await sdk.speech.create(input="Hi.", voice="nobody-at-all")
        assert bad.value.code == "voice_not_found"
        assert bad.value.request_id
        with pytest.raises(NotFoundError) as missing:
            await sdk.jobs.get("job_does_not_exist")
        assert missing.value.code == "job_not_found"
    assert len(recorder.requests) == 2


async def test_a_429_is_retried_after_retry_after(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voxgate.client")
    async with AsyncClient(guarded.url, api_key=guarded.limited_key, max_retries=0) as impatient:
        refused: RateLimitError | None = None
        for _ in range(RATE_LIMIT_RPM * 3):  # use up the burst (refills, if slow, included)
            try:
                await impatient.voices.list_page(limit=1, type="audio_sample")
            except RateLimitError as error:
                refused = error
                break
    assert refused is not None
    assert refused.code == "rate_limited"
    assert refused.retry_after is not None
    assert refused.retry_after >= 1

    async with AsyncClient(guarded.url, api_key=guarded.limited_key, max_retries=3) as patient:
        started = time.monotonic()
        page = await patient.voices.list_page(limit=1, type="audio_sample")
        elapsed = time.monotonic() - started
    assert page.has_more is False
    records = retry_records(caplog)
    assert records
    assert all(r.retry_delay >= r.retry_after >= 1 for r in records)  # type: ignore[attr-defined]
    assert elapsed >= sum(r.retry_after for r in records)  # type: ignore[attr-defined]


async def test_a_503_is_retried_while_another_request_holds_the_engine(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voxgate.client")
    async with (
        AsyncClient(guarded.url, api_key=guarded.key, max_retries=0) as holder,
        AsyncClient(guarded.url, api_key=guarded.key, max_retries=0) as impatient,
        AsyncClient(guarded.url, api_key=guarded.key, max_retries=10) as patient,
    ):
        async with holder.speech.stream(input=HOLD_TEXT, response_format="pcm") as held:
            # the only slot is taken: a request without retries is refused at once
            with pytest.raises(OverloadedError) as refused:
                await impatient.speech.create(input="Me too.", response_format="pcm")
            assert refused.value.retry_after is not None
            assert refused.value.retry_after >= 1
            started = time.monotonic()
            patient_task = asyncio.create_task(
                patient.speech.create(input="Me too.", response_format="pcm")
            )
            held_audio = await held.read()
        result = await patient_task
        elapsed = time.monotonic() - started
    assert decode(held_audio, "pcm").duration > 2.5
    assert decode(result.audio, "pcm").duration > 0.3
    records = retry_records(caplog)
    assert records
    assert all("engine_overloaded" in r.getMessage() for r in records)
    assert all(r.retry_delay >= r.retry_after >= 1 for r in records)  # type: ignore[attr-defined]
    assert elapsed >= sum(r.retry_after for r in records)  # type: ignore[attr-defined]


async def test_authentication_error(guarded: Guarded) -> None:
    async with AsyncClient(guarded.url, api_key="vg_wrong_key") as wrong:
        with pytest.raises(AuthenticationError) as bad:
            await wrong.speech.create(input="Hi.")
        assert (bad.value.status, bad.value.code) == (401, "invalid_api_key")
        assert (await wrong.readyz())["status"] == "ready"
    async with AsyncClient(guarded.url, api_key=guarded.key) as ok:
        assert (await ok.healthz()) == {"status": "ok"}


# -- voices and jobs ------------------------------------------------------------------------


async def test_voice_round_trip(client: AsyncClient, prompt: bytes, tmp_path: Path) -> None:
    voice = await client.voices.register(
        prompt, name="async fox", consent=CONSENT, prompt_text=SENTENCE
    )
    assert voice.intake is not None
    assert voice.intake.seconds is not None
    assert voice.intake.seconds >= 3
    assert voice.id in [v.id async for v in client.voices.list(type="audio_sample", page_size=1)]
    changed = await client.voices.update(voice.id, tags=["async"])
    assert changed.tags == ["async"]
    assert changed.name == "async fox"
    assert (await client.voices.get(voice.id)).prompt_text == SENTENCE
    path = await client.voices.download_sample(voice.id, tmp_path / "sample.wav")
    assert decode(path.read_bytes(), "wav").duration >= 3
    spoken = await client.speech.create(input="Hi.", voice=voice.id, response_format="mp3")
    assert "voice_matched" in spoken.warning_codes
    assert await client.voices.delete(voice.id) is True
    with pytest.raises(NotFoundError):
        await client.voices.get(voice.id)


async def test_job_round_trip_with_async_progress(client: AsyncClient, tmp_path: Path) -> None:
    job = await client.jobs.submit(JOB_TEXT, engine="sim", format="wav")
    assert job.idempotency_key
    seen: list[Job] = []

    async def on_progress(current: Job) -> None:  # a coroutine callback is awaited
        await asyncio.sleep(0)
        seen.append(current)

    done = await client.jobs.wait(job.id, on_progress=on_progress, timeout=120)
    assert done.succeeded
    assert len({j.progress.segments_done for j in seen}) >= 3
    assert [j.progress.fraction for j in seen] == sorted(j.progress.fraction for j in seen)
    path = await client.jobs.download(done, tmp_path / "chapter.wav")
    assert decode(path.read_bytes(), "wav").duration == pytest.approx(
        done.progress.audio_seconds, abs=0.05
    )
    vtt = await client.jobs.subtitles(done, "vtt")
    assert vtt.count(" --> ") == len(JOB_SENTENCES)
    assert job.id in [j.id async for j in client.jobs.list(page_size=2)]

    polled = await client.jobs.wait(job.id, use_events=False)
    assert polled.id == job.id
    assert polled.succeeded

    long_job = await client.jobs.submit(
        " ".join(f"Async sentence {i} is here to be cancelled." for i in range(30)), engine="sim"
    )
    with pytest.raises(WaitTimeoutError):
        await client.jobs.wait(long_job, timeout=0.5)
    await client.jobs.cancel(long_job)
    assert (await client.jobs.wait(long_job, timeout=60)).state == "cancelled"


# -- WebSocket sessions ---------------------------------------------------------------------


async def test_session_text_sent_while_audio_is_read(client: AsyncClient) -> None:
    first_audio = asyncio.Event()

    async def llm() -> AsyncIterator[str]:
        for word in "Tokens arrive one by one from a model. ".split(" "):
            await asyncio.sleep(0.01)
            yield word + " "
        await asyncio.wait_for(first_audio.wait(), 30)  # audio before the text is done
        yield "And the rest comes later."

    async with client.speech.session(voice="nova", format="pcm", model="sim") as session:
        assert session.request_id
        session.feed(llm())
        chunks: list[bytes] = []
        async for chunk in session:
            first_audio.set()
            chunks.append(chunk)
    assert session.finished
    assert session.audio is not None
    assert session.audio.sample_rate
    assert session.usage is not None
    assert session.usage.characters > 30
    assert session.timings is not None
    assert session.timings.last_text_to_first_audio_ms is not None
    audio = decode(b"".join(chunks), "pcm", session.audio.sample_rate)
    assert audio.duration == pytest.approx(session.usage.audio_seconds, abs=0.05)


async def test_session_cancel_and_errors(client: AsyncClient, guarded: Guarded) -> None:
    async with client.speech.session(format="opus", model="sim") as session:
        await session.send_text(" ".join(f"Sentence {i} goes on and on." for i in range(20)))
        async for _ in session:
            await session.cancel()
    assert session.cancelled
    assert session.bytes_received > 0

    with pytest.raises(BadRequestError) as bad:
        await speak(client, voice="nobody-at-all")
    assert bad.value.code == "voice_not_found"
    async with AsyncClient(guarded.url, api_key="") as anonymous:
        with pytest.raises(AuthenticationError) as unauthenticated:
            await speak(anonymous)
    assert unauthenticated.value.code == "auth_required"


async def speak(client: AsyncClient, **config: str) -> bytes:
    async with client.speech.session(**config) as session:
        await session.send_text("Hello.")
        await session.done()
        return await session.read()
