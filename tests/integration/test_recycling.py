"""Engine isolation: an engine configured with ``isolate`` runs in a child
process the gateway supervises. A crash of the child never takes the gateway
down, and recycling (after N requests, or above a resident-memory threshold)
replaces the child under load without failing a single request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from voxgate.testing import ServerProcess

OPTIONS = {"first_chunk_ms": 20, "rtf": 0.05, "chunk_ms": 100, "capacity": 4}
TEXT = "An isolated engine answers from its own process, again and again."


def gateway(root: Path, **engine: Any) -> ServerProcess:
    engines = {"sim": {"kind": "simulated", "options": OPTIONS, "isolate": True, **engine}}
    env = {"VOXGATE_ENGINES": json.dumps(engines), "VOXGATE_CACHE_ENABLED": "false"}
    return ServerProcess(root, env).start()


def info(server: ServerProcess) -> dict[str, Any]:
    described: dict[str, Any] = httpx.get(server.url + "/v1/engines/sim", timeout=10).json()
    return described["info"]


def child_pid(server: ServerProcess) -> int:
    child = info(server)["child"]
    assert child is not None
    return int(child["pid"])


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def speak(server: ServerProcess, text: str = TEXT) -> httpx.Response:
    return httpx.post(server.url + "/v1/tts", json={"text": text, "format": "pcm"}, timeout=60)


def test_a_crashing_child_never_takes_the_gateway_down(tmp_path: Path) -> None:
    server = gateway(tmp_path)
    try:
        described = httpx.get(server.url + "/v1/engines/sim").json()
        assert described["kind"] == "simulated"
        assert described["info"]["isolated"] is True
        first = child_pid(server)
        assert first != server.process.pid  # type: ignore[union-attr]
        reference = speak(server)
        assert reference.status_code == 200

        # The engine kills its own process after the first chunk.
        crashed = speak(server, TEXT + " #fault:exit")
        assert crashed.status_code == 502
        assert crashed.json()["error"]["code"] == "upstream_error"
        assert server.alive()
        assert httpx.get(server.url + "/healthz").status_code == 200

        # The next request goes to a fresh child, waiting for it if need be.
        again = speak(server)
        assert again.status_code == 200
        assert again.content == reference.content
        assert child_pid(server) != first
        assert info(server)["crashes"] == 1
        assert httpx.get(server.url + "/readyz").status_code == 200
    finally:
        assert server.stop() == 0, server.log()[-3000:]


async def test_recycling_after_n_requests_under_load_fails_nothing(tmp_path: Path) -> None:
    server = gateway(tmp_path, recycle_after_requests=8)
    try:
        reference = speak(server).content
        pids = {child_pid(server)}
        outcomes: list[tuple[int, bool]] = []
        stop = asyncio.Event()

        async def load(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                body = {"text": TEXT, "format": "pcm"}
                answer = await client.post(server.url + "/v1/tts", json=body)
                outcomes.append((answer.status_code, answer.content == reference))

        async def watch() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                described = await asyncio.to_thread(info, server)
                if described["child"]:
                    pids.add(described["child"]["pid"])
                if described["recycles"] >= 3:
                    break
                await asyncio.sleep(0.1)
            stop.set()

        async with httpx.AsyncClient(timeout=60) as client:
            await asyncio.gather(watch(), *(load(client) for _ in range(4)))
        described = info(server)
        assert described["recycles"] >= 3, described
        assert len(pids) >= 4  # the first child and three replacements
        assert len(outcomes) >= 24
        failures = [o for o in outcomes if o != (200, True)]
        assert failures == [], f"{len(failures)} of {len(outcomes)} requests failed or were cut"
        assert described["crashes"] == 0
        assert all(not c["retiring"] for c in described["children"])  # old ones are gone
    finally:
        assert server.stop() == 0, server.log()[-3000:]


def test_recycling_above_a_memory_threshold(tmp_path: Path) -> None:
    # Every child is above 1 MB; only one that has served a request is recycled.
    server = gateway(tmp_path, recycle_rss_mb=1)
    try:
        first = child_pid(server)
        time.sleep(2.5)  # idle: a fresh child's own memory is no reason to recycle
        assert child_pid(server) == first
        assert info(server)["recycles"] == 0
        assert speak(server).status_code == 200
        wait_until(lambda: info(server)["recycles"] == 1, what="a recycle for memory")
        second = child_pid(server)
        assert second != first
        assert speak(server).status_code == 200
        wait_until(lambda: info(server)["recycles"] == 2, what="the next recycle")
        assert child_pid(server) not in (first, second)
    finally:
        assert server.stop() == 0, server.log()[-3000:]


def test_a_gateway_killed_outright_leaves_no_orphan_child(tmp_path: Path) -> None:
    server = gateway(tmp_path)
    pid = child_pid(server)
    (worker,) = info(server)["workers"]
    socket = Path(worker["url"].removeprefix("unix:"))
    assert socket.exists()
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    wait_until(lambda: not _alive(pid), 10, "the child to notice and exit")
    assert not socket.parent.exists()  # nor its socket and the gateway's directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for a reaper counts as gone.
    with contextlib.suppress(OSError):
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return False
