"""Admission control through a real server, with the simulated engine standing
in for a GPU model of known capacity (2) and known synthesis time (~0.5 s).

The bounds asserted here follow from the configuration (queue timeout, one
synthesis time), not from the machine's speed: they hold on a slow machine as
long as the gateway is correct, and fail if it lets requests wait behind a
backlog they should not wait behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.redis import redis_env
from voxgate.testing import ServerProcess

CAPACITY = 2
QUEUE_TIMEOUT_S = 1.0
# 50 characters -> 3 s of audio at rtf 0.15 -> ~0.55 s of engine time per request
TEXT = "Admission control keeps a busy engine responsive!!"
SIM = {"first_chunk_ms": 100, "rtf": 0.15, "chunk_ms": 200, "capacity": CAPACITY}
HOLD_S = 0.1 + len(TEXT) * 0.06 * 0.15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "VOXGATE_ENGINES": json.dumps({"sim": {"kind": "simulated", "options": SIM}}),
        "VOXGATE_QUEUE_TIMEOUT_S": str(QUEUE_TIMEOUT_S),
        "VOXGATE_QUEUE_TIMEOUT_BATCH_S": "120",
        "VOXGATE_QUEUE_SIZE": "64",
        "VOXGATE_CACHE_ENABLED": "false",  # identical requests must all reach the engine
    }
    with ServerProcess(tmp_path_factory.mktemp("admission"), env) as proc:
        yield proc


@dataclass
class Outcome:
    status: int
    code: str | None
    retry_after: str | None
    first_byte_s: float  # to the first audio byte (200) or the whole answer (errors)
    total_s: float


async def speak(client: httpx.AsyncClient, priority: str = "realtime", text: str = TEXT) -> Outcome:
    body = {"model": "sim", "input": text, "response_format": "pcm", "priority": priority}
    started = time.perf_counter()
    async with client.stream("POST", "/v1/audio/speech", json=body) as response:
        first: float | None = None
        payload = b""
        async for chunk in response.aiter_bytes():
            if first is None:
                first = time.perf_counter() - started
            payload += chunk
        total = time.perf_counter() - started
    code = json.loads(payload)["error"]["code"] if response.status_code != 200 else None
    return Outcome(
        response.status_code,
        code,
        response.headers.get("retry-after"),
        first if first is not None else total,
        total,
    )


def test_at_four_times_capacity_the_excess_is_refused_fast(server: ServerProcess) -> None:
    """Eight clients in a closed loop against two slots: the ones that cannot be
    served within the queue timeout are told so at once, with Retry-After,
    and the ones admitted get their first audio within that timeout."""

    async def run() -> list[Outcome]:
        limits = httpx.Limits(max_connections=4 * CAPACITY)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            deadline = time.perf_counter() + 4.0
            outcomes: list[Outcome] = []

            async def loop() -> None:
                while time.perf_counter() < deadline:
                    outcome = await speak(client)
                    outcomes.append(outcome)
                    if outcome.status == 503:
                        await asyncio.sleep(0.05)  # a client that backs off a little

            await asyncio.gather(*(loop() for _ in range(4 * CAPACITY)))
            return outcomes

    outcomes = asyncio.run(run())
    served = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    assert served, "nothing was admitted"
    assert refused, "four times the capacity was all admitted: no admission control"
    assert {o.status for o in refused} == {503}
    assert {o.code for o in refused} == {"engine_overloaded"}
    assert all(o.retry_after and int(o.retry_after) >= 1 for o in refused)
    # refusals never wait longer than the queue timeout (most are immediate)
    assert max(o.total_s for o in refused) < QUEUE_TIMEOUT_S + 0.5
    # admitted requests waited at most the queue timeout for a slot
    assert max(o.first_byte_s for o in served) < QUEUE_TIMEOUT_S + HOLD_S + 0.5
    engine = httpx.get(f"{server.url}/v1/engines/sim").json()
    assert engine["admission"]["rejected"] >= len(refused)


def test_realtime_is_not_held_up_by_a_batch_backlog(server: ServerProcess) -> None:
    """Twenty batch requests queue behind two slots (~5 s of work). A realtime
    request sent now waits at most for one slot to free, not for the backlog."""

    async def run() -> tuple[list[Outcome], list[Outcome]]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            batch = [asyncio.create_task(speak(client, "batch")) for _ in range(20)]
            await wait_for_backlog(client, 10)
            realtime = []
            for _ in range(3):
                realtime.append(await speak(client, "realtime"))
            return realtime, list(await asyncio.gather(*batch))

    realtime, batch = asyncio.run(run())
    assert [o.status for o in batch] == [200] * 20  # batch work waits, and is done
    assert [o.status for o in realtime] == [200] * 3
    backlog_s = 20 / CAPACITY * HOLD_S
    for outcome in realtime:
        # one slot's synthesis at most, then its own first chunk
        assert outcome.first_byte_s < HOLD_S + 0.1 + 0.5
        assert outcome.first_byte_s < backlog_s / 3


async def wait_for_backlog(client: httpx.AsyncClient, depth: int) -> None:
    for _ in range(200):
        admission = (await client.get("/v1/engines/sim")).json()["admission"]
        if admission["waiting"]["batch"] >= depth:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the batch backlog never reached {depth}: {admission}")


def test_priority_header_and_bad_priority(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ok = http.post(
            "/v1/tts",
            json={"text": "hello", "engine": "sim", "format": "pcm"},
            headers={"X-Voxgate-Priority": "batch"},
        )
        assert ok.status_code == 200
        bad = http.post(
            "/v1/tts",
            json={"text": "hello", "engine": "sim"},
            headers={"X-Voxgate-Priority": "urgent"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "priority"
        field = http.post("/v1/tts", json={"text": "hello", "engine": "sim", "priority": "now"})
        assert field.status_code == 400


def test_server_log_is_clean(server: ServerProcess, tmp_path: Path) -> None:
    assert "Traceback" not in server.log()


def test_two_gateways_share_one_engines_capacity(tmp_path: Path, redis_prefix: str) -> None:
    """Two gateways in front of the same endpoint, with shared admission on
    Redis: never more than its capacity (1) running, whichever gateway the
    requests arrive at, and neither gateway refuses work it could queue."""
    one = {**SIM, "capacity": 1}
    env = {
        "VOXGATE_ENGINES": json.dumps({"sim": {"kind": "simulated", "options": one}}),
        "VOXGATE_SHARED_ADMISSION": "true",
        "VOXGATE_QUEUE_TIMEOUT_S": "30",
        "VOXGATE_CACHE_ENABLED": "false",
        **redis_env(redis_prefix),
    }
    with ServerProcess(tmp_path / "a", env) as a, ServerProcess(tmp_path / "b", env) as b:

        async def run() -> tuple[list[Outcome], int]:
            peak = 0
            done = False

            async def watch(client: httpx.AsyncClient) -> None:
                nonlocal peak
                while not done:
                    running = 0
                    for url in (a.url, b.url):
                        info = (await client.get(f"{url}/v1/engines/sim")).json()["info"]
                        running += info["running"]
                    peak = max(peak, running)
                    await asyncio.sleep(0.01)

            async with (
                httpx.AsyncClient(base_url=a.url, timeout=60) as ca,
                httpx.AsyncClient(base_url=b.url, timeout=60) as cb,
                httpx.AsyncClient(timeout=60) as probe,
            ):
                watcher = asyncio.create_task(watch(probe))
                outcomes = await asyncio.gather(*(speak(c) for c in (ca, cb, ca, cb)))
                done = True
                await watcher
            return list(outcomes), peak

        outcomes, peak = asyncio.run(run())
    assert [o.status for o in outcomes] == [200] * 4
    assert peak == 1


def test_fair_share_between_tenants_over_http(tmp_path: Path) -> None:
    """Tenant "big" queues eight requests, then tenant "small" two, on one
    slot: small's are served while big still has a backlog, not after it."""
    token = "admission-test-admin-token"
    env = {
        "VOXGATE_ENGINES": json.dumps(
            {"sim": {"kind": "simulated", "options": {**SIM, "capacity": 1}}}
        ),
        "VOXGATE_AUTH": "on",
        "VOXGATE_ADMIN_TOKEN": token,
        "VOXGATE_QUEUE_TIMEOUT_S": "60",
        "VOXGATE_CACHE_ENABLED": "false",
    }
    with ServerProcess(tmp_path, env) as server:
        admin = {"Authorization": f"Bearer {token}"}
        keys = {}
        for tenant in ("big", "small"):
            httpx.post(f"{server.url}/v1/admin/tenants", json={"id": tenant}, headers=admin)
            made = httpx.post(
                f"{server.url}/v1/admin/keys", json={"tenant": tenant, "name": "t"}, headers=admin
            )
            keys[tenant] = made.json()["key"]

        async def run() -> list[tuple[str, float]]:
            finished: list[tuple[str, float]] = []
            started = time.perf_counter()

            async def one(client: httpx.AsyncClient, tenant: str) -> None:
                outcome = await speak(client)
                assert outcome.status == 200
                finished.append((tenant, time.perf_counter() - started))

            async with (
                httpx.AsyncClient(
                    base_url=server.url,
                    timeout=60,
                    headers={"Authorization": f"Bearer {keys['big']}"},
                    limits=httpx.Limits(max_connections=20),
                ) as big,
                httpx.AsyncClient(
                    base_url=server.url,
                    timeout=60,
                    headers={"Authorization": f"Bearer {keys['small']}"},
                ) as small,
            ):
                tasks = [asyncio.create_task(one(big, "big")) for _ in range(8)]
                await asyncio.sleep(HOLD_S / 2)  # big's backlog is queued first
                tasks += [asyncio.create_task(one(small, "small")) for _ in range(2)]
                await asyncio.gather(*tasks)
            return finished

        order = [tenant for tenant, _ in asyncio.run(run())]
    # FIFO would finish all eight of big's first; fair share interleaves
    assert order.index("small") < 4
    assert order[-1] == "big"
    assert order.count("small") == 2
