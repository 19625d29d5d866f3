"""Engines registered, drained and removed at run time, on real servers: one
gateway on its own, and two gateways sharing the real Redis and one SQLite
database file."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.redis import REDIS_URL, redis_env
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.simulated import SPEAKERS, SimulatedEngine
from voxgate.testing import ServerProcess
from voxgate.text.markup import parse
from voxgate.text.split import split

FAST = {"first_chunk_ms": 10, "rtf": 0.02, "chunk_ms": 100, "capacity": 4}
# Slow enough that a request is still streaming while the test acts.
SLOW = {"first_chunk_ms": 10, "rtf": 0.4, "chunk_ms": 100, "capacity": 4}
LONG = "This sentence is long enough to make several chunks of simulated audio. "
CONFIGURED = {"sim": {"kind": "simulated", "options": FAST}}


def server(root: Path, **env: str) -> ServerProcess:
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    environment = {"VOXGATE_ENGINES": json.dumps(CONFIGURED), "TMPDIR": str(root / "tmp"), **env}
    return ServerProcess(root / "data", environment)


_serial = itertools.count()


def speech(client: httpx.Client, model: str, text: str | None = None) -> httpx.Response:
    # A new text each time: a repeated one may be answered from the result cache.
    text = text or f"Hello there, listener number {next(_serial)}."
    body = {"model": model, "voice": "alloy", "input": text, "response_format": "pcm"}
    return client.post("/v1/audio/speech", json=body)


def expected_samples(text: str) -> int:
    request = EngineRequest("x", Mode.SFT, tuple(split(parse(text))), SPEAKERS[0])
    return sum(len(a) for a in SimulatedEngine(**FAST).expected_audio(request))  # type: ignore[arg-type]


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Other gateways converge within a couple of seconds: poll, do not sleep."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.05)


class Streaming:
    """A request streaming in a thread; ``started`` once its first audio is here."""

    def __init__(self, url: str, model: str, text: str) -> None:
        self.started = threading.Event()
        self.received = bytearray()
        self.status = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url, model, text), daemon=True)
        self._thread.start()
        assert self.started.wait(10), "the request never started streaming"

    def _run(self, url: str, model: str, text: str) -> None:
        body = {"model": model, "voice": "alloy", "input": text, "response_format": "pcm"}
        try:
            with (
                httpx.Client(base_url=url, timeout=60) as client,
                client.stream("POST", "/v1/audio/speech", json=body) as r,
            ):
                self.status = r.status_code
                for chunk in r.iter_bytes():
                    self.received += chunk
                    self.started.set()
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()

    def join(self) -> int:
        """Samples received, once the request is over."""
        self._thread.join(30)
        assert self.error is None, repr(self.error)
        assert self.status == 200
        return len(self.received) // 2


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with server(tmp_path_factory.mktemp("solo")) as gateway:
        yield gateway


@pytest.fixture
def admin(solo: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=solo.url, timeout=30) as client:
        yield client


def register(client: httpx.Client, name: str, **spec: Any) -> httpx.Response:
    body = {"name": name, "kind": "simulated", "options": FAST, **spec}
    return client.post("/v1/admin/engines", json=body)


def listed(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in client.get("/v1/admin/engines").json()["data"]}


def test_register_use_and_refuse_a_duplicate(admin: httpx.Client) -> None:
    r = register(admin, "extra")
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "api"
    assert r.json()["ready"] is True
    text = "Spoken by an engine added at run time."
    r = speech(admin, "extra", text)
    assert r.status_code == 200
    assert r.headers["x-voxgate-engine"] == "extra"
    assert len(r.content) // 2 == expected_samples(text)
    assert "extra" in [m["id"] for m in admin.get("/v1/models").json()["data"]]

    for name in ("extra", "sim", "tts-1"):  # registered, configured, a model alias
        r = register(admin, name)
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "engine_exists"
    engines = listed(admin)
    assert engines["sim"]["source"] == "config"
    assert engines["extra"]["source"] == "api"


def test_bad_registrations_are_refused_with_nothing_stored(admin: httpx.Client) -> None:
    cases = [
        {"name": "bad-kind", "kind": "no-such-kind"},
        {"name": "bad-option", "options": {"no_such_option": 1}},
        {"name": "module-kind", "kind": "os:system"},
        {"name": "bad name!"},
    ]
    for case in cases:
        r = admin.post("/v1/admin/engines", json={"kind": "simulated", **case})
        assert r.status_code == 400, (case, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
    assert not {"bad-kind", "bad-option", "module-kind"} & set(listed(admin))


def test_drain_lets_requests_under_way_finish_and_refuses_new_ones(admin: httpx.Client) -> None:
    assert register(admin, "slow", options=SLOW).status_code == 201
    text = LONG * 2
    streaming = Streaming(str(admin.base_url), "slow", text)
    r = admin.post("/v1/admin/engines/slow/drain")
    assert r.status_code == 200
    assert r.json()["draining"] is True
    assert r.json()["in_flight"] == 1
    refused = speech(admin, "slow")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "engine_unavailable"
    assert "Retry-After" in refused.headers
    assert admin.get("/readyz").json()["draining"] == ["slow"]
    assert admin.get("/readyz").status_code == 200  # a drain does not make the gateway unready
    assert streaming.join() == expected_samples(text)  # the whole audio, not cut
    assert listed(admin)["slow"]["in_flight"] == 0

    assert admin.post("/v1/admin/engines/slow/resume").json()["draining"] is False
    assert speech(admin, "slow").status_code == 200


def test_delete_waits_for_requests_under_way(admin: httpx.Client) -> None:
    assert register(admin, "doomed", options=SLOW).status_code == 201
    text = LONG * 2
    streaming = Streaming(str(admin.base_url), "doomed", text)
    r = admin.delete("/v1/admin/engines/doomed", params={"wait_s": 0})
    assert r.status_code == 202  # still busy: it goes when its request ends
    assert r.json()["deleted"] is True
    assert r.json()["removed"] is False
    assert speech(admin, "doomed").status_code == 503  # no new work meanwhile
    assert streaming.join() == expected_samples(text)
    eventually(lambda: "doomed" not in listed(admin))
    r = speech(admin, "doomed")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
    r = admin.delete("/v1/admin/engines/doomed")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "engine_not_found"


def test_delete_of_an_idle_engine_is_immediate(admin: httpx.Client) -> None:
    assert register(admin, "brief").status_code == 201
    r = admin.delete("/v1/admin/engines/brief")
    assert r.status_code == 200
    assert r.json()["removed"] is True
    assert "brief" not in listed(admin)
    assert register(admin, "brief").status_code == 201  # the name is free again


def test_configured_engines_can_be_drained_not_deleted(admin: httpx.Client) -> None:
    r = admin.delete("/v1/admin/engines/sim")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "engine_configured"
    assert admin.post("/v1/admin/engines/sim/drain").status_code == 200
    assert speech(admin, "sim").status_code == 503
    assert admin.post("/v1/admin/engines/sim/resume").status_code == 200
    assert speech(admin, "sim").status_code == 200


def test_draining_one_endpoint_routes_to_the_others(admin: httpx.Client) -> None:
    r = register(admin, "duo", endpoints=[{"id": "x"}, {"id": "y"}])
    assert r.status_code == 201
    assert [e["name"] for e in r.json()["endpoints"]] == ["duo#x", "duo#y"]
    r = admin.post("/v1/admin/engines/duo/drain", params={"endpoint": "x"})
    assert r.status_code == 200
    assert {e["name"]: e["draining"] for e in r.json()["endpoints"]} == {
        "duo#x": True,
        "duo#y": False,
    }
    for _ in range(4):
        assert speech(admin, "duo").status_code == 200
    ends = {e["name"]: e for e in listed(admin)["duo"]["endpoints"]}
    assert ends["duo#x"]["stats"]["started"] == 0
    assert ends["duo#y"]["stats"]["completed"] == 4
    r = admin.post("/v1/admin/engines/duo/drain", params={"endpoint": "z"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "engine_not_found"


def test_registered_engines_survive_a_restart(tmp_path: Path) -> None:
    gateway = server(tmp_path)
    with gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:
        assert register(client, "kept", endpoints=[{}, {}]).status_code == 201
        assert register(client, "paused").status_code == 201
        assert client.post("/v1/admin/engines/paused/drain").status_code == 200
    with gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:
        engines = listed(client)
        assert engines["kept"]["source"] == "api"
        assert len(engines["kept"]["endpoints"]) == 2
        assert engines["paused"]["draining"] is True
        assert speech(client, "kept").status_code == 200
        assert speech(client, "paused").status_code == 503


# -- two gateways, one Redis, one database ------------------------------------------


@pytest.fixture
def pair(tmp_path: Path, redis_prefix: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    shared = {
        **redis_env(redis_prefix),
        "VOXGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "VOXGATE_ENGINES": json.dumps(
            {
                "sim": CONFIGURED["sim"],
                # "a" fails every call before its first chunk; "b" works
                "group": {
                    "kind": "simulated",
                    "options": FAST,
                    "endpoints": [{"id": "a", "fault_rates": {"before": 1.0}}, {"id": "b"}],
                },
            }
        ),
        "VOXGATE_BREAKER_MIN_CALLS": "4",
        "VOXGATE_BREAKER_COOLDOWN_S": "300",
    }
    # One after the other: both apply the database's migrations at start.
    with (
        server(tmp_path / "a", **shared) as a,
        server(tmp_path / "b", **shared) as b,
        httpx.Client(base_url=a.url, timeout=30) as on_a,
        httpx.Client(base_url=b.url, timeout=30) as on_b,
    ):
        yield on_a, on_b


def test_an_engine_added_on_one_gateway_serves_on_the_other(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    assert speech(b, "fresh").status_code == 404
    assert register(a, "fresh").status_code == 201
    eventually(lambda: speech(b, "fresh").status_code == 200)
    assert listed(b)["fresh"]["source"] == "api"
    assert register(b, "fresh").status_code == 409

    assert a.post("/v1/admin/engines/fresh/drain").status_code == 200
    eventually(lambda: speech(b, "fresh").status_code == 503)
    assert a.post("/v1/admin/engines/fresh/resume").status_code == 200
    eventually(lambda: speech(b, "fresh").status_code == 200)

    assert a.post("/v1/admin/engines/sim/drain").status_code == 200  # a configured one
    eventually(lambda: speech(b, "sim").status_code == 503)
    assert b.post("/v1/admin/engines/sim/resume").status_code == 200
    eventually(lambda: speech(a, "sim").status_code == 200)

    assert a.delete("/v1/admin/engines/fresh").status_code == 200
    eventually(lambda: speech(b, "fresh").status_code == 404)
    assert "fresh" not in listed(b)


def test_a_missed_announcement_is_caught_up_by_polling(
    pair: tuple[httpx.Client, httpx.Client], tmp_path: Path, redis_prefix: str
) -> None:
    """A change whose pub/sub message nobody heard (written by hand here: a row
    and a version bump, no message) still reaches every gateway."""
    a, b = pair
    with sqlite3.connect(tmp_path / "shared.db") as db:
        now = "2026-01-01 00:00:00.000000"
        db.execute(
            "INSERT INTO engines (name, kind, config, state, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ("quiet", "simulated", json.dumps({"options": FAST}), "active", now, now),
        )
    redis.Redis.from_url(REDIS_URL).incr(f"{redis_prefix}engines:version")
    eventually(lambda: speech(a, "quiet").status_code == 200)
    eventually(lambda: speech(b, "quiet").status_code == 200)


def test_breakers_are_shared_between_gateways(pair: tuple[httpx.Client, httpx.Client]) -> None:
    a, b = pair
    for _ in range(10):
        assert speech(a, "group").status_code == 200  # retried on "b" each time "a" fails

    def state_on_b() -> str:
        ends = {e["name"]: e for e in b.get("/v1/engines/group").json()["endpoints"]}
        return str(ends["group#a"]["breaker"]["state"])

    assert state_on_b() == "open"  # B never called "a" and knows it fails
    for _ in range(6):
        assert speech(b, "group").status_code == 200
    ends = {e["name"]: e for e in b.get("/v1/engines/group").json()["endpoints"]}
    assert ends["group#a"]["stats"]["started"] == 0
    assert ends["group#b"]["stats"]["completed"] == 6
    assert b.get("/readyz").json()["endpoints"]["group"]["group#a"]["breaker"] == "open"


def test_admin_routes_answer_unknown_engines(admin: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v1/admin/engines/nope"),
        ("POST", "/v1/admin/engines/nope/drain"),
        ("POST", "/v1/admin/engines/nope/resume"),
        ("DELETE", "/v1/admin/engines/nope"),
    ]:
        r = admin.request(method, path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "engine_not_found"
