"""Prometheus metrics of a real server: what requests record, and what the
live gauges show while requests wait for a saturated engine."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voxgate.testing import ServerProcess

SAMPLE_RATE = 24000
ENGINES = {
    # fast: rtf 0.1, so a request's real-time factor is near 0.1
    "sim": {
        "kind": "simulated",
        "options": {"first_chunk_ms": 20, "rtf": 0.1, "chunk_ms": 100, "sample_rate": SAMPLE_RATE},
    },
    # one slot and slow: a second request must wait in the admission queue
    "slow": {
        "kind": "simulated",
        "options": {"first_chunk_ms": 50, "rtf": 0.5, "chunk_ms": 100, "capacity": 1},
    },
    # two interchangeable endpoints behind one name, each behind a circuit breaker
    "pair": {
        "kind": "simulated",
        "options": {"first_chunk_ms": 20, "rtf": 0.1},
        "endpoints": [{"id": "a"}, {"id": "b"}],
    },
}
SPEECH = "/v1/audio/speech"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "VOXGATE_ENGINES": json.dumps(ENGINES),
        "VOXGATE_DEFAULT_ENGINE": "sim",
        "VOXGATE_BREAKER_MIN_CALLS": "1",  # one failure opens a breaker
    }
    with ServerProcess(tmp_path_factory.mktemp("metrics"), env) as server:
        yield server


@pytest.fixture
def client(sim: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=60) as c:
        yield c


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_exposition_formats(client: httpx.Client) -> None:
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "# TYPE voxgate_requests_total counter" in plain.text
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


def test_syntheses_are_counted_once_each(client: httpx.Client) -> None:
    texts = ["Counting the first request.", "And the second one.", "Third, and last."]
    before = scrape(client)
    audio_s = 0.0
    for text in texts:
        r = client.post(SPEECH, json={"input": text, "response_format": "pcm"})
        assert r.status_code == 200, r.text
        audio_s += len(r.content) / 2 / SAMPLE_RATE
    after = scrape(client)

    route = {"route": SPEECH}
    assert delta(
        before, after, "voxgate_requests_total", method="POST", status="200", engine="sim", **route
    ) == len(texts)
    assert delta(
        before, after, "voxgate_time_to_first_audio_seconds_count", engine="sim", **route
    ) == len(texts)
    assert delta(
        before, after, "voxgate_request_duration_seconds_count", engine="sim", **route
    ) == len(texts)
    assert delta(before, after, "voxgate_characters_total", engine="sim") == sum(map(len, texts))
    assert delta(before, after, "voxgate_audio_seconds_total", engine="sim") == pytest.approx(
        audio_s, abs=1e-3
    )
    assert delta(
        before, after, "voxgate_queue_wait_seconds_count", engine="sim", priority="realtime"
    ) == len(texts)
    count = delta(before, after, "voxgate_real_time_factor_count", engine="sim")
    mean_rtf = delta(before, after, "voxgate_real_time_factor_sum", engine="sim") / count
    assert count == len(texts)
    assert 0.05 < mean_rtf < 0.6, mean_rtf  # the engine's configured 0.1, plus first chunk
    ttfa_sum = delta(
        before, after, "voxgate_time_to_first_audio_seconds_sum", engine="sim", **route
    )
    assert 0.02 * len(texts) <= ttfa_sum  # at least the engine's first-chunk time each


def test_errors_are_counted_by_code_and_status(client: httpx.Client) -> None:
    before = scrape(client)
    r = client.post(SPEECH, json={"input": "Too fast.", "speed": 9})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "speed_out_of_range")
    r = client.post(SPEECH, json={"input": "No such model.", "model": "nope"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    after = scrape(client)
    assert delta(before, after, "voxgate_errors_total", code="speed_out_of_range") == 1
    assert delta(before, after, "voxgate_errors_total", code="model_not_found") == 1
    labels = {"route": SPEECH, "method": "POST", "engine": ""}
    assert delta(before, after, "voxgate_requests_total", status="400", **labels) == 1
    assert delta(before, after, "voxgate_requests_total", status="404", **labels) == 1
    # Nothing was synthesized: no characters counted for the failed requests.
    assert delta(before, after, "voxgate_characters_total", engine="sim") == 0


def test_route_label_is_the_template(client: httpx.Client) -> None:
    before = scrape(client)
    assert client.get("/v1/audio/voices/alloy").status_code == 404
    assert client.get("/v1/audio/voices/voice_0123456789abcdef01234567").status_code == 404
    assert client.get("/v1/no-such-route/secret-id-42").status_code == 404
    after = scrape(client)
    labels = {"method": "GET", "status": "404", "engine": ""}
    route = "/v1/audio/voices/{voice_id}"
    assert delta(before, after, "voxgate_requests_total", route=route, **labels) == 2
    assert delta(before, after, "voxgate_requests_total", route="other", **labels) == 1
    text = client.get("/metrics").text
    for raw in ("alloy", "voice_0123456789abcdef01234567", "secret-id-42", "no-such-route"):
        assert raw not in text, f"{raw} leaked into a label"


def test_queue_gauges_while_requests_wait(client: httpx.Client) -> None:
    before = scrape(client)
    results: list[int] = []

    def speak(priority: str, n: int) -> None:
        # ~3 s of audio; texts differ, so no request joins another's synthesis
        text = f"Sentence number {n}, long enough to keep the slow engine busy."
        with httpx.Client(base_url=client.base_url, timeout=60) as c:
            body = {"input": text, "model": "slow", "response_format": "wav"}
            r = c.post(SPEECH, json=body, headers={"X-Voxgate-Priority": priority})
            results.append(r.status_code)

    priorities = ("realtime", "realtime", "batch")
    threads = [threading.Thread(target=speak, args=(p, n)) for n, p in enumerate(priorities)]
    for t in threads:
        t.start()
    seen: Samples = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = scrape(client)
        waiting = sum(
            value(seen, "voxgate_queue_length", engine="slow", priority=p)
            for p in ("realtime", "batch")
        )
        if waiting >= 2:
            break
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    assert results == [200, 200, 200]
    # While two waited, the one slot was taken and the engine was running one.
    assert value(seen, "voxgate_queue_length", engine="slow", priority="realtime") >= 1
    assert value(seen, "voxgate_engine_capacity", engine="slow") == 1
    assert value(seen, "voxgate_engine_in_use", engine="slow") == 1
    assert value(seen, "voxgate_in_flight_requests", engine="slow") == 1
    assert value(seen, "voxgate_http_in_flight_requests") >= 3

    after = scrape(client)
    for p in ("realtime", "batch"):
        assert value(after, "voxgate_queue_length", engine="slow", priority=p) == 0
    assert value(after, "voxgate_engine_in_use", engine="slow") == 0
    waits = {
        p: delta(before, after, "voxgate_queue_wait_seconds_count", engine="slow", priority=p)
        for p in ("realtime", "batch")
    }
    assert waits == {"realtime": 2, "batch": 1}
    waited = sum(
        delta(before, after, "voxgate_queue_wait_seconds_sum", engine="slow", priority=p)
        for p in ("realtime", "batch")
    )
    assert waited > 1.0  # two of three waited for a ~1.5 s synthesis at least
    assert delta(before, after, "voxgate_admission_admitted_total", engine="slow") == 3


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    env = {
        "VOXGATE_ENGINES": json.dumps({"sim": ENGINES["sim"]}),
        "VOXGATE_METRICS_ENABLED": "false",
    }
    with ServerProcess(tmp_path, env) as server:
        r = httpx.get(server.url + "/metrics")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


def test_cache_hits_are_counted_but_not_as_engine_work(
    sim: ServerProcess, client: httpx.Client
) -> None:
    text = "Said twice, synthesized once."
    body = {"input": text, "response_format": "wav"}
    before = scrape(client)
    first = client.post(SPEECH, json=body, headers={"X-Request-ID": "cache-miss-1"})
    deadline = time.monotonic() + 10  # stored once its synthesis has fully ended
    while value(scrape(client), "voxgate_cache_entries") <= value(before, "voxgate_cache_entries"):
        assert time.monotonic() < deadline, "the result was never stored"
        time.sleep(0.05)
    second = client.post(SPEECH, json=body, headers={"X-Request-ID": "cache-hit-1"})
    after = scrape(client)
    assert first.status_code == second.status_code == 200
    assert second.headers["x-voxgate-cache"] == "hit"
    assert second.content == first.content
    assert delta(before, after, "voxgate_cache_requests_total", result="miss") == 1
    assert delta(before, after, "voxgate_cache_requests_total", result="hit") == 1
    assert value(after, "voxgate_cache_entries") >= 1
    assert value(after, "voxgate_cache_bytes") >= len(first.content)
    # Both were answered with audio; only the first took a slot and ran the engine.
    assert delta(before, after, "voxgate_characters_total", engine="sim") == 2 * len(text)
    assert (
        delta(
            before, after, "voxgate_time_to_first_audio_seconds_count", engine="sim", route=SPEECH
        )
        == 2
    )
    assert (
        delta(before, after, "voxgate_queue_wait_seconds_count", engine="sim", priority="realtime")
        == 1
    )
    assert delta(before, after, "voxgate_real_time_factor_count", engine="sim") == 1
    lines = [json.loads(raw) for raw in sim.log().splitlines() if '"cache-' in raw]
    logged = {
        line["request_id"]: line.get("cache")
        for line in lines
        if line["logger"] == "voxgate.access"
    }
    assert logged == {"cache-miss-1": "miss", "cache-hit-1": "hit"}


def test_breaker_states_per_endpoint(client: httpx.Client) -> None:
    before = scrape(client)
    endpoints = {
        dict(labels)["endpoint"]: v
        for (name, labels), v in before.items()
        if name == "voxgate_breaker_state" and dict(labels)["engine"] == "pair"
    }
    assert len(endpoints) == 2
    assert set(endpoints.values()) == {0.0}  # closed
    r = client.post(SPEECH, json={"input": "Fail before audio. #fault:before", "model": "pair"})
    assert r.status_code >= 500
    after = scrape(client)
    states = {
        e: value(after, "voxgate_breaker_state", engine="pair", endpoint=e) for e in endpoints
    }
    assert 2.0 in states.values(), states  # the endpoint that failed is open
    for e in endpoints:
        assert value(after, "voxgate_endpoint_in_flight_requests", engine="pair", endpoint=e) == 0
        assert value(after, "voxgate_endpoint_draining", engine="pair", endpoint=e) == 0
