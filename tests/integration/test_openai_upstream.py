"""The ``openai-upstream`` engine against a real OpenAI-compatible server.

The upstream is another voxgate ("B", a real server subprocess) running the
simulated engine, whose audio is deterministic per text and voice and which
fails on demand (``#fault:...`` in the text). Between the engine and B sits,
where a test needs to see or shape the traffic, a small recording proxy: a
real uvicorn server on a loopback port that records every request (headers,
body, time) and forwards it to B, or answers a canned response instead.

Error mapping checked here (documented in the engine's module docstring):

* 5xx before any audio: retried ``retries`` times, then ``upstream_error``
  (502) carrying the upstream's own message;
* a failure after some audio: never retried, ``upstream_error``;
* a stall (nothing for ``read_timeout_s``): ``engine_timeout`` (504), before
  or after the first audio;
* nobody listening: ``engine_unavailable`` (503), fast;
* 4xx: not retried, ``upstream_error`` with the upstream's message; 401/403
  with a hint about the key.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import uvicorn

from tests.support.audio import decode
from voxgate.audio.pcm import to_s16le
from voxgate.engines.base import AudioChunk, EngineRequest, Mode
from voxgate.engines.openai_upstream import OpenAIUpstreamEngine
from voxgate.errors import EngineError
from voxgate.testing import ServerProcess, free_port
from voxgate.text.markup import parse
from voxgate.text.split import split

SIM = {"first_chunk_ms": 10, "rtf": 0.02, "chunk_ms": 100, "capacity": 16, "hang_s": 20}
# Engine options for tests: fast retries, short waits.
FAST: dict[str, Any] = {
    "retries": 0,
    "backoff_s": 0.01,
    "backoff_max_s": 0.05,
    "connect_timeout_s": 1.0,
    "read_timeout_s": 10.0,
    "health_interval_s": 60.0,
}
KEY = "sk-test-0123456789abcdef"
SPEECH = "/v1/audio/speech"
LONG = "This sentence is long enough for chunks"  # ~2.4 s of audio at B


# -- the upstream and a recording proxy in front of it ------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("upstream")
    # timeout_s bounds what a test leaves running at B (hang/stall faults).
    engines = {"sim": {"kind": "simulated", "options": SIM, "timeout_s": 3}}
    with ServerProcess(root, {"VOXGATE_ENGINES": json.dumps(engines)}) as server:
        yield server


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Canned:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class RecordingProxy:
    """ASGI app: record the request, then answer it (key check, canned
    answer, or forwarded to ``target``, streamed through unchanged, cut short
    when the target cuts its stream short)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.seen: list[Seen] = []
        self.canned: list[Canned] = []
        self.key: str | None = None  # when set, anything else gets OpenAI's 401

    def reset(self) -> None:
        self.seen.clear()
        self.canned.clear()
        self.key = None

    def speech_calls(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path.endswith("/audio/speech")]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        seen = Seen(scope["method"], scope["path"], headers, body, time.monotonic())
        self.seen.append(seen)
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            given = headers.get("authorization", "").removeprefix("Bearer ")
            error = {  # like OpenAI's, which quotes the key it got (masked: here whole)
                "message": f"Incorrect API key provided: {given}.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            await self._answer(send, Canned(401, json.dumps({"error": error}).encode()))
            return
        if self.canned and seen.path.endswith("/audio/speech"):
            await self._answer(send, self.canned.pop(0))
            return
        async with httpx.AsyncClient(base_url=self.target, timeout=30) as client:
            request = client.build_request(
                seen.method,
                seen.path,
                content=body,
                headers={"content-type": headers.get("content-type", "application/json")},
            )
            response = await client.send(request, stream=True)
            try:
                passed = [(b"content-type", response.headers.get("content-type", "").encode())]
                if "retry-after" in response.headers:
                    passed.append((b"retry-after", response.headers["retry-after"].encode()))
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": passed,
                    }
                )
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await response.aclose()

    @staticmethod
    async def _answer(send: Any, canned: Canned) -> None:
        headers = {"content-type": "application/json", **canned.headers}
        await send(
            {
                "type": "http.response.start",
                "status": canned.status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": canned.body})


@dataclass
class Proxy:
    app: RecordingProxy
    url: str  # API base, ending in /v1


@pytest.fixture(scope="module")
def proxy_server(upstream: ServerProcess) -> Iterator[Proxy]:
    app = RecordingProxy(upstream.url)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="critical",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="recording-proxy", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "recording proxy did not start"
        time.sleep(0.02)
    yield Proxy(app, f"http://127.0.0.1:{port}/v1")
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def proxy(proxy_server: Proxy) -> Iterator[Proxy]:
    proxy_server.app.reset()
    yield proxy_server
    proxy_server.app.reset()


# -- helpers --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(url: str, **options: Any) -> AsyncIterator[OpenAIUpstreamEngine]:
    engine = OpenAIUpstreamEngine("up", url=url, **{**FAST, **options})
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


def request_for(
    engine: OpenAIUpstreamEngine,
    text: str,
    voice: str = "alloy",
    mode: Mode = Mode.SFT,
    instruct: str | None = None,
) -> EngineRequest:
    speaker = next(s for s in engine.speakers() if s.id == voice)
    segments = tuple(split(parse(text)))
    return EngineRequest("test", mode, segments, speaker, instruct=instruct)


async def synthesize(engine: OpenAIUpstreamEngine, request: EngineRequest) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(request)]


async def failing(
    engine: OpenAIUpstreamEngine, request: EngineRequest
) -> tuple[list[AudioChunk], EngineError]:
    chunks: list[AudioChunk] = []

    async def consume() -> None:
        async for chunk in engine.synthesize(request):
            chunks.append(chunk)

    with pytest.raises(EngineError) as info:
        await consume()
    return chunks, info.value


def pcm_of(chunks: list[AudioChunk]) -> bytes:
    assert chunks, "no audio"
    return to_s16le(np.concatenate([c.samples for c in chunks]))


async def reference(upstream: ServerProcess, text: str, voice: str = "alloy") -> bytes:
    """What B itself answers on its OpenAI route for this text and voice."""
    body = {"model": "tts-1", "input": text, "voice": voice, "response_format": "pcm"}
    async with httpx.AsyncClient(base_url=upstream.url, timeout=30) as client:
        response = await client.post(SPEECH, json=body)
    assert response.status_code == 200, response.text
    assert response.content
    return response.content


# -- audio ------------------------------------------------------------------------


async def test_audio_equals_the_upstreams_own_output(upstream: ServerProcess, proxy: Proxy) -> None:
    text = "Hello from the upstream server."
    async with running(proxy.url, voices=["alloy", "echo"]) as engine:
        assert engine.health.ok is True
        assert engine.health.error is None
        alloy = pcm_of(await synthesize(engine, request_for(engine, text, "alloy")))
        echo = pcm_of(await synthesize(engine, request_for(engine, text, "echo")))
    assert alloy == await reference(upstream, text, "alloy")
    assert echo == await reference(upstream, text, "echo")
    assert alloy != echo, "the voice must reach the upstream"
    calls = proxy.app.speech_calls()
    assert [c.json() for c in calls] == [
        {"model": "tts-1", "input": text, "voice": voice, "response_format": "pcm", "speed": 1.0}
        for voice in ("alloy", "echo")
    ]
    assert "authorization" not in calls[0].headers, "no key configured, none sent"


async def test_long_text_is_one_upstream_call_per_segment_in_order(
    upstream: ServerProcess, proxy: Proxy
) -> None:
    text = "The first sentence is here. A second one follows it. And the third ends it."
    async with running(proxy.url) as engine:
        request = request_for(engine, text, "nova")
        chunks = await synthesize(engine, request)
    segments = [s.plain for s in request.segments]
    assert len(segments) == 3
    indices = [c.segment for c in chunks]
    assert indices == sorted(indices)
    assert set(indices) == {0, 1, 2}
    for index, segment in enumerate(segments):
        got = pcm_of([c for c in chunks if c.segment == index])
        assert got == await reference(upstream, segment, "nova"), f"segment {index}"
    assert [c.json()["input"] for c in proxy.app.speech_calls()] == segments


async def test_instructions_are_sent_only_where_the_model_takes_them(proxy: Proxy) -> None:
    async with running(proxy.url, model="gpt-4o-mini-tts") as engine:
        assert Mode.INSTRUCT in engine.capabilities.modes
        request = request_for(engine, "Calm words.", mode=Mode.INSTRUCT, instruct="speak slowly")
        assert engine.check(request) == []
        await synthesize(engine, request)
    async with running(proxy.url, model="tts-1") as engine:
        assert Mode.INSTRUCT not in engine.capabilities.modes
        request = request_for(engine, "Calm words.", instruct="speak slowly")
        assert [n.code for n in engine.check(request)] == ["instructions_ignored"]
        await synthesize(engine, request)
    first, second = (c.json() for c in proxy.app.speech_calls())
    assert first["instructions"] == "speak slowly"
    assert first["model"] == "gpt-4o-mini-tts"
    assert "instructions" not in second


async def test_extra_body_and_headers_reach_the_upstream(proxy: Proxy) -> None:
    options = {"extra_body": {"language": "en"}, "headers": {"OpenAI-Project": "proj_test"}}
    async with running(proxy.url, **options) as engine:
        assert await synthesize(engine, request_for(engine, "Extra fields."))
    (call,) = proxy.app.speech_calls()
    assert call.json()["language"] == "en"
    assert call.headers["openai-project"] == "proj_test"


def test_options_are_checked_when_configured() -> None:
    url = "http://127.0.0.1:9/v1"
    with pytest.raises(TypeError, match="unknown options"):
        OpenAIUpstreamEngine("up", url=url, speakers=["alloy"])
    with pytest.raises(ValueError, match="extra_body"):
        OpenAIUpstreamEngine("up", url=url, extra_body={"speed": 2.0})
    with pytest.raises(ValueError, match="not both"):
        OpenAIUpstreamEngine("up", url=url, api_key="a", api_key_env="B")
    tts1 = OpenAIUpstreamEngine("up", url=url)
    assert "ballad" not in {s.id for s in tts1.speakers()}, "tts-1 has nine voices"
    mini = OpenAIUpstreamEngine("up", url=url, model="gpt-4o-mini-tts")
    assert "ballad" in {s.id for s in mini.speakers()}


# -- the API key ----------------------------------------------------------------


async def test_api_key_from_env_is_sent_and_never_shown(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    proxy.app.key = KEY
    monkeypatch.setenv("VOXGATE_TEST_UPSTREAM_KEY", KEY)
    async with running(proxy.url, api_key_env="VOXGATE_TEST_UPSTREAM_KEY") as engine:
        assert engine.health.ok is True
        assert engine.health.error is None
        chunks = await synthesize(engine, request_for(engine, "With a key."))
        described = json.dumps(engine.describe())
    assert chunks
    assert {c.headers.get("authorization") for c in proxy.app.seen} == {f"Bearer {KEY}"}
    assert '"api_key": "set"' in described
    assert KEY not in described
    assert KEY not in caplog.text


async def test_a_refused_key_is_not_retried_and_says_so(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    proxy.app.key = KEY
    wrong = "sk-wrong-key-999"
    async with running(proxy.url, api_key=wrong, retries=3) as engine:
        assert engine.health.ok is True, "a server that answers 401 is up"
        assert engine.health.error is not None
        assert "API key" in engine.health.error
        _, error = await failing(engine, request_for(engine, "Refused."))
    assert error.code == "upstream_error"
    assert "invalid_api_key" in error.message
    assert "Incorrect API key provided" in error.message
    assert error.hint is not None
    assert "api_key_env" in error.hint
    assert len(proxy.app.speech_calls()) == 1
    assert wrong not in error.message + error.hint + caplog.text


def test_a_missing_key_variable_fails_at_configuration() -> None:
    with pytest.raises(ValueError, match="VOXGATE_TEST_NO_SUCH_KEY"):
        OpenAIUpstreamEngine(
            "up", url="http://127.0.0.1:9/v1", api_key_env="VOXGATE_TEST_NO_SUCH_KEY"
        )


# -- errors -----------------------------------------------------------------------


async def test_failure_before_audio_is_retried_then_upstream_error(proxy: Proxy) -> None:
    async with running(proxy.url, retries=2) as engine:
        _, error = await failing(engine, request_for(engine, "Broken #fault:before"))
    assert error.code == "upstream_error"
    assert error.status == 502
    assert "simulated engine failure before the first chunk" in error.message
    assert "after 3 attempts" in error.message
    assert len(proxy.app.speech_calls()) == 3


async def test_failure_mid_stream_is_not_retried(proxy: Proxy) -> None:
    async with running(proxy.url, retries=2) as engine:
        chunks, error = await failing(engine, request_for(engine, LONG + " #fault:mid"))
    assert chunks
    assert chunks[0].samples.size, "audio had arrived before the failure"
    assert error.code == "upstream_error"
    assert "mid-stream" in error.message
    assert len(proxy.app.speech_calls()) == 1


async def test_rate_limit_is_retried_after_retry_after(
    upstream: ServerProcess, proxy: Proxy
) -> None:
    error = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}
    proxy.app.canned.append(Canned(429, json.dumps(error).encode(), {"retry-after": "1"}))
    async with running(proxy.url, retries=1) as engine:
        audio = pcm_of(await synthesize(engine, request_for(engine, "After a pause.")))
    assert audio == await reference(upstream, "After a pause.")
    first, second = proxy.app.speech_calls()
    assert second.at - first.at >= 0.9, "Retry-After: 1 was not honoured"


async def test_client_error_is_not_retried_and_carries_the_upstreams_message(
    proxy: Proxy,
) -> None:
    async with running(proxy.url, retries=2, voices=["alloy", "nosuch"]) as engine:
        _, error = await failing(engine, request_for(engine, "Who speaks?", "nosuch"))
    assert error.code == "upstream_error"
    assert "HTTP 400" in error.message
    assert "voice_not_found" in error.message
    assert "no voice 'nosuch'" in error.message
    assert len(proxy.app.speech_calls()) == 1


async def test_audio_that_is_not_pcm_is_refused(proxy: Proxy) -> None:
    proxy.app.canned.append(Canned(200, b"ID3\x03\x00fake mp3", {"content-type": "audio/mpeg"}))
    async with running(proxy.url, retries=2) as engine:
        _, error = await failing(engine, request_for(engine, "Wrong format."))
    assert error.code == "upstream_error"
    assert "expected raw PCM" in error.message
    assert "audio/mpeg" in error.message
    assert len(proxy.app.speech_calls()) == 1


async def test_a_server_that_is_down_is_engine_unavailable_fast() -> None:
    started = time.monotonic()
    async with running(f"http://127.0.0.1:{free_port()}/v1", retries=2) as engine:
        assert engine.health.ok is False
        _, error = await failing(engine, request_for(engine, "Anyone there?"))
    assert error.code == "engine_unavailable"
    assert error.status == 503
    assert "after 3 attempts" in error.message
    assert time.monotonic() - started < 5


async def test_a_hang_before_audio_is_engine_timeout(upstream: ServerProcess) -> None:
    started = time.monotonic()
    async with running(upstream.url + "/v1", retries=1, read_timeout_s=0.4) as engine:
        _, error = await failing(engine, request_for(engine, "Stuck #fault:hang"))
    elapsed = time.monotonic() - started
    assert error.code == "engine_timeout"
    assert "after 2 attempts" in error.message
    assert 0.8 <= elapsed < 5


async def test_a_stall_after_audio_is_engine_timeout_without_retry(proxy: Proxy) -> None:
    async with running(proxy.url, retries=2, read_timeout_s=0.4) as engine:
        chunks, error = await failing(engine, request_for(engine, LONG + " #fault:stall"))
    assert chunks, "audio had arrived before the stall"
    assert error.code == "engine_timeout"
    assert "stalled mid-stream" in error.message
    assert len(proxy.app.speech_calls()) == 1, "a stall after audio must not be retried"


async def test_health_notes_a_url_without_the_api_base(upstream: ServerProcess) -> None:
    async with running(upstream.url) as engine:  # missing /v1: GET /models is a 404
        assert engine.health.ok is True
        assert engine.health.error is not None
        assert "/v1" in engine.health.error


# -- end to end: the OpenAI SDK -> voxgate A -> openai-upstream -> B ----------------


def test_openai_sdk_through_voxgate_gets_the_upstreams_audio(
    upstream: ServerProcess, proxy: Proxy, tmp_path: Path
) -> None:
    proxy.app.key = KEY
    options = {
        "url": proxy.url,
        "api_key_env": "VOXGATE_TEST_UPSTREAM_KEY",
        "voices": ["alloy", "echo"],
        "retries": 0,
    }
    env = {
        "VOXGATE_ENGINES": json.dumps({"up": {"kind": "openai-upstream", "options": options}}),
        "VOXGATE_TEST_UPSTREAM_KEY": KEY,
    }
    text = "Hello through two gateways. This is the second sentence of it."
    with httpx.Client(base_url=upstream.url, timeout=30) as b:
        body = {"model": "tts-1", "input": text, "voice": "echo", "response_format": "pcm"}
        expected = b.post(SPEECH, json=body).content
    with ServerProcess(tmp_path / "a", env) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
        pcm = client.audio.speech.create(
            model="up", voice="echo", input=text, response_format="pcm"
        )
        wav = client.audio.speech.create(
            model="up", voice="echo", input=text, response_format="wav"
        )
        engines = httpx.get(gateway.url + "/v1/engines").text
        log = gateway.log()
    assert len(expected) > 24000
    assert pcm.content == expected
    assert np.array_equal(decode(wav.content, "wav").samples, decode(expected, "pcm").samples)
    calls = proxy.app.speech_calls()
    assert len(calls) == 4, "two requests of two segments each"
    assert {c.headers["authorization"] for c in calls} == {f"Bearer {KEY}"}
    assert KEY not in engines
    assert KEY not in log
