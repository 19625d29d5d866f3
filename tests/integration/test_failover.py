"""Endpoints, circuit breakers and failover, on real servers with simulated
endpoints: one that always fails beside one that works, faults on demand by
text marker, and short breaker settings so cool-downs pass within a test."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.audio import decode
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.simulated import SPEAKERS, SimulatedEngine
from voxgate.testing import ServerProcess
from voxgate.text.markup import parse
from voxgate.text.split import split

OPTIONS = {"first_chunk_ms": 10, "rtf": 0.02, "chunk_ms": 100, "capacity": 4}
LONG = "This sentence is long enough to make several chunks of simulated audio. "
BREAKERS = {"VOXGATE_BREAKER_MIN_CALLS": "4", "VOXGATE_BREAKER_WINDOW_S": "60"}


def start(root: Path, engines: dict[str, Any], **env: str) -> ServerProcess:
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    environment = {
        "VOXGATE_ENGINES": json.dumps(engines),
        "TMPDIR": str(root / "tmp"),
        **BREAKERS,
        **env,
    }
    return ServerProcess(root / "data", environment).start()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    engines = {
        # "a" fails every call before its first chunk; "b" works.
        "sim": {
            "kind": "simulated",
            "options": OPTIONS,
            "endpoints": [{"id": "a", "fault_rates": {"before": 1.0}}, {"id": "b"}],
        },
        "pair": {"kind": "simulated", "options": OPTIONS, "endpoints": [{}, {}], "timeout_s": 1},
        "single": {"kind": "simulated", "options": OPTIONS},
    }
    server = start(tmp_path_factory.mktemp("failover"), engines, VOXGATE_BREAKER_COOLDOWN_S="300")
    yield server
    assert server.stop() == 0, server.log()[-3000:]


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two working endpoints that fail on demand; a cool-down of 2 s."""
    engines = {"sim": {"kind": "simulated", "options": OPTIONS, "endpoints": [{}, {}]}}
    root = tmp_path_factory.mktemp("flaky")
    server = start(root, engines, VOXGATE_BREAKER_MIN_CALLS="2", VOXGATE_BREAKER_COOLDOWN_S="2")
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def speech(client: httpx.Client, model: str, text: str) -> httpx.Response:
    body = {"model": model, "voice": "alloy", "input": text, "response_format": "pcm"}
    return client.post("/v1/audio/speech", json=body)


def read_stream(client: httpx.Client, body: dict[str, Any], into: bytearray) -> None:
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            into += chunk


def endpoints(client: httpx.Client, engine: str) -> dict[str, dict[str, Any]]:
    info = client.get(f"/v1/engines/{engine}").json()
    return {e["name"]: e for e in info["endpoints"]}


def started(client: httpx.Client, engine: str) -> dict[str, int]:
    return {name: e["stats"]["started"] for name, e in endpoints(client, engine).items()}


def expected_pcm(text: str) -> np.ndarray:
    engine = SimulatedEngine(**OPTIONS)  # type: ignore[arg-type]
    request = EngineRequest("x", Mode.SFT, tuple(split(parse(text))), SPEAKERS[0])
    return np.concatenate(engine.expected_audio(request))


def test_a_failing_endpoint_is_retried_transparently_then_cut_off(gateway: ServerProcess) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for i in range(12):
            text = f"Request number {i} gets its own audio."
            r = speech(client, "sim", text)
            assert r.status_code == 200, r.text
            assert r.headers["x-voxgate-engine"] == "sim"
            got = decode(r.content, "pcm").samples
            want = expected_pcm(text)
            assert len(got) == len(want)
            assert np.abs(got - want).max() <= 1 / 32768 + 1e-6
        state = endpoints(client, "sim")
        failing, working = state["sim#a"], state["sim#b"]
        assert failing["breaker"]["state"] == "open"
        assert failing["breaker"]["retry_after_s"] > 200
        # The breaker opened at the fourth failure; nothing went there since.
        assert failing["stats"]["started"] == 4
        assert failing["stats"]["failed"] == 4
        assert working["stats"]["completed"] == 12
        assert working["breaker"]["state"] == "closed"
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"
        assert ready["endpoints"]["sim"] == {
            "sim#a": {"ready": True, "breaker": "open", "draining": False},
            "sim#b": {"ready": True, "breaker": "closed", "draining": False},
        }


def test_a_failure_before_the_first_byte_is_tried_on_the_other_endpoint(
    gateway: ServerProcess,
) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        before = started(client, "pair")
        r = speech(client, "pair", "fails everywhere #fault:before")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "engine_failed"
        after = started(client, "pair")
        # Both endpoints were tried, once each: the retry is bounded.
        assert {n: after[n] - before[n] for n in after} == {"pair#0": 1, "pair#1": 1}


def test_a_failure_after_the_first_byte_is_not_retried(gateway: ServerProcess) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        before = started(client, "pair")
        received = bytearray()
        body = {"model": "pair", "voice": "alloy", "input": LONG * 3 + "#fault:mid"}
        with pytest.raises(httpx.RemoteProtocolError):
            read_stream(client, {**body, "response_format": "pcm"}, received)
        assert received, "audio had been sent before the failure"
        after = started(client, "pair")
        assert sum(after.values()) - sum(before.values()) == 1


def test_an_endpoint_that_hangs_counts_as_a_failure(gateway: ServerProcess) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        before = {n: e["breaker"]["failures"] for n, e in endpoints(client, "pair").items()}
        r = speech(client, "pair", "stuck #fault:hang")
        assert r.status_code == 504
        after = {n: e["breaker"]["failures"] for n, e in endpoints(client, "pair").items()}
        assert sum(after.values()) - sum(before.values()) == 1


def test_an_engine_without_endpoints_has_no_breaker(gateway: ServerProcess) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for _ in range(6):  # more failures than the breakers' minimum volume
            r = speech(client, "single", "fails #fault:before")
            assert r.status_code == 500
            assert r.json()["error"]["code"] == "engine_failed"
        info = client.get("/v1/engines/single").json()
        assert "endpoints" not in info
        assert speech(client, "single", "still served").status_code == 200


def test_all_breakers_open_is_a_quick_503_then_probes_recover(flaky: ServerProcess) -> None:
    with httpx.Client(base_url=flaky.url, timeout=30) as client:
        for _ in range(2):  # each request fails on both endpoints
            assert speech(client, "sim", "broken #fault:before").status_code == 500
        assert {e["breaker"]["state"] for e in endpoints(client, "sim").values()} == {"open"}
        calls = started(client, "sim")
        r = speech(client, "sim", "this would work")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "circuit_open"
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert started(client, "sim") == calls, "no endpoint was called"

        time.sleep(float(r.headers["retry-after"]) + 0.1)
        r = speech(client, "sim", "the probe works")
        assert r.status_code == 200
        states = sorted(e["breaker"]["state"] for e in endpoints(client, "sim").values())
        assert states == ["closed", "half_open"]  # one probe closed its endpoint
        assert speech(client, "sim", "and so does the next").status_code == 200


def test_a_failed_probe_opens_the_breaker_again(flaky: ServerProcess) -> None:
    with httpx.Client(base_url=flaky.url, timeout=30) as client:
        for _ in range(3):
            speech(client, "sim", "broken #fault:before")
        r = speech(client, "sim", "refused")
        assert r.status_code == 503
        time.sleep(float(r.headers["retry-after"]) + 0.1)
        # Cool-down over: both probes (one per endpoint) fail, both reopen.
        assert speech(client, "sim", "broken again #fault:before").status_code == 500
        r = speech(client, "sim", "refused again")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "circuit_open"
        assert {e["breaker"]["state"] for e in endpoints(client, "sim").values()} == {"open"}


def test_cached_answers_are_still_served_while_every_breaker_is_open(
    tmp_path: Path,
) -> None:
    """An outage of every endpoint refuses new syntheses (503 circuit_open),
    but what is already in the result cache keeps being answered."""
    engines = {"sim": {"kind": "simulated", "options": OPTIONS, "endpoints": [{}, {}]}}
    server = start(
        tmp_path, engines, VOXGATE_BREAKER_MIN_CALLS="2", VOXGATE_BREAKER_COOLDOWN_S="60"
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = speech(client, "sim", "a greeting worth keeping")
            assert first.status_code == 200
            for _ in range(2):
                assert speech(client, "sim", "broken #fault:before").status_code == 500
            assert {e["breaker"]["state"] for e in endpoints(client, "sim").values()} == {"open"}
            hit = speech(client, "sim", "a greeting worth keeping")
            assert hit.status_code == 200
            assert hit.headers["x-voxgate-cache"] == "hit"
            assert hit.content == first.content
            fresh = speech(client, "sim", "something never said before")
            assert fresh.status_code == 503
            assert fresh.json()["error"]["code"] == "circuit_open"
            assert int(fresh.headers["retry-after"]) >= 1
    finally:
        assert server.stop() == 0, server.log()[-3000:]
