"""Engines served by `voxgate worker` processes: the protocol end to end, the
gateway's `worker` engine over static URLs and over the Redis registry,
routing, a worker killed mid-request, and a clean deregistration on SIGTERM.

Everything runs as real processes over loopback; the engine is the simulated
one, whose audio is deterministic per text, so a request through a worker can
be compared byte for byte with the same request on an in-process engine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import websockets

from tests.support.redis import REDIS_URL, redis_env
from tests.support.text_engine import decode as decode_text
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.remote import RemoteOptions
from voxgate.engines.simulated import SPEAKERS, SimulatedEngine
from voxgate.testing import ServerProcess, WorkerProcess
from voxgate.text.markup import parse
from voxgate.text.split import split
from voxgate.worker import protocol
from voxgate.worker.client import WorkerClient
from voxgate.worker.protocol import FrameType

SIM = {"kind": "simulated", "options": {"first_chunk_ms": 20, "rtf": 0.02, "chunk_ms": 100}}
# Slow enough that requests overlap and a kill lands mid-stream.
SLOW = {
    "kind": "simulated",
    "options": {"first_chunk_ms": 200, "rtf": 0.5, "chunk_ms": 100, "capacity": 2},
}
UPSTREAM = {
    "kind": "openai-upstream",
    # Nobody listens on port 9: every synthesis finds the upstream down.
    "options": {"url": "http://127.0.0.1:9/v1", "retries": 0, "connect_timeout_s": 0.5},
}
TOKEN = "worker-secret-token"
TEXT = "Workers keep the model in its own process. The gateway keeps everything else."
LONG = "This sentence is long enough to give several seconds of simulated audio, " * 2


def engines_env(engines: dict[str, Any], **extra: str) -> dict[str, str]:
    # No result cache: every request must reach an engine.
    return {"VOXGATE_ENGINES": json.dumps(engines), "VOXGATE_CACHE_ENABLED": "false", **extra}


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def engine_info(gateway: ServerProcess, name: str = "sim") -> dict[str, Any]:
    info: dict[str, Any] = httpx.get(f"{gateway.url}/v1/engines/{name}", timeout=10).json()
    return info


def tts(url: str, text: str, **fields: Any) -> httpx.Response:
    body = {"text": text, "format": "pcm", **fields}
    return httpx.post(url + "/v1/tts", json=body, timeout=60)


@pytest.fixture(scope="module")
def sim_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(tmp_path_factory.mktemp("worker"), "sim", engines_env({"sim": SIM}))
    with worker:
        yield worker
    assert worker.process is not None
    assert worker.process.returncode == 0, worker.log()[-3000:]


@pytest.fixture(scope="module")
def via_worker(
    tmp_path_factory: pytest.TempPathFactory, sim_worker: WorkerProcess
) -> Iterator[ServerProcess]:
    """A gateway whose engine "sim" is the worker above."""
    engines = {"sim": {"kind": "worker", "options": {"urls": [sim_worker.url]}}}
    with ServerProcess(tmp_path_factory.mktemp("via"), engines_env(engines)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The same engine configuration, in the gateway's own process."""
    with ServerProcess(tmp_path_factory.mktemp("inproc"), engines_env({"sim": SIM})) as gateway:
        yield gateway


# -- the protocol, spoken directly -------------------------------------------------


def test_info_describes_the_engine_completely(sim_worker: WorkerProcess) -> None:
    info = httpx.get(sim_worker.url + "/worker/v1/info").json()
    engine = SimulatedEngine(**SIM["options"])  # type: ignore[arg-type]
    assert info["protocol"] == 1
    assert info["engine"] == "sim"
    assert info["kind"] == "simulated"
    assert protocol.capabilities_from_wire(info["capabilities"]) == engine.capabilities
    assert [s["id"] for s in info["speakers"]] == [s.id for s in SPEAKERS]
    assert info["default_speaker"] == SPEAKERS[0].id
    health = sim_worker.health()
    assert health["ready"] is True
    assert health["capacity"] == engine.capabilities.max_concurrency
    assert isinstance(health["rss_bytes"], int)
    assert health["rss_bytes"] > 10 * 2**20


def test_synthesis_frames_carry_the_engines_exact_samples(sim_worker: WorkerProcess) -> None:
    engine = SimulatedEngine(**SIM["options"])  # type: ignore[arg-type]
    request = EngineRequest("direct", Mode.SFT, tuple(split(parse(TEXT))), SPEAKERS[1])
    body = protocol.encode_request(request)
    response = httpx.post(sim_worker.url + "/worker/v1/synthesize", content=body, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == protocol.MEDIA_TYPE
    frames = protocol.decode_all(response.content)
    assert frames[-1].type == FrameType.END
    audio = [protocol.parse_audio(f.payload) for f in frames if f.type == FrameType.AUDIO]
    expected = engine.expected_audio(request)
    for index, samples in enumerate(expected):
        got = np.concatenate([s for seg, s in audio if seg == index])
        assert got.tobytes() == samples.tobytes()
    end = protocol.parse_json(frames[-1].payload)
    assert end == {"chunks": len(audio), "samples": sum(len(s) for s in expected)}


def test_engine_errors_come_back_as_error_frames_with_their_codes(
    sim_worker: WorkerProcess,
) -> None:
    segments = tuple(split(parse("fail here #fault:before")))
    body = protocol.encode_request(EngineRequest("f", Mode.SFT, segments, None))
    response = httpx.post(sim_worker.url + "/worker/v1/synthesize", content=body, timeout=30)
    assert response.status_code == 200
    (last,) = protocol.decode_all(response.content)
    assert last.type == FrameType.ERROR
    error = protocol.parse_json(last.payload)
    assert error["code"] == "engine_failed"
    assert "before the first chunk" in error["message"]


def test_requests_that_are_not_the_protocol_are_refused(sim_worker: WorkerProcess) -> None:
    bad = httpx.post(sim_worker.url + "/worker/v1/synthesize", content=b"\x10\x00\x00\x00\x02{]")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"
    missing = httpx.get(sim_worker.url + "/worker/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_closing_the_connection_cancels_the_engine_work(sim_worker: WorkerProcess) -> None:
    before = sim_worker.health()
    segments = tuple(split(parse("this never comes #fault:hang")))
    body = protocol.encode_request(EngineRequest("h", Mode.SFT, segments, None))
    async with (
        httpx.AsyncClient(base_url=sim_worker.url, timeout=30) as client,
        client.stream("POST", "/worker/v1/synthesize", content=body) as response,
    ):
        assert response.status_code == 200
        await asyncio.sleep(0.3)
        assert sim_worker.health()["in_flight"] == before["in_flight"] + 1
    # The engine was producing nothing at all: only the disconnect can stop it.
    wait_until(lambda: sim_worker.health()["in_flight"] == before["in_flight"], 10, "cancel")
    assert sim_worker.health()["cancelled"] == before["cancelled"] + 1


async def test_text_still_arriving_streams_through_a_worker(tmp_path: Path) -> None:
    engines = {"echo": {"kind": "tests.support.text_engine:TextEchoEngine"}}
    pieces = ["Hello, ", "text that ", "arrives ", "late."]
    first_audio = asyncio.Event()

    async def text() -> AsyncIterator[str]:
        yield pieces[0]
        # The rest only once the first piece came back as audio: a worker that
        # waited for the whole text would never answer.
        await first_audio.wait()
        for piece in pieces[1:]:
            yield piece

    with WorkerProcess(tmp_path, "echo", engines_env(engines)) as worker:
        client = WorkerClient(worker.url, RemoteOptions(url=worker.url))
        segments = tuple(split(parse("Before the stream.")))
        request = EngineRequest("t", Mode.SFT, segments, None, text_stream=text())
        heard: list[tuple[int, str]] = []

        async def listen() -> None:
            async for chunk in client.synthesize(request):
                heard.append((chunk.segment, decode_text(chunk.samples)))
                first_audio.set()

        try:
            await asyncio.wait_for(listen(), 20)
        finally:
            await client.close()
    assert heard == [(0, "Before the stream.")] + [(i + 1, p) for i, p in enumerate(pieces)]


# -- a gateway in front of a worker -------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"voice": "onyx", "speed": 1.5},
        {"text": "她[h][ào]干净 [laughter] 你好，世界。" * 3, "voice": "中文女"},
        {"format": "wav", "stream": True},
        {"format": "mp3"},
    ],
)
def test_audio_through_a_worker_is_byte_identical(
    via_worker: ServerProcess, in_process: ServerProcess, fields: dict[str, Any]
) -> None:
    text = fields.pop("text", TEXT)
    remote = tts(via_worker.url, text, **fields)
    local = tts(in_process.url, text, **fields)
    assert remote.status_code == 200, remote.text
    assert local.status_code == 200, local.text
    assert len(remote.content) > 1000
    assert remote.content == local.content
    assert remote.headers["x-voxgate-engine"] == "sim"


def test_the_engine_presents_the_workers_capabilities(
    via_worker: ServerProcess, in_process: ServerProcess
) -> None:
    remote, local = engine_info(via_worker), engine_info(in_process)
    assert remote["kind"] == "worker"
    assert remote["capabilities"] == local["capabilities"]
    assert remote["admission"]["capacity"] == local["capabilities"]["max_concurrency"]
    (worker,) = remote["info"]["workers"]
    assert worker["routable"] is True
    voices = httpx.get(via_worker.url + "/v1/audio/voices", params={"engine": "sim"}).json()
    assert {v["id"] for v in voices["data"]} >= {s.id for s in SPEAKERS}


def test_engine_faults_keep_their_codes_through_the_gateway(
    via_worker: ServerProcess, in_process: ServerProcess
) -> None:
    for text in ("before #fault:before", "ok"):
        remote = tts(via_worker.url, text, mode="instruct")
        local = tts(in_process.url, text, mode="instruct")
        assert remote.status_code == local.status_code == 400
        assert remote.json()["error"]["code"] == local.json()["error"]["code"]
    remote, local = tts(via_worker.url, "x #fault:before"), tts(in_process.url, "x #fault:before")
    assert remote.status_code == local.status_code == 500
    assert remote.json()["error"]["code"] == local.json()["error"]["code"] == "engine_failed"


def test_a_stream_failing_midway_on_the_worker_is_truncated(via_worker: ServerProcess) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        tts(via_worker.url, LONG + " #fault:mid", stream=True)


async def test_a_client_leaving_the_gateway_cancels_the_work_on_the_worker(
    via_worker: ServerProcess, sim_worker: WorkerProcess
) -> None:
    before = sim_worker.health()
    body = {"text": LONG + " #fault:stall", "format": "pcm", "stream": True}
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", via_worker.url + "/v1/tts", json=body) as response,
    ):
        assert response.status_code == 200
        async for _ in response.aiter_bytes():
            break  # first audio, then the worker stalls; the client leaves
    wait_until(lambda: sim_worker.health()["in_flight"] == before["in_flight"], 10, "cancel")
    assert sim_worker.health()["cancelled"] == before["cancelled"] + 1


# -- request errors raised by the engine on the worker ------------------------------------


@pytest.fixture(scope="module")
def upstream_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """An openai-upstream engine (its upstream down) behind a worker that needs
    a token, and in-process: (worker url, via-worker gateway, in-process gateway)."""
    root = tmp_path_factory.mktemp("upstream")
    env = engines_env({"up": UPSTREAM}, VOXGATE_WORKER_TOKEN=TOKEN)
    with WorkerProcess(root / "worker", "up", env) as worker:
        engines = {"up": {"kind": "worker", "options": {"urls": [worker.url], "retries": 1}}}
        gateway_env = engines_env(engines, VOXGATE_WORKER_TOKEN=TOKEN)
        with (
            ServerProcess(root / "via", gateway_env) as via,
            ServerProcess(root / "local", env) as local,
        ):
            yield worker.url, via.url, local.url


def test_a_worker_with_a_token_refuses_calls_without_it(
    upstream_pair: tuple[str, str, str],
) -> None:
    worker_url = upstream_pair[0]
    assert httpx.get(worker_url + "/worker/v1/info").json()["error"]["code"] == "auth_required"
    wrong = httpx.get(worker_url + "/worker/v1/info", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token"
    right = httpx.get(worker_url + "/worker/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.json()["kind"] == "openai-upstream"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"mode": "zero_shot"}, 400, "mode_unsupported"),  # from the worker's capabilities
        ({"language": "tlh"}, 400, "language_unsupported"),  # the engine's check, on the worker
        ({}, 503, "engine_unavailable"),  # the upstream behind the worker is down
    ],
)
def test_request_errors_keep_their_codes_end_to_end(
    upstream_pair: tuple[str, str, str], fields: dict[str, Any], status: int, code: str
) -> None:
    _, via, local = upstream_pair
    remote_answer = tts(via, "hello", voice="alloy", **fields)
    local_answer = tts(local, "hello", voice="alloy", **fields)
    assert (remote_answer.status_code, local_answer.status_code) == (status, status)
    assert remote_answer.json()["error"]["code"] == code
    assert local_answer.json()["error"]["code"] == code


# -- workers found in Redis ------------------------------------------------------------


def redis_workers(prefix: str, engine: str = "sim") -> list[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return sorted(m.decode() for m in client.zrange(f"{prefix}workers:{engine}", 0, -1))
    finally:
        client.close()


def redis_hashes(prefix: str, engine: str = "sim") -> list[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return sorted(k.decode() for k in client.scan_iter(match=f"{prefix}worker:{engine}:*"))
    finally:
        client.close()


def routable(gateway: ServerProcess) -> list[dict[str, Any]]:
    return [w for w in engine_info(gateway)["info"]["workers"] if w["routable"]]


async def stream_audio(
    client: httpx.AsyncClient, url: str, text: str, started: asyncio.Event
) -> bytes:
    body = {"text": text, "format": "pcm", "stream": True}
    data = b""
    async with client.stream("POST", url + "/v1/tts", json=body) as response:
        assert response.status_code == 200
        async for piece in response.aiter_raw():
            data += piece
            started.set()
    return data


async def test_registered_workers_share_the_load_and_a_killed_one_drops_out(
    tmp_path: Path, redis_prefix: str
) -> None:
    env = {
        **redis_env(redis_prefix),
        **engines_env({"sim": SLOW}),
        "VOXGATE_WORKER_HEARTBEAT_S": "0.5",
    }
    workers = [WorkerProcess(tmp_path / f"w{i}", "sim", env).start() for i in range(2)]
    engines = {"sim": {"kind": "worker", "options": {"engine": "sim", "refresh_s": 0.3}}}
    gateway = ServerProcess(tmp_path / "gw", {**env, **engines_env(engines)})
    try:
        gateway.start()
        wait_until(lambda: len(routable(gateway)) == 2, what="both workers routable")
        assert engine_info(gateway)["admission"]["capacity"] == 4  # 2 + 2
        assert len(redis_workers(redis_prefix)) == 2
        reference = tts(gateway.url, LONG).content

        # Least outstanding work: four calls at once, two on each worker.
        served = [w.health()["served"] for w in workers]
        async with httpx.AsyncClient(timeout=60) as client:
            body = {"text": LONG, "format": "pcm"}
            answers = await asyncio.gather(
                *(client.post(gateway.url + "/v1/tts", json=body) for _ in range(4))
            )
        assert all(a.status_code == 200 and a.content == reference for a in answers)
        delta = [w.health()["served"] - s for w, s in zip(workers, served, strict=True)]
        assert delta == [2, 2]

        # One call on each worker; the first worker dies mid-stream. Routing
        # counts other gateways' calls from the heartbeats: wait until they
        # show the first round ended, or a stale count skews the choice.
        wait_until(
            lambda: all(
                w["others_in_flight"] == 0 for w in engine_info(gateway)["info"]["workers"]
            ),
            what="heartbeats after the first round",
        )
        victim, survivor = workers
        async with httpx.AsyncClient(timeout=60) as client:
            started = [asyncio.Event(), asyncio.Event()]
            calls = [
                asyncio.create_task(stream_audio(client, gateway.url, LONG, started[i]))
                for i in range(2)
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
            assert [w.health()["in_flight"] for w in workers] == [1, 1]
            victim.kill()
            results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1, results
        assert isinstance(failed[0], httpx.RemoteProtocolError)  # a truncated stream
        assert [r for r in results if not isinstance(r, BaseException)] == [reference]

        # Every later call succeeds, on the survivor; the dead one leaves routing.
        for _ in range(3):
            answer = tts(gateway.url, LONG)
            assert answer.status_code == 200
            assert answer.content == reference
        wait_until(lambda: len(engine_info(gateway)["info"]["workers"]) == 1, what="expiry")
        (left,) = engine_info(gateway)["info"]["workers"]
        assert left["pid"] == survivor.pid
        assert engine_info(gateway)["admission"]["capacity"] == 2
        assert len(redis_workers(redis_prefix)) == 1
        assert len(redis_hashes(redis_prefix)) == 1
    finally:
        gateway.stop()
        for worker in workers:
            worker.stop()


async def test_sigterm_deregisters_at_once_and_drains(tmp_path: Path, redis_prefix: str) -> None:
    env = {**redis_env(redis_prefix), **engines_env({"sim": SLOW})}
    worker = WorkerProcess(tmp_path / "w", "sim", env).start()
    engines = {"sim": {"kind": "worker", "options": {"engine": "sim", "refresh_s": 0.3}}}
    gateway = ServerProcess(tmp_path / "gw", {**env, **engines_env(engines)})
    try:
        gateway.start()
        wait_until(lambda: len(routable(gateway)) == 1, what="worker routable")
        assert len(redis_hashes(redis_prefix)) == 1
        reference = tts(gateway.url, LONG).content
        async with httpx.AsyncClient(timeout=60) as client:
            started = asyncio.Event()
            call = asyncio.create_task(stream_audio(client, gateway.url, LONG, started))
            await asyncio.wait_for(started.wait(), 30)
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
            # Deregistered before draining: no gateway sends it new work.
            await asyncio.to_thread(
                wait_until, lambda: not redis_hashes(redis_prefix), 5, "deregistration"
            )
            assert worker.process.poll() is None  # still finishing the call
            assert await call == reference  # the call under way completed
        assert await asyncio.to_thread(worker.process.wait, 20) == 0
        assert redis_workers(redis_prefix) == []
        wait_until(lambda: engine_info(gateway)["info"]["workers"] == [], what="gateway forgets it")
        gone = tts(gateway.url, "anyone there?")
        assert gone.status_code == 503
        assert gone.json()["error"]["code"] == "engine_unavailable"
    finally:
        gateway.stop()
        worker.stop()


def test_a_static_worker_restarted_on_its_port_is_used_again(tmp_path: Path) -> None:
    env = engines_env({"sim": SIM})
    first = WorkerProcess(tmp_path / "w1", "sim", env).start()
    engines = {"sim": {"kind": "worker", "options": {"urls": [first.url]}}}
    gateway = ServerProcess(tmp_path / "gw", engines_env(engines)).start()
    second = WorkerProcess(tmp_path / "w2", "sim", env, port=first.port)
    try:
        reference = tts(gateway.url, TEXT)
        assert reference.status_code == 200
        assert first.stop() == 0
        second.start()  # a rolling restart: same URL, new process
        answer = tts(gateway.url, TEXT)
        assert answer.status_code == 200
        assert answer.content == reference.content
        assert second.health()["served"] == 1
        (worker,) = engine_info(gateway)["info"]["workers"]
        wait_until(lambda: engine_info(gateway)["info"]["workers"][0]["pid"] == second.pid)
        assert worker["routable"] is True
    finally:
        gateway.stop()
        first.stop()
        second.stop()


def test_a_dead_worker_is_retried_elsewhere_before_the_first_byte(tmp_path: Path) -> None:
    env = engines_env({"sim": SIM})
    workers = [WorkerProcess(tmp_path / f"w{i}", "sim", env).start() for i in range(2)]
    # No health probe during the test: only calls can find out.
    options = {"urls": [w.url for w in workers], "health_interval_s": 600}
    gateway = ServerProcess(
        tmp_path / "gw", engines_env({"sim": {"kind": "worker", "options": options}})
    )
    try:
        gateway.start()
        reference = tts(gateway.url, TEXT)
        workers[0].kill()
        for _ in range(4):
            answer = tts(gateway.url, TEXT)
            assert answer.status_code == 200
            assert answer.content == reference.content
        dead, alive = engine_info(gateway)["info"]["workers"]
        assert dead["routable"] is False
        assert "cannot connect" in dead["down"]
        assert dead["failed"] == 1  # tried once, then never again
        assert alive["routable"] is True
        assert workers[1].health()["served"] >= 4
    finally:
        gateway.stop()
        for worker in workers:
            worker.stop()


def test_the_worker_command_refuses_an_unknown_engine(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voxgate", "worker", "--engine", "nope", "--port", "0"],
        env={**os.environ, **engines_env({"sim": SIM}), "VOXGATE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no engine named 'nope'" in done.stderr
    assert "sim" in done.stderr


async def speak_over_websocket(gateway: ServerProcess, text: str) -> tuple[bytes, float, float]:
    """Word by word, as an LLM sends it: (audio, first audio at, text done at)."""
    url = gateway.url.replace("http://", "ws://") + "/v1/audio/speech/stream"
    audio = bytearray()
    first_audio = 0.0

    async def receive(ws: Any) -> None:
        nonlocal first_audio
        async for message in ws:
            if isinstance(message, bytes):
                first_audio = first_audio or time.perf_counter()
                audio.extend(message)

    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "session.config", "engine": "sim", "format": "pcm"}))
        reader = asyncio.create_task(receive(ws))
        for word in text.split(" "):
            await ws.send(json.dumps({"type": "input.text", "text": word + " "}))
            await asyncio.sleep(0.05)
        done_sent = time.perf_counter()
        await ws.send(json.dumps({"type": "input.done"}))
        await asyncio.wait_for(reader, 60)
    return bytes(audio), first_audio, done_sent


async def test_text_streamed_over_websocket_is_spoken_through_a_worker(
    via_worker: ServerProcess, in_process: ServerProcess
) -> None:
    """The WebSocket surface feeds the engine text while it arrives: through a
    worker too, the first audio leaves before the text is complete."""
    text = "The first sentence is here. Then comes a second one. And a short third!"
    audio, first_audio, done_sent = await speak_over_websocket(via_worker, text)
    local, _, _ = await speak_over_websocket(in_process, text)
    assert 0 < first_audio < done_sent  # spoke before the text was complete
    assert len(audio) > 48_000
    assert audio == local  # the same sentences, the same samples
