"""Fault injection with the simulated engine: every failure is clean, coded and
detectable, and the server survives all of it with nothing left behind."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.audio import decode
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.simulated import SPEAKERS, SimulatedEngine
from voxgate.testing import ServerProcess
from voxgate.text.markup import parse
from voxgate.text.split import split

LONG = "This sentence is long enough to make several chunks of simulated audio. "
ENGINE_TIMEOUT_S = 1.0
OPTIONS = {"first_chunk_ms": 20, "rtf": 0.05, "chunk_ms": 100, "capacity": 8}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("faults")
    (root / "tmp").mkdir()
    engines = {"sim": {"kind": "simulated", "options": OPTIONS, "timeout_s": ENGINE_TIMEOUT_S}}
    env = {"VOXGATE_ENGINES": json.dumps(engines), "TMPDIR": str(root / "tmp")}
    with ServerProcess(root / "data", env) as server:
        yield server


@pytest.fixture(scope="module")
def baseline(sim: ServerProcess) -> dict:
    with httpx.Client(base_url=sim.url) as c:
        c.post("/v1/audio/speech", json={"input": "warm up", "response_format": "mp3"})
        return c.get("/v1/admin/runtime").json()


@pytest.fixture
def client(sim: ServerProcess, baseline: dict) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=30) as c:
        yield c


def speech(fmt: str = "pcm", text: str = LONG, **extra: object) -> dict:
    return {"model": "sim", "voice": "alloy", "input": text, "response_format": fmt, **extra}


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_error_before_first_chunk_is_a_clean_coded_5xx(
    client: httpx.Client, stream_format: str
) -> None:
    r = client.post(
        "/v1/audio/speech", json=speech(text="hi #fault:before", stream_format=stream_format)
    )
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "engine_failed"


def test_error_before_first_chunk_whole_native(client: httpx.Client) -> None:
    r = client.post("/v1/tts", json={"text": "hi #fault:before", "engine": "sim", "format": "wav"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "engine_failed"


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def read_stream(client: httpx.Client, body: dict, into: bytearray) -> None:
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            into += chunk


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_error_mid_stream_truncates_the_body_detectably(client: httpx.Client, fmt: str) -> None:
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        read_stream(client, speech(fmt, LONG * 3 + "#fault:mid"), received)
    assert received, "some audio had been sent before the failure"


def test_error_mid_stream_sse_sends_an_error_event(client: httpx.Client) -> None:
    events = []
    with client.stream(
        "POST", "/v1/audio/speech", json=speech(text=LONG * 3 + "#fault:mid", stream_format="sse")
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[0]["type"] == "speech.audio.delta"
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "engine_failed"
    assert all(e["type"] != "speech.audio.done" for e in events)


def test_error_mid_synthesis_of_a_whole_file_is_a_clean_5xx(client: httpx.Client) -> None:
    r = client.post("/v1/tts", json={"text": LONG * 3 + "#fault:mid", "engine": "sim"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "engine_failed"


def test_hang_before_first_chunk_times_out_with_504(client: httpx.Client) -> None:
    started = time.monotonic()
    r = client.post("/v1/audio/speech", json=speech(text="stuck #fault:hang"))
    elapsed = time.monotonic() - started
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "engine_timeout"
    assert "Retry-After" in r.headers
    assert ENGINE_TIMEOUT_S <= elapsed < ENGINE_TIMEOUT_S + 2


def test_stall_mid_stream_times_out_and_truncates(client: httpx.Client) -> None:
    started = time.monotonic()
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/v1/audio/speech", json=speech(text=LONG * 3 + "#fault:stall")) as r,
    ):
        for _ in r.iter_bytes():
            pass
    assert time.monotonic() - started < ENGINE_TIMEOUT_S + 2


@pytest.mark.parametrize("fmt", ["pcm", "wav", "flac", "mp3", "opus", "aac"])
def test_nan_and_inf_never_reach_the_encoder(client: httpx.Client, fmt: str) -> None:
    text = "bad samples from the model #fault:nan"
    r = client.post("/v1/audio/speech", json=speech(fmt, text, sample_rate=24000))
    assert r.status_code == 200
    decoded = decode(r.content, fmt)
    assert np.isfinite(decoded.samples).all()
    if fmt in ("pcm", "wav", "flac"):
        engine = SimulatedEngine(**OPTIONS)  # type: ignore[arg-type]
        req = EngineRequest("x", Mode.SFT, tuple(split(parse(text))), SPEAKERS[0])
        raw = np.concatenate(engine.expected_audio(req))
        # the engine's audio, with every sample it broke silenced
        expected = raw.copy()
        per_chunk = 2400
        for start in range(0, len(raw), per_chunk):
            piece = expected[start : start + per_chunk]
            piece[:: max(1, len(piece) // 7)] = 0.0
            piece[1 :: max(1, len(piece) // 5)] = 0.0
        assert np.abs(decoded.samples - expected).max() <= 1 / 32768 + 1e-6


def test_sse_audio_is_complete_after_faults(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/audio/speech", json=speech(stream_format="sse")) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert events[-1]["type"] == "speech.audio.done"
    assert len(audio) > 0


def test_server_survives_with_nothing_left_behind(
    sim: ServerProcess, client: httpx.Client, baseline: dict
) -> None:
    r = client.post("/v1/audio/speech", json=speech("mp3", "Still serving after every fault."))
    assert r.status_code == 200
    assert sim.alive()
    deadline = time.monotonic() + 5
    while True:
        engines = client.get("/v1/engines").json()["data"][0]
        runtime = client.get("/v1/admin/runtime").json()
        settled = (
            engines["stats"]["active"] == 0
            and engines["admission"]["in_use"] == 0
            and runtime["tasks"] <= baseline["tasks"]
            and runtime["open_fds"] <= baseline["open_fds"]
        )
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert engines["stats"]["active"] == 0
    assert engines["admission"]["in_use"] == 0
    assert engines["stats"]["failed"] >= 5
    assert runtime["tasks"] <= baseline["tasks"], (runtime, baseline)
    assert runtime["open_fds"] <= baseline["open_fds"], (runtime, baseline)
    assert os.listdir(Path(sim.data_dir).parent / "tmp") == [], "no temporary files left"
