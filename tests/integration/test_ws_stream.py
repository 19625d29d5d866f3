"""The WebSocket /v1/audio/speech/stream through real server processes.

A client feeds text word by word, as an LLM would, over loopback with the
``websockets`` library. Two kinds of engine are behind it: the simulated
engine, which takes text while it arrives (one synthesis fed by a text
stream), and espeak, which is given complete sentences one batch at a time
(several syntheses, one audio stream). Both must start speaking before the
text is complete. Cancellation, a slow reader, idle clients, limits and
authentication at the handshake are checked against the server's own
reports: ``GET /v1/engines/{name}`` (admission and the simulated engine's
counters) and ``GET /v1/admin/runtime`` (resident memory).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from tests.support.audio import decode
from tests.support.prompts import SENTENCE, speech, wav_bytes
from voxgate.testing import ServerProcess

PATH = "/v1/audio/speech/stream"
IDLE_S = 2.0
ENGINES = {
    "sim": {"kind": "simulated", "options": {"first_chunk_ms": 80, "rtf": 0.05, "chunk_ms": 100}},
    # Long and fast, at 48 kHz: what a slow reader must not let run ahead.
    "fast": {
        "kind": "simulated",
        "options": {"first_chunk_ms": 20, "rtf": 0.01, "chunk_ms": 200, "sample_rate": 48000},
    },
    "espeak": {"kind": "espeak"},
}
TEXT = (
    "The first sentence is here. Then comes a second one, a little longer than the first. "
    "And a short third!"
)
LONG = "This is one of many sentences that keep the engine busy for a long while. " * 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "VOXGATE_ENGINES": json.dumps(ENGINES),
        "VOXGATE_WS_IDLE_TIMEOUT_S": str(IDLE_S),
        "VOXGATE_WS_MAX_MESSAGE_BYTES": "4096",
        "VOXGATE_WS_MAX_TEXT_CHARS": "16000",
    }
    with ServerProcess(tmp_path_factory.mktemp("ws"), env) as proc:
        yield proc


def ws_url(server: ServerProcess, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + PATH + query


@dataclass
class Session:
    """What a client saw: JSON messages, audio, and when things happened."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    done_sent_at: float | None = None
    ended_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    pace_s: float = 0.0  # how long the client takes per message it reads

    def of(self, kind: str) -> dict[str, Any]:
        found = [m for m in self.messages if m["type"] == kind]
        assert len(found) == 1, (kind, self.messages)
        return found[0]

    @property
    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]


async def receive_all(ws: Any, session: Session) -> None:
    while True:
        try:
            message = await ws.recv()
        except websockets.ConnectionClosed:
            break
        if isinstance(message, bytes):
            session.last_audio_at = time.perf_counter()
            if session.first_audio_at is None:
                session.first_audio_at = session.last_audio_at
            session.audio += message
        else:
            session.messages.append(json.loads(message))
        if session.pace_s:
            await asyncio.sleep(session.pace_s)
    session.ended_at = time.perf_counter()
    session.close_code = ws.close_code
    session.close_reason = ws.close_reason or ""


async def speak(
    url: str,
    config: dict[str, Any],
    text: str = TEXT,
    *,
    delay_s: float = 0.04,
    **connect: Any,
) -> Session:
    """Config, the text word by word, input.done; everything the server sent."""
    session = Session()
    async with websockets.connect(url, **connect) as ws:
        reader = asyncio.create_task(receive_all(ws, session))
        await ws.send(json.dumps({"type": "session.config", **config}))
        for word in text.split(" "):
            await ws.send(json.dumps({"type": "input.text", "text": word + " "}))
            await asyncio.sleep(delay_s)
        session.done_sent_at = time.perf_counter()
        await ws.send(json.dumps({"type": "input.done"}))
        await asyncio.wait_for(reader, 60)
    return session


async def refused(url: str, config: dict[str, Any], *messages: Any) -> Session:
    """A session the server ends with an error: config, then ``messages``."""
    session = Session()
    async with websockets.connect(url) as ws:
        reader = asyncio.create_task(receive_all(ws, session))
        if config:
            await ws.send(json.dumps({"type": "session.config", **config}))
        for message in messages:
            await ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
        await asyncio.wait_for(reader, 30)
    return session


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url)


async def engine(server: ServerProcess, name: str) -> dict[str, Any]:
    document: dict[str, Any] = (await get(f"{server.url}/v1/engines/{name}")).json()
    return document


async def rss(server: ServerProcess) -> int:
    return int((await get(f"{server.url}/v1/admin/runtime")).json()["rss_bytes"])


def ogg_streams(data: bytes) -> int:
    """How many logical Ogg streams begin in ``data`` (pages flagged BOS)."""
    count, at = 0, 0
    while (at := data.find(b"OggS", at)) != -1:
        count += data[at + 5] & 0x02 == 0x02
        at += 4
    return count


# -- speaking while the text arrives ----------------------------------------------------


@pytest.mark.parametrize("name", ["sim", "espeak"])
@pytest.mark.parametrize("fmt", ["pcm", "opus"])
async def test_first_audio_arrives_before_the_text_is_complete(
    server: ServerProcess, name: str, fmt: str
) -> None:
    session = await speak(ws_url(server), {"engine": name, "format": fmt})

    assert session.types[0] == "session.ready"
    assert session.types[-1] == "audio.done", session.messages
    assert session.close_code == 1000
    assert session.first_audio_at is not None
    assert session.done_sent_at is not None
    assert session.first_audio_at < session.done_sent_at  # spoke before input.done
    start = session.of("audio.start")
    caps = (await engine(server, name))["capabilities"]
    assert caps["text_streaming"] is (name == "sim")  # both paths are covered
    assert start["format"] == fmt
    assert start["channels"] == 1
    assert start["engine"] == name
    assert start["voice"]
    rate = start["sample_rate"]

    done = session.of("audio.done")
    assert done["usage"]["characters"] == sum(len(w) + 1 for w in TEXT.split(" "))
    seconds = done["usage"]["audio_seconds"]
    assert seconds > 2.0
    timings = done["timings"]
    assert 0 < timings["first_audio_ms"] < timings["total_ms"]
    assert timings["last_text_to_first_audio_ms"] is not None

    audio = decode(bytes(session.audio), fmt, pcm_rate=rate)
    if fmt == "pcm":
        assert len(session.audio) / 2 / rate == pytest.approx(seconds, abs=0.001)
    else:
        assert ogg_streams(bytes(session.audio)) == 1  # one encoder for every sentence
        assert audio.duration == pytest.approx(seconds, abs=0.03)
    assert np.abs(audio.samples).max() > 0.05


async def test_the_simulated_engine_speaks_every_sentence_once(server: ServerProcess) -> None:
    """One synthesis fed by the text stream: the engine started once, and the
    audio is as long as the sentences it spoke, each exactly once."""
    before = (await engine(server, "sim"))["stats"]["started"]
    session = await speak(ws_url(server), {"engine": "sim"})
    assert (await engine(server, "sim"))["stats"]["started"] == before + 1
    sentences = [
        "The first sentence is here.",
        "Then comes a second one, a little longer than the first.",
        "And a short third!",
    ]
    expected = sum(max(0.2, len(s) * 0.06) for s in sentences)
    assert session.of("audio.done")["usage"]["audio_seconds"] == pytest.approx(expected, abs=0.01)


# -- stopping -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sim", "espeak"])
async def test_cancel_mid_stream_frees_the_engine(server: ServerProcess, name: str) -> None:
    session = Session()
    async with websockets.connect(ws_url(server)) as ws:
        reader = asyncio.create_task(receive_all(ws, session))
        await ws.send(json.dumps({"type": "session.config", "engine": name}))
        await ws.send(json.dumps({"type": "input.text", "text": LONG[:3000]}))
        for _ in range(200):
            if session.first_audio_at is not None:
                break
            await asyncio.sleep(0.05)
        assert session.first_audio_at is not None
        busy = await engine(server, name)
        assert busy["admission"]["in_use"] == 1
        await ws.send(json.dumps({"type": "cancel"}))
        await asyncio.wait_for(reader, 10)
    assert session.types[-1] == "cancelled"
    assert "audio.done" not in session.types
    assert session.close_code == 1000
    idle = await engine(server, name)
    assert idle["admission"]["in_use"] == 0
    assert idle["stats"]["active"] == 0
    if name == "sim":
        assert busy["info"]["running"] == 1
        assert idle["info"]["running"] == 0


async def test_a_client_that_leaves_frees_the_engine(server: ServerProcess) -> None:
    async with websockets.connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"type": "session.config", "engine": "sim"}))
        await ws.send(json.dumps({"type": "input.text", "text": LONG[:3000]}))
        while not isinstance(await ws.recv(), bytes):
            pass
    for _ in range(100):
        if (await engine(server, "sim"))["admission"]["in_use"] == 0:
            break
        await asyncio.sleep(0.05)
    state = await engine(server, "sim")
    assert state["admission"]["in_use"] == 0
    assert state["info"]["running"] == 0


async def test_a_slow_reader_pauses_the_engine(server: ServerProcess) -> None:
    """At rtf 0.01 the engine could make 100 s of audio a second; a client
    that reads 0.2 s of it every 0.25 s must hold it back, and the server's
    memory must not grow with what the engine could have made."""
    baseline = await rss(server)
    session = Session(pace_s=0.25)
    async with websockets.connect(ws_url(server), max_queue=1) as ws:
        await ws.send(json.dumps({"type": "session.config", "engine": "fast"}))
        text = LONG[:15000]  # about 900 s of audio
        for at in range(0, len(text), 3000):
            await ws.send(json.dumps({"type": "input.text", "text": text[at : at + 3000]}))
        await ws.send(json.dumps({"type": "input.done"}))
        reader = asyncio.create_task(receive_all(ws, session))
        samples = []
        for _ in range(3):
            await asyncio.sleep(3.0)
            produced = (await engine(server, "fast"))["info"]["produced_audio_s"]
            samples.append((produced, await rss(server), len(session.audio) / 96_000))
        session.pace_s = 0.0  # read what is buffered, then the answer to the cancel
        await ws.send(json.dumps({"type": "cancel"}))
        await asyncio.wait_for(reader, 30)
    produced = [p for p, _, _ in samples]
    received = samples[-1][2]
    # Unthrottled, 9 s would have made all ~900 s; socket buffers hold at most
    # a few MB (tens of seconds at 96 kB/s), the rest waits for the reader.
    assert produced[-1] < 200, samples
    assert produced[-1] - produced[0] < 60, samples  # paced by the reader, not the engine
    assert produced[-1] - received < 150, samples
    assert max(memory for _, memory, _ in samples) - baseline < 64 * 2**20, samples
    assert session.types[-1] == "cancelled"
    assert (await engine(server, "fast"))["admission"]["in_use"] == 0


# -- idle clients and limits ------------------------------------------------------------------


async def test_an_idle_session_is_closed(server: ServerProcess) -> None:
    started = time.perf_counter()
    session = await refused(ws_url(server), {"engine": "sim"}, {"type": "input.text", "text": "Hi"})
    waited = time.perf_counter() - started
    assert session.types == ["session.ready", "error"]
    assert session.of("error")["code"] == "session_idle_timeout"
    assert session.close_code == 1008
    assert IDLE_S <= waited < IDLE_S + 5


async def test_a_connection_without_config_is_closed_when_idle(server: ServerProcess) -> None:
    session = await refused(ws_url(server), {})
    assert session.of("error")["code"] == "session_idle_timeout"
    assert session.close_code == 1008


async def test_audio_flowing_is_not_idleness(server: ServerProcess) -> None:
    """All the text at once, then nothing: the engine has it all and waits
    for more while it still speaks for longer than the idle timeout. The
    session is idle only from its last audio on."""
    text = LONG[:1500]  # 20 sentences of 73 characters, 88 s of audio, and a bit of one more
    session = await refused(ws_url(server), {"engine": "sim"}, {"type": "input.text", "text": text})
    assert session.of("error")["code"] == "session_idle_timeout"
    assert session.first_audio_at is not None
    assert session.last_audio_at is not None
    assert session.ended_at is not None
    assert session.last_audio_at - session.first_audio_at > IDLE_S  # spoke on, not idle
    assert session.ended_at - session.last_audio_at >= IDLE_S - 0.1  # idle after the audio
    # The complete sentences were spoken; the incomplete one waits for text that never came.
    assert len(session.audio) / 2 / 24000 == pytest.approx(20 * 73 * 0.06, abs=0.1)


TEXT_FIRST = {"type": "input.text", "text": "Hi."}
BAD_CONFIGS = [
    ({"format": "mp3"}, "format_unsupported"),
    ({"speed": 9}, "speed_out_of_range"),
    ({"sample_rate": 22050, "format": "opus"}, "sample_rate_unsupported"),
    ({"voice": "nobody"}, "voice_not_found"),
    ({"voice": "voice_0123456789abcdef01234567"}, "voice_not_found"),
    ({"engine": "nothing"}, "model_not_found"),
    ({"mode": "sing"}, "mode_unsupported"),
    ({"mode": "instruct"}, "instruct_required"),
]
BAD_MESSAGES = [
    ([{"type": "input.text"}], "missing_field"),
    ([{"type": "input.text", "text": 5}], "invalid_request"),
    ([{"type": "session.config"}], "unexpected_message"),
    ([{"type": "what"}], "unexpected_message"),
    ([b"\x00\x01"], "unexpected_message"),
    (["[1, 2]"], "invalid_json"),
    ([{"type": "input.text", "text": "x" * 5000}], "request_too_large"),
    ([{"type": "input.done"}], "text_empty"),
    ([{"type": "input.text", "text": "?! "}, {"type": "input.done"}], "text_empty"),
    (
        [{"type": "input.text", "text": LONG[:2000]}, {"type": "input.done"}, TEXT_FIRST],
        "unexpected_message",
    ),
]


def check_error(session: Session, code: str) -> None:
    errors = [m for m in session.messages if m["type"] == "error"]
    assert len(errors) == 1, session.messages
    assert errors[0]["code"] == code
    assert errors[0]["message"]
    assert "hint" in errors[0]
    assert session.types[-1] == "error"
    assert session.close_code == 1008
    assert session.close_reason == code


@pytest.mark.parametrize(("config", "code"), BAD_CONFIGS)
async def test_a_bad_config_is_refused_before_any_text(
    server: ServerProcess, config: dict[str, Any], code: str
) -> None:
    session = await refused(ws_url(server), {"engine": "sim", **config})
    assert "session.ready" not in session.types
    check_error(session, code)


@pytest.mark.parametrize(("messages", "code"), BAD_MESSAGES)
async def test_a_bad_message_ends_the_session(
    server: ServerProcess, messages: list[Any], code: str
) -> None:
    session = await refused(ws_url(server), {"engine": "sim"}, *messages)
    check_error(session, code)


@pytest.mark.parametrize(
    ("first", "code"), [(TEXT_FIRST, "unexpected_message"), ("{x", "invalid_json")]
)
async def test_the_first_message_must_be_the_config(
    server: ServerProcess, first: Any, code: str
) -> None:
    session = await refused(ws_url(server), {}, first)
    check_error(session, code)


async def test_too_much_text_ends_the_session(server: ServerProcess) -> None:
    pieces = [{"type": "input.text", "text": LONG[:3000]}] * 6  # 18000 > 16000
    session = await refused(ws_url(server), {"engine": "fast"}, *pieces)
    assert session.types[-1] == "error"
    assert session.of("error")["code"] == "text_too_long"
    assert session.close_code == 1008
    assert (await engine(server, "fast"))["admission"]["in_use"] == 0


async def test_sessions_are_in_the_metrics(server: ServerProcess) -> None:
    await speak(ws_url(server), {"engine": "sim"}, "Counted once.")
    metrics = (await get(f"{server.url}/metrics")).text
    lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("voxgate_requests_total") and f'route="{PATH}"' in line
    ]
    assert any('status="101"' in line and 'engine="sim"' in line for line in lines), lines
    assert f'voxgate_time_to_first_audio_seconds_count{{engine="sim",route="{PATH}"}}' in metrics


# -- authentication at the handshake ----------------------------------------------------------

ADMIN_TOKEN = "ws-admin-token-for-the-integration-tests"
CONSENT = "I, Test Speaker, agree that my voice may be used to make this voice."


@dataclass
class Secured:
    server: ServerProcess
    keys: dict[str, str]
    voice_a: str


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    env = {
        "VOXGATE_AUTH": "on",
        "VOXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "VOXGATE_ENGINES": json.dumps({"espeak": {"kind": "espeak"}, "sim": ENGINES["sim"]}),
    }
    with ServerProcess(tmp_path_factory.mktemp("ws-auth"), env) as proc:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        keys = {}
        with httpx.Client(base_url=proc.url, headers=admin, timeout=60) as http:
            for tenant, rpm in (("tenant-a", None), ("tenant-b", None), ("tenant-c", 1)):
                assert http.post("/v1/admin/tenants", json={"id": tenant}).status_code == 201
                body = {"tenant": tenant, "name": "ws", "requests_per_minute": rpm}
                made = http.post("/v1/admin/keys", json=body)
                assert made.status_code == 201, made.text
                keys[tenant] = made.json()["key"]
            voice = http.post(
                "/v1/audio/voices",
                data={"name": "fox", "consent": CONSENT, "prompt_text": SENTENCE},
                files={"audio_sample": ("p.wav", wav_bytes(speech(), 24000), "audio/wav")},
                headers={"Authorization": f"Bearer {keys['tenant-a']}"},
            )
            assert voice.status_code == 200, voice.text
        yield Secured(proc, keys, str(voice.json()["id"]))


async def _handshake_refusal(url: str, **connect: Any) -> tuple[int, str]:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, **connect):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body)["error"]["code"]


async def test_no_credential_is_refused_in_the_handshake(secured: Secured) -> None:
    assert await _handshake_refusal(ws_url(secured.server)) == (401, "auth_required")


async def test_a_wrong_key_is_refused_in_the_handshake(secured: Secured) -> None:
    url = ws_url(secured.server, "?api_key=vg_nope_nope")
    assert await _handshake_refusal(url) == (401, "invalid_api_key")
    bad = {"Authorization": "Bearer vg_nope_nope"}
    assert await _handshake_refusal(ws_url(secured.server), additional_headers=bad) == (
        401,
        "invalid_api_key",
    )


@pytest.mark.parametrize("where", ["query", "subprotocol", "header"])
async def test_a_key_is_taken_from_where_a_client_can_put_it(secured: Secured, where: str) -> None:
    key = secured.keys["tenant-a"]
    connect: dict[str, Any] = {}
    url = ws_url(secured.server)
    if where == "query":
        url = ws_url(secured.server, f"?api_key={key}")
    elif where == "subprotocol":
        connect["subprotocols"] = ["voxgate.v1", f"bearer.{key}"]
    else:
        connect["additional_headers"] = {"Authorization": f"Bearer {key}"}
    session = await speak(url, {"engine": "espeak"}, "Authenticated speech.", **connect)
    assert session.types[-1] == "audio.done"
    assert session.audio
    assert key not in secured.server.log()  # not even uvicorn's line about the URL


async def test_the_subprotocol_chosen_is_voxgates(secured: Secured) -> None:
    key = secured.keys["tenant-a"]
    offered = ["voxgate.v1", f"bearer.{key}"]
    async with websockets.connect(ws_url(secured.server), subprotocols=offered) as ws:
        assert ws.subprotocol == "voxgate.v1"


async def test_voices_are_scoped_to_the_callers_tenant(secured: Secured) -> None:
    config = {"voice": secured.voice_a}
    own = await speak(
        ws_url(secured.server, f"?api_key={secured.keys['tenant-a']}"), config, "Mine."
    )
    assert own.types[-1] == "audio.done"
    other = Session()
    url = ws_url(secured.server, f"?api_key={secured.keys['tenant-b']}")
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "session.config", **config}))
        await receive_all(ws, other)
    assert other.of("error")["code"] == "voice_not_found"
    assert other.close_code == 1008


async def test_rate_limits_apply_to_the_connection(secured: Secured) -> None:
    url = ws_url(secured.server, f"?api_key={secured.keys['tenant-c']}")
    first = await speak(url, {"engine": "sim"}, "One.")
    assert first.types[-1] == "audio.done"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url):
            pass
    response = refused.value.response
    assert response.status_code == 429
    assert json.loads(response.body)["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


# -- CosyVoice 2 in process (the stand-in model): text as a generator ---------------------------

PIECES = [
    "收到好友",
    "从远方寄来的",
    "生日礼物。",
    "那份意外的惊喜，",
    "与深深的祝福，",
    "让我心中充满了",
    "甜蜜的快乐。",
]


@pytest.fixture(scope="module")
def cosyvoice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    from tests.fakes.modeldirs import make_model_dir  # imports torch
    from tests.support.procs import FAKES, fake_env

    root = tmp_path_factory.mktemp("ws-cosyvoice")
    options = {"model_dir": str(make_model_dir(root / "models", 2)), "repo_dir": str(FAKES)}
    env = fake_env(VOXGATE_ENGINES=json.dumps({"cv": {"kind": "cosyvoice", "options": options}}))
    with ServerProcess(root / "data", env) as proc:
        made = httpx.post(
            f"{proc.url}/v1/audio/voices",
            data={"name": "fox", "consent": "I agree.", "prompt_text": SENTENCE, "engine": "cv"},
            files={"audio_sample": ("fox.wav", wav_bytes(speech(), 24000), "audio/wav")},
            timeout=60,
        )
        assert made.status_code == 200, made.text
        yield proc, str(made.json()["id"])


async def test_cosyvoice_2_gets_one_call_fed_as_the_text_arrives(
    cosyvoice: tuple[ServerProcess, str],
) -> None:
    server, voice = cosyvoice
    before = (await engine(server, "cv"))["stats"]["started"]
    session = Session()
    async with websockets.connect(ws_url(server)) as ws:
        reader = asyncio.create_task(receive_all(ws, session))
        await ws.send(json.dumps({"type": "session.config", "voice": voice}))
        for piece in PIECES:
            await ws.send(json.dumps({"type": "input.text", "text": piece}))
            await asyncio.sleep(0.3)
        session.done_sent_at = time.perf_counter()
        await ws.send(json.dumps({"type": "input.done"}))
        await asyncio.wait_for(reader, 60)
    assert session.types[-1] == "audio.done", session.messages
    assert session.of("audio.start")["engine"] == "cv"
    assert session.first_audio_at is not None
    assert session.done_sent_at is not None
    assert session.first_audio_at < session.done_sent_at
    state = await engine(server, "cv")
    assert state["capabilities"]["text_streaming"]
    assert state["stats"]["started"] == before + 1  # one synthesis for the whole session
    assert state["stats"]["completed"] >= 1
    assert session.of("audio.done")["usage"]["characters"] == len("".join(PIECES))
    assert len(session.audio) > 24000  # more than half a second of the model's speech
