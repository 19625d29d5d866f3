"""The Python SDK (``voxgate.client``) against real servers over loopback.

Three servers:

* ``server``: the embedded espeak engine (default) and a simulated engine
  ``sim`` slow enough that a job reports progress in several steps;
* ``guarded``: authentication on (admin token, keys made through the admin
  API), one simulated engine with one slot and no queue, so a second
  concurrent request is refused with 503 + ``Retry-After``; and a key with a
  per-minute limit, refused with 429 + ``Retry-After``;
* a closed port, for connection failures.

Audio is decoded with PyAV (tests/support/audio.py), independently of the SDK.
The async client runs the same scenarios in test_sdk_async.py.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import io
import json
import logging
import re
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.audio import decode
from tests.support.prompts import SENTENCE, speech, wav_bytes
from voxgate.client import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    Client,
    IncompleteStreamError,
    Job,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
    VoxgateError,
    WaitTimeoutError,
)
from voxgate.client._core import parse_retry_after
from voxgate.testing import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
CONSENT = "I, Test Speaker, agree that my voice may be used to make this voice."
ADMIN_TOKEN = "sdk-tests-admin-token-that-is-long-enough"
# The job engine: 60 characters per segment, ~0.4 s of engine time per segment
SIM = {"first_chunk_ms": 50, "rtf": 0.15, "chunk_ms": 200, "capacity": 4}
JOB_SENTENCES = [f"This is sentence number {i} of the chapter." for i in range(6)]
JOB_TEXT = " ".join(JOB_SENTENCES)
# The guarded server's engine: one slot, real time (a 50-character text holds it ~3 s)
SLOW_SIM = {"first_chunk_ms": 100, "rtf": 1.0, "chunk_ms": 200, "capacity": 1}
HOLD_TEXT = "This sentence keeps the only slot busy for a while."
RATE_LIMIT_RPM = 20  # a burst of 20, then one request every 3 s


def main_env() -> dict[str, str]:
    engines = {"espeak": {"kind": "espeak"}, "sim": {"kind": "simulated", "options": SIM}}
    return {
        "VOXGATE_ENGINES": json.dumps(engines),
        "VOXGATE_JOB_SEGMENT_CHARS": "60",  # one sentence per job segment
    }


def guarded_env() -> dict[str, str]:
    return {
        "VOXGATE_ENGINES": json.dumps({"sim": {"kind": "simulated", "options": SLOW_SIM}}),
        "VOXGATE_AUTH": "on",
        "VOXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "VOXGATE_QUEUE_SIZE": "0",
        "VOXGATE_CACHE_ENABLED": "false",
    }


@dataclass
class Guarded:
    server: ServerProcess
    key: str  # tenant key, no limits
    limited_key: str  # tenant key, RATE_LIMIT_RPM requests per minute

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("sdk"), main_env()) as proc:
        yield proc


@contextlib.contextmanager
def guarded_server(root: Path) -> Iterator[Guarded]:
    """The guarded server, with tenant ``acme`` and its two keys made through
    the admin API."""
    with ServerProcess(root, guarded_env()) as proc:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        made = httpx.post(f"{proc.url}/v1/admin/tenants", json={"id": "acme"}, headers=admin)
        assert made.status_code == 201, made.text
        keys = []
        for name, rpm in (("app", None), ("limited", RATE_LIMIT_RPM)):
            body = {"tenant": "acme", "name": name, "requests_per_minute": rpm}
            key = httpx.post(f"{proc.url}/v1/admin/keys", json=body, headers=admin)
            assert key.status_code == 201, key.text
            keys.append(key.json()["key"])
        yield Guarded(proc, keys[0], keys[1])


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    with guarded_server(tmp_path_factory.mktemp("sdk-guarded")) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url, max_retries=2, initial_backoff=0.05) as c:
        yield c


class Recorder:
    """httpx event hook: every request the SDK really sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def recording_client(
    url: str, *, max_retries: int = 2, initial_backoff: float = 0.05
) -> tuple[Client, Recorder]:
    recorder = Recorder()
    http = httpx.Client(event_hooks={"request": [recorder]}, timeout=60)
    client = Client(url, http_client=http, max_retries=max_retries, initial_backoff=initial_backoff)
    return client, recorder


def wav_info(data: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getsampwidth(), w.getnframes()


# -- import ---------------------------------------------------------------------------------


def test_the_sdk_imports_none_of_the_servers_dependencies() -> None:
    heavy = ["fastapi", "starlette", "av", "numpy", "sqlalchemy", "torch", "pydantic", "uvicorn",
             "soxr", "grpc", "redis", "celery", "alembic", "jwt"]  # fmt: skip
    code = (
        "import sys, json, voxgate.client\n"
        "c = voxgate.client.Client('http://127.0.0.1:1')\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    assert (ROOT / "src" / "voxgate" / "py.typed").exists()


def test_retry_policy_waits_at_least_retry_after() -> None:
    policy = RetryPolicy(max_retries=3, initial_backoff=0.5, max_backoff=4.0, max_retry_after=30)
    for attempt in range(3):
        ceiling = min(4.0, 0.5 * 2**attempt)
        for _ in range(50):
            delay = policy.delay(attempt)
            assert delay is not None
            assert ceiling / 2 <= delay <= ceiling  # backoff with jitter
            with_header = policy.delay(attempt, retry_after=7)
            assert with_header is not None
            assert 7 <= with_header <= 7.5
    assert policy.delay(3) is None  # retries used up
    assert policy.delay(0, retry_after=3600) is None  # a quota reset: raise, do not sleep
    assert parse_retry_after("2") == 2.0
    when = email.utils.format_datetime(
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30), usegmt=True
    )
    parsed = parse_retry_after(when)
    assert parsed is not None
    assert 25 <= parsed <= 31


# -- speech ---------------------------------------------------------------------------------


def test_speech_whole_file_with_metadata(client: Client) -> None:
    result = client.speech.create(input="Hello from the SDK.", voice="alloy", response_format="wav")
    audio = decode(result.audio, "wav")
    assert result.audio[:4] == b"RIFF"
    assert result.format == "wav"
    assert result.sample_rate == audio.sample_rate == 24000
    assert result.channels == 1
    assert audio.duration > 0.5
    assert result.engine == "espeak"
    assert result.voice
    assert result.request_id
    assert re.fullmatch(r"[A-Za-z0-9._:-]+", result.request_id)

    pcm = client.speech.create(
        input="Hello from the SDK.", voice="alloy", response_format="pcm", sample_rate=16000
    )
    assert pcm.sample_rate == 16000
    assert pcm.content_type == "audio/pcm"
    assert decode(pcm.audio, "pcm", 16000).duration == pytest.approx(audio.duration, abs=0.05)


def test_speech_warnings_are_reported(client: Client) -> None:
    result = client.speech.create(
        input="Slowly now.", voice="alloy", instructions="Speak slowly.", response_format="pcm"
    )
    assert "instructions_applied" in result.warning_codes, result.warnings


def test_speech_streamed_metadata_before_the_first_chunk(client: Client) -> None:
    text = "The first sentence comes first. The second sentence follows it. And a third."
    with client.speech.stream(input=text, voice="onyx", response_format="pcm") as stream:
        # the headers are in: the rate and the speaker are known before any audio
        assert stream.sample_rate == 24000
        assert stream.info.engine == "espeak"
        assert stream.bytes_received == 0
        chunks = list(stream)
    assert len(chunks) >= 1
    streamed = b"".join(chunks)
    assert stream.bytes_received == len(streamed)
    whole = client.speech.create(input=text, voice="onyx", response_format="pcm")
    assert streamed == whole.audio  # streamed and whole decode to the same samples
    assert decode(streamed, "pcm").duration > 2.0


def test_stream_to_file(client: Client, tmp_path: Path) -> None:
    info = client.speech.stream(
        input="Written as it arrives.", response_format="mp3"
    ).stream_to_file(tmp_path / "out.mp3")
    assert info.format == "mp3"
    assert info.content_type == "audio/mpeg"
    assert decode((tmp_path / "out.mp3").read_bytes(), "mp3").duration > 0.5


def test_a_stream_broken_after_audio_is_never_retried(
    server: ServerProcess, tmp_path: Path
) -> None:
    sdk, recorder = recording_client(server.url, max_retries=3, initial_backoff=0.05)
    with sdk:
        stream = sdk.speech.stream(
            input="Some audio first. Then the engine breaks #fault:mid here.",
            model="sim",
            response_format="pcm",
        )
        received: list[bytes] = []
        with pytest.raises(IncompleteStreamError) as failed:
            received.extend(stream)
        assert sum(map(len, received)) > 0  # audio reached the caller first
        assert failed.value.request_id == stream.request_id
        with pytest.raises(IncompleteStreamError):
            sdk.speech.stream(
                input="Broken again #fault:mid now.", model="sim", response_format="wav"
            ).stream_to_file(tmp_path / "short.wav")
        assert not (tmp_path / "short.wav").exists()  # never a short file that looks whole
    assert recorder.paths() == ["/v1/audio/speech", "/v1/audio/speech"]  # one attempt each


def test_native_tts_with_speaker_and_reference_audio(client: Client, tmp_path: Path) -> None:
    zh = client.tts("你好，世界。", speaker="中文女", format="wav")
    assert zh.engine == "espeak"
    assert zh.voice
    assert "%" not in zh.voice
    assert decode(zh.audio, "wav").duration > 0.3

    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(wav_bytes(speech(), 24000))
    for reference in (prompt, prompt.read_bytes()):  # a path, and bytes: multipart either way
        cloned = client.tts(
            "Spoken in the prompt's manner.", mode="cross_lingual", reference_audio=reference,
            format="flac",
        )  # fmt: skip
        assert "voice_matched" in cloned.warning_codes, cloned.warnings
        assert decode(cloned.audio, "flac").duration > 0.5

    with client.tts_stream("Native and streamed.", format="pcm", sample_rate=16000) as stream:
        assert stream.sample_rate == 16000
        assert decode(stream.read(), "pcm", 16000).duration > 0.5


# -- errors ---------------------------------------------------------------------------------


def test_typed_errors_carry_code_hint_and_request_id(server: ServerProcess) -> None:
    sdk, recorder = recording_client(server.url, max_retries=3, initial_backoff=0.05)
    with sdk:
        with pytest.raises(BadRequestError) as bad:
            sdk.speech.create(input="Hi.", voice="nobody-at-all")
        assert bad.value.status == 400
        assert bad.value.code == "voice_not_found"
        assert bad.value.hint
        assert "/v1/audio/voices" in bad.value.hint
        assert bad.value.request_id
        assert "voice_not_found" in str(bad.value)

        with pytest.raises(NotFoundError) as missing:
            sdk.jobs.get("job_does_not_exist")
        assert (missing.value.status, missing.value.code) == (404, "job_not_found")

        with pytest.raises(NotFoundError) as model:
            sdk.speech.create(input="Hi.", model="no-such-model")
        assert model.value.code == "model_not_found"

        with pytest.raises(BadRequestError) as empty:
            sdk.tts("   ")
        assert empty.value.code == "text_empty"
    # 4xx answers are final: each of the four requests was sent exactly once
    assert len(recorder.requests) == 4


def test_connection_errors_are_retried_then_raised() -> None:
    sdk, recorder = recording_client(
        f"http://127.0.0.1:{free_port()}", max_retries=2, initial_backoff=0.05
    )
    with sdk, pytest.raises(APIConnectionError):
        sdk.speech.create(input="Nobody listens.")
    assert len(recorder.requests) == 3  # the first try and two retries


def test_authentication_and_permission_errors(guarded: Guarded) -> None:
    with Client(guarded.url, api_key="") as anonymous:
        with pytest.raises(AuthenticationError) as missing:
            anonymous.speech.create(input="Hi.")
        assert (missing.value.status, missing.value.code) == (401, "auth_required")
        assert anonymous.healthz() == {"status": "ok"}  # probes stay open
        assert anonymous.readyz()["status"] == "ready"
    with Client(guarded.url, api_key="vg_not_a_real_key_at_all") as wrong:
        with pytest.raises(AuthenticationError) as bad:
            wrong.jobs.list_page()
        assert bad.value.code == "invalid_api_key"
    with Client(guarded.url, api_key=guarded.key) as tenant:
        assert tenant.speech.create(input="Hi.", response_format="pcm").audio
        with pytest.raises(PermissionDeniedError) as denied:
            tenant.request("GET", "/v1/admin/tenants")
        assert (denied.value.status, denied.value.code) == (403, "forbidden")
    with Client(guarded.url, api_key=ADMIN_TOKEN) as admin:
        tenants = admin.request("GET", "/v1/admin/tenants").json()
        assert "acme" in json.dumps(tenants)


# -- retries honouring Retry-After ----------------------------------------------------------


def retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "voxgate.client" and hasattr(r, "retry_delay")]


def test_a_429_is_retried_after_retry_after(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voxgate.client")
    with Client(guarded.url, api_key=guarded.limited_key, max_retries=0) as impatient:
        refused: RateLimitError | None = None
        for _ in range(RATE_LIMIT_RPM * 3):  # use up the burst (refills, if slow, included)
            try:
                impatient.jobs.list_page(limit=1)
            except RateLimitError as error:
                refused = error
                break
    assert refused is not None, "never rate limited"
    assert refused.status == 429
    assert refused.code == "rate_limited"
    assert refused.retry_after is not None
    assert refused.retry_after >= 1

    with Client(guarded.url, api_key=guarded.limited_key, max_retries=3) as patient:
        started = time.monotonic()
        page = patient.jobs.list_page(limit=1)
        elapsed = time.monotonic() - started
    assert page.data == [] or isinstance(page.data[0], Job)
    records = retry_records(caplog)
    assert records, "the SDK did not retry"
    waited_for = [r.retry_after for r in records]  # type: ignore[attr-defined]
    assert all(w is not None and w >= 1 for w in waited_for), waited_for
    # it waited at least what the server asked, every time, and then succeeded
    assert all(r.retry_delay >= r.retry_after for r in records)  # type: ignore[attr-defined]
    assert elapsed >= sum(waited_for)


def test_a_503_from_a_saturated_engine_is_retried_after_retry_after(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voxgate.client")
    holder_done = threading.Event()
    holder_started = threading.Event()

    def hold_the_slot() -> None:
        with (
            Client(guarded.url, api_key=guarded.key, max_retries=0) as holder,
            holder.speech.stream(input=HOLD_TEXT, response_format="pcm") as stream,
        ):
            holder_started.set()  # the slot is taken once audio flows
            stream.read()
        holder_done.set()

    thread = threading.Thread(target=hold_the_slot)
    thread.start()
    try:
        assert holder_started.wait(30)
        with (
            Client(guarded.url, api_key=guarded.key, max_retries=0) as impatient,
            pytest.raises(OverloadedError) as refused,
        ):
            impatient.speech.create(input="Me too, please.", response_format="pcm")
        assert isinstance(refused.value, ServiceUnavailableError)
        assert (refused.value.status, refused.value.code) == (503, "engine_overloaded")
        assert refused.value.retry_after is not None
        assert refused.value.retry_after >= 1
        assert not holder_done.is_set()

        with Client(guarded.url, api_key=guarded.key, max_retries=10) as patient:
            started = time.monotonic()
            result = patient.speech.create(input="Me too, please.", response_format="pcm")
            elapsed = time.monotonic() - started
        assert decode(result.audio, "pcm").duration > 0.5
    finally:
        thread.join(60)
    assert holder_done.is_set()
    records = retry_records(caplog)
    assert records, "the SDK never saw the 503"
    assert all("engine_overloaded" in r.getMessage() for r in records)
    assert all(r.retry_delay >= r.retry_after >= 1 for r in records)  # type: ignore[attr-defined]
    assert elapsed >= sum(r.retry_after for r in records)  # type: ignore[attr-defined]


# -- voices ---------------------------------------------------------------------------------


def test_voice_round_trip(client: Client, tmp_path: Path) -> None:
    prompt = wav_bytes(speech(), 24000)
    path = tmp_path / "fox.wav"
    path.write_bytes(prompt)
    first = client.voices.register(
        path, name="fox", consent=CONSENT, prompt_text=SENTENCE, language="en", tags=["sdk", "a"]
    )
    assert first.id.startswith("voice_")
    assert first.type == "audio_sample"
    assert first.prompt_text == SENTENCE
    assert first.tags == ["sdk", "a"]
    assert first.intake is not None
    assert first.intake.container == "wav"
    assert first.intake.seconds is not None
    assert 3 <= first.intake.seconds <= 15
    assert first.intake.original_sample_rate == 24000
    with path.open("rb") as file:  # a binary file object works too
        second = client.voices.register(file, name="fox two", consent=CONSENT, tags=["sdk"])
    assert second.id != first.id

    # list: paginated, page by page as the iteration goes
    registered = list(client.voices.list(type="audio_sample", page_size=1))
    ids = [v.id for v in registered]
    assert first.id in ids
    assert second.id in ids
    assert ids.index(first.id) < ids.index(second.id)  # oldest first
    builtin = next(client.voices.list(type="builtin"))
    assert builtin.type == "builtin"

    got = client.voices.get(first.id)
    assert (got.name, got.consent, got.language) == ("fox", CONSENT, "en")

    changed = client.voices.update(first.id, name="fox renamed", tags=["x"], prompt_text="")
    assert (changed.name, changed.tags) == ("fox renamed", ["x"])
    assert not changed.prompt_text  # "" cleared it
    assert client.voices.get(first.id).language == "en"  # untouched fields stay

    sample = client.voices.download_sample(first.id, tmp_path / "sample.wav")
    rate, width, frames = wav_info(sample.read_bytes())
    assert width == 2
    assert 3 <= frames / rate <= 15

    spoken = client.speech.create(input="Hello.", voice=first.id, response_format="wav")
    assert "voice_matched" in spoken.warning_codes  # espeak imitates pitch and pace
    native = client.tts("Hello.", speaker=second.id, format="wav")
    assert "voice_matched" in native.warning_codes

    assert client.voices.delete(first.id) is True
    assert client.voices.delete(second.id) is True
    with pytest.raises(NotFoundError) as gone:
        client.voices.get(first.id)
    assert gone.value.status == 404
    assert first.id not in [v.id for v in client.voices.list(type="audio_sample")]


def test_a_bad_prompt_is_a_typed_error(client: Client) -> None:
    with pytest.raises(BadRequestError) as bad:
        client.voices.register(b"this is not audio", name="noise", consent=CONSENT)
    assert bad.value.code == "prompt_invalid"
    with pytest.raises(BadRequestError) as no_consent:
        client.voices.register(wav_bytes(speech(), 24000), name="x", consent="")
    assert no_consent.value.code == "consent_required"


# -- jobs -----------------------------------------------------------------------------------


def test_job_round_trip_with_progress(client: Client, tmp_path: Path) -> None:
    job = client.jobs.submit(JOB_TEXT, engine="sim", format="wav", subtitles=["srt", "vtt"])
    assert job.state in ("queued", "running")
    assert job.progress.segments_total == len(JOB_SENTENCES)
    assert job.idempotency_key
    assert job.idempotency_key.startswith("vxsdk-")

    seen: list[Job] = []
    done = client.jobs.wait(job, on_progress=seen.append, timeout=120)
    assert done.state == "succeeded"
    assert done.succeeded
    assert done.done
    fractions = [j.progress.fraction for j in seen]
    assert len({j.progress.segments_done for j in seen}) >= 3, fractions  # several steps
    assert fractions == sorted(fractions)
    assert seen[-1].state == "succeeded"
    assert fractions[-1] == 1.0
    assert done.result is not None

    out = client.jobs.download(job, tmp_path / "chapter.wav")
    audio = out.read_bytes()
    assert not (tmp_path / "chapter.wav.part").exists()
    assert audio == httpx.get(f"{client.base_url}/v1/jobs/{job.id}/audio").content
    rate, _, frames = wav_info(audio)
    assert frames / rate == pytest.approx(done.progress.audio_seconds, abs=0.05)

    srt = client.jobs.subtitles(job.id, "srt")
    vtt = client.jobs.subtitles(job.id, "vtt")
    assert vtt.startswith("WEBVTT")
    assert srt.count(" --> ") == vtt.count(" --> ") == len(JOB_SENTENCES)
    assert JOB_SENTENCES[0] in srt

    assert job.id in [j.id for j in client.jobs.list(page_size=1)]
    assert client.jobs.get(job.id).state == "succeeded"


def test_job_download_resumes_with_a_range_request(server: ServerProcess, tmp_path: Path) -> None:
    sdk, recorder = recording_client(server.url)
    with sdk:
        job = sdk.jobs.submit(JOB_TEXT[:200], engine="sim", format="flac")
        assert sdk.jobs.wait(job, timeout=120).succeeded
        whole = sdk.jobs.download(job, tmp_path / "whole.flac").read_bytes()
        # an interrupted earlier download left its first bytes behind
        (tmp_path / "again.flac.part").write_bytes(whole[:1000])
        recorder.requests.clear()
        again = sdk.jobs.download(job, tmp_path / "again.flac").read_bytes()
    assert again == whole
    assert [r.headers.get("range") for r in recorder.requests] == ["bytes=1000-"]
    assert decode(again, "flac").duration > 1


def test_job_idempotency_polling_cancel_and_file_upload(client: Client, tmp_path: Path) -> None:
    first = client.jobs.submit("Said once. Only once.", engine="sim", idempotency_key="sdk-key-1")
    repeat = client.jobs.submit("Said once. Only once.", engine="sim", idempotency_key="sdk-key-1")
    assert repeat.id == first.id

    # polling instead of events
    calls: list[str] = []
    done = client.jobs.wait(first, on_progress=lambda j: calls.append(j.state), use_events=False)
    assert done.state == "succeeded"
    assert calls[-1] == "succeeded"

    text = tmp_path / "chapter.txt"
    # distinct sentences (identical ones would come from the result cache at once)
    long_text = " ".join(f"Sentence {i} of a long text that is cancelled." for i in range(30))
    text.write_text(long_text, encoding="utf-8")
    long_job = client.jobs.submit(file=text, engine="sim", format="mp3")
    assert long_job.characters == len(long_text)
    assert long_job.progress.segments_total == 30
    with pytest.raises(WaitTimeoutError):
        client.jobs.wait(long_job, timeout=0.5)
    client.jobs.cancel(long_job)
    ended = client.jobs.wait(long_job, timeout=60)
    assert ended.state == "cancelled"

    with pytest.raises(VoxgateError) as unfinished:
        client.jobs.download(long_job, tmp_path / "never.mp3")
    assert unfinished.value.code == "job_not_finished"
    with pytest.raises(NotFoundError):
        client.jobs.wait("job_does_not_exist", timeout=5)
    with pytest.raises(ValueError, match="text or file"):
        client.jobs.submit()


# -- health ---------------------------------------------------------------------------------


def test_health(client: Client) -> None:
    assert client.healthz() == {"status": "ok"}
    ready = client.readyz()
    assert ready["status"] == "ready"
    assert set(ready["engines"]) == {"espeak", "sim"}


# -- WebSocket sessions ---------------------------------------------------------------------
# Against /v1/audio/speech/stream (src/voxgate/api/, being built alongside this SDK).


def test_session_first_audio_before_done(client: Client) -> None:
    first_audio = threading.Event()
    sent: list[str] = []

    def tokens() -> Iterator[str]:
        # an LLM-like token loop: the second half waits until audio has come back
        for word in "The first sentence is spoken while the rest is written. ".split(" "):
            sent.append(word)
            yield word + " "
        assert first_audio.wait(30), "no audio before the text was done"
        for word in "Then the second sentence arrives.".split(" "):
            sent.append(word)
            yield word + " "

    with client.speech.session(voice="alloy", format="pcm", model="sim") as session:
        assert session.request_id
        session.feed(tokens())
        chunks: list[bytes] = []
        for chunk in session:
            if not chunks:
                assert session.audio is not None  # audio.start came first
                first_audio.set()
            chunks.append(chunk)
    assert session.finished
    assert not session.cancelled
    assert session.audio is not None
    assert session.audio.format == "pcm"
    assert session.audio.channels == 1
    rate = session.audio.sample_rate
    assert rate
    audio = decode(b"".join(chunks), "pcm", rate)
    assert session.usage is not None
    assert session.timings is not None
    assert session.usage.characters > 40
    assert session.usage.audio_seconds == pytest.approx(audio.duration, abs=0.05)
    assert session.timings.first_audio_ms is not None
    assert session.timings.first_audio_ms > 0
    assert session.timings.total_ms is not None
    assert session.timings.total_ms >= session.timings.first_audio_ms


def test_session_send_all_then_read(client: Client) -> None:
    with client.speech.session(voice="alloy", format="opus") as session:
        session.send_text("Hello from a WebSocket. ")
        session.send_text("Sent all at once.")
        session.done()
        audio = session.read()
    assert session.audio is not None
    assert session.audio.format == "opus"
    assert decode(audio, "opus").duration > 1.0


def test_session_cancel(client: Client) -> None:
    long_text = " ".join(JOB_SENTENCES * 3)
    with client.speech.session(format="pcm", model="sim") as session:
        session.send_text(long_text)
        received = 0
        for chunk in session:
            received += len(chunk)
            session.cancel()  # after the first audio
    assert received > 0
    assert session.cancelled
    assert session.usage is None


def speak_in_a_session(client: Client, **config: str) -> bytes:
    with client.speech.session(**config) as session:
        session.send_text("Hello.")
        session.done()
        return session.read()


def test_session_errors(client: Client, guarded: Guarded) -> None:
    with pytest.raises(BadRequestError) as bad:  # refused on config, or on the first text
        speak_in_a_session(client, voice="nobody-at-all", format="pcm")
    assert bad.value.code == "voice_not_found"
    with Client(guarded.url, api_key="") as anonymous:
        with pytest.raises(AuthenticationError) as unauthenticated:
            speak_in_a_session(anonymous, format="pcm")
        assert unauthenticated.value.code == "auth_required"
        assert unauthenticated.value.status == 401


# -- README ---------------------------------------------------------------------------------


def test_readme_sdk_example_runs(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "voxgate.client" in b
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(block.replace("http://127.0.0.1:8080", server.url), "README.md", "exec"), {})
    assert decode((tmp_path / "hello.wav").read_bytes(), "wav").duration > 0.3
