"""Rate limits and character quotas against real gateway processes.

Anonymous callers are limited per address, and the whole 127/8 block is
loopback, so each test speaks from addresses of its own (127.0.0.x) and
gets counters of its own on a shared server. Requests are cheap: the
simulated engine, short texts, and GET /v1/models where only the count
matters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.redis import redis_env
from voxgate.testing import ServerProcess
from voxgate.text.normalize import normalize

ENGINES = json.dumps({"sim": {"kind": "simulated", "options": {"first_chunk_ms": 0, "rtf": 0.01}}})
ADMIN_TOKEN = "test-admin-token-for-limits"


def client(server: ServerProcess, address: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=server.url,
        transport=httpx.HTTPTransport(local_address=address),
        headers=headers,
        timeout=30,
    )


def speech(http: httpx.Client, text: str) -> httpx.Response:
    return http.post("/v1/audio/speech", json={"input": text, "voice": "alloy"})


def seconds_to_utc_midnight() -> float:
    now = time.time()
    return (now // 86_400 + 1) * 86_400 - now


def assert_limited(response: httpx.Response, code: str) -> dict[str, str]:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "rate_limit_error"  # what the OpenAI SDK maps to RateLimitError
    assert error["hint"]
    assert "x-request-id" in response.headers
    return dict(error)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Auth off (loopback): every caller is anonymous, limited by address."""
    env = {
        "VOXGATE_ENGINES": ENGINES,
        "VOXGATE_RATE_LIMIT_ANONYMOUS_RPM": "5",
        "VOXGATE_QUOTA_CHARACTERS_PER_DAY": "20",
    }
    with ServerProcess(tmp_path_factory.mktemp("limits"), env) as server:
        yield server


def test_anonymous_callers_are_limited_per_address(gateway: ServerProcess) -> None:
    with client(gateway, "127.0.0.3") as http:
        for left in (4, 3, 2, 1, 0):
            ok = http.get("/v1/models")
            assert ok.status_code == 200
            assert ok.headers["x-ratelimit-limit"] == "5"
            assert ok.headers["x-ratelimit-remaining"] == str(left)
            assert ok.headers["x-ratelimit-reset"] == str(12 * (5 - left))
        refused = http.get("/v1/models")
        error = assert_limited(refused, "rate_limited")
        assert "address" in error["message"]
        # one request frees every 60/5 s; the header rounds up, never down
        assert 10 <= int(refused.headers["retry-after"]) <= 12
        assert refused.headers["x-ratelimit-limit"] == "5"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert 58 <= int(refused.headers["x-ratelimit-reset"]) <= 60
        # probes and the API description are never limited
        for path in ("/healthz", "/readyz", "/openapi.json"):
            probe = http.get(path)
            assert probe.status_code == 200, path
            assert "x-ratelimit-limit" not in probe.headers
    with client(gateway, "127.0.0.4") as other:
        assert other.get("/v1/models").headers["x-ratelimit-remaining"] == "4"


def test_successful_audio_carries_the_rate_limit_headers(gateway: ServerProcess) -> None:
    with client(gateway, "127.0.0.8") as http:
        r = speech(http, "Hi.")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("audio/")
        assert r.headers["x-ratelimit-limit"] == "5"
        assert r.headers["x-ratelimit-remaining"] == "4"


def test_character_quota_refuses_before_any_audio(gateway: ServerProcess) -> None:
    first, second, last = "Hello there.", "Hello again.", "Okay now"
    assert [len(normalize(t)) for t in (first, second, last)] == [12, 12, 8]
    with client(gateway, "127.0.0.5") as http:
        assert speech(http, first).status_code == 200
        refused = speech(http, second)
        error = assert_limited(refused, "quota_exceeded")
        assert "12 of 20" in error["message"]
        assert refused.headers["x-quota-limit"] == "20"
        assert refused.headers["x-quota-remaining"] == "8"
        assert abs(int(refused.headers["retry-after"]) - seconds_to_utc_midnight()) <= 5
        # a request refused for another reason is not charged ...
        wrong = http.post("/v1/audio/speech", json={"input": "Fine.", "voice": "nobody"})
        assert wrong.status_code == 400
        # ... and every surface draws on the same quota: 12 + 8 is exactly 20
        native = http.post("/v1/tts", json={"text": last, "voice": "alloy"})
        assert native.status_code == 200, native.text
        assert native.headers["content-type"] == "audio/wav"
        assert_limited(speech(http, "x"), "quota_exceeded")


def test_two_gateways_on_one_redis_share_limits_and_quotas(
    tmp_path: Path, redis_prefix: str
) -> None:
    env = {
        "VOXGATE_ENGINES": ENGINES,
        "VOXGATE_RATE_LIMIT_ANONYMOUS_RPM": "6",
        "VOXGATE_QUOTA_CHARACTERS_PER_DAY": "12",
        **redis_env(redis_prefix),
    }
    with (
        ServerProcess(tmp_path / "a", env) as a,
        ServerProcess(tmp_path / "b", env) as b,
        client(a, "127.0.0.6") as at_a,
        client(b, "127.0.0.6") as at_b,
    ):
        remaining = []
        for http in (at_a, at_b) * 3:
            r = http.get("/v1/models")
            assert r.status_code == 200
            remaining.append(int(r.headers["x-ratelimit-remaining"]))
        assert remaining == [5, 4, 3, 2, 1, 0]  # one count, whichever gateway answers
        assert_limited(at_a.get("/v1/models"), "rate_limited")
        assert_limited(at_b.get("/v1/models"), "rate_limited")

        with client(a, "127.0.0.7") as quota_a, client(b, "127.0.0.7") as quota_b:
            assert speech(quota_a, "Hello").status_code == 200
            assert speech(quota_b, "Hello").status_code == 200
            refused = speech(quota_a, "Hello")
            assert_limited(refused, "quota_exceeded")
            assert refused.headers["x-quota-remaining"] == "2"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "VOXGATE_ENGINES": ENGINES,
        "VOXGATE_AUTH": "on",
        "VOXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "VOXGATE_RATE_LIMIT_RPM": "50",  # the default; keys and tenants override it
    }
    with ServerProcess(tmp_path_factory.mktemp("secured"), env) as server:
        yield server


def create_key(admin: httpx.Client, tenant: str, **limits: int) -> str:
    r = admin.post("/v1/admin/keys", json={"tenant": tenant, "name": "test", **limits})
    assert r.status_code == 201, r.text
    assert "x-ratelimit-limit" not in r.headers  # administrators are not limited
    return str(r.json()["key"])


def test_key_and_tenant_limits_from_the_admin_api(secured: ServerProcess) -> None:
    with client(secured, "127.0.0.1", ADMIN_TOKEN) as admin:
        for tenant, rpm in (("acme", 3), ("other", None)):
            r = admin.post("/v1/admin/tenants", json={"id": tenant, "requests_per_minute": rpm})
            assert r.status_code == 201, r.text
        tight = create_key(admin, "acme", requests_per_minute=2)
        loose = create_key(admin, "acme")  # the default, 50, but its tenant allows 3
        elsewhere = create_key(admin, "other")
    with client(secured, "127.0.0.1", tight) as http:
        first = http.get("/v1/keys")
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit"] == "2"  # the key's, the tightest
        assert first.headers["x-ratelimit-remaining"] == "1"
        assert http.get("/v1/keys").status_code == 200
        refused = http.get("/v1/keys")
        assert "API key" in assert_limited(refused, "rate_limited")["message"]
        assert 28 <= int(refused.headers["retry-after"]) <= 30
    with client(secured, "127.0.0.1", loose) as http:
        last = http.get("/v1/keys")  # the tenant's third request this minute
        assert last.status_code == 200
        assert last.headers["x-ratelimit-limit"] == "3"
        assert last.headers["x-ratelimit-remaining"] == "0"
        assert "tenant" in assert_limited(http.get("/v1/keys"), "rate_limited")["message"]
    with client(secured, "127.0.0.1", elsewhere) as http:
        r = http.get("/v1/keys")
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "50"


def test_a_keys_own_character_quota(secured: ServerProcess) -> None:
    with client(secured, "127.0.0.1", ADMIN_TOKEN) as admin:
        assert admin.post("/v1/admin/tenants", json={"id": "quota"}).status_code == 201
        key = create_key(admin, "quota", characters_per_day=10)
    with client(secured, "127.0.0.1", key) as http:
        too_long = speech(http, "Hello there.")
        error = assert_limited(too_long, "quota_exceeded")
        assert "longer than the whole daily quota" in error["hint"]
        ok = speech(http, "Hello")
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("audio/")
        assert speech(http, "Hello").status_code == 200
        assert_limited(speech(http, "Hi"), "quota_exceeded")


def test_a_request_refused_by_admission_is_not_charged(tmp_path: Path) -> None:
    """Characters are reserved before admission and given back if the engine
    has no room: callers pay for audio they got, not for the overload."""
    slow = {"first_chunk_ms": 0, "rtf": 5.0, "max_concurrency": 1}
    engines = {"sim": {"kind": "simulated", "options": slow, "queue_size": 0}}
    env = {"VOXGATE_ENGINES": json.dumps(engines), "VOXGATE_QUOTA_CHARACTERS_PER_DAY": "20"}
    with ServerProcess(tmp_path, env) as server, client(server, "127.0.0.9") as http:
        body = {"input": "Hello there.", "voice": "alloy", "response_format": "pcm"}
        with http.stream("POST", "/v1/audio/speech", json=body) as running:
            assert running.status_code == 200  # it holds the only slot while it streams
            overloaded = speech(http, "Okay now")
            assert overloaded.status_code == 503
            assert overloaded.json()["error"]["code"] == "engine_overloaded"
            running.read()
        assert speech(http, "Okay now").status_code == 200  # 12 + 8: the 503 cost nothing
        assert_limited(speech(http, "x"), "quota_exceeded")
