"""The load generator against a real server: its HTTP client, and `voxgate bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voxgate.bench import http1, loadgen
from voxgate.testing import ServerProcess


async def test_http1_client_streams_and_reuses_connections(server: ServerProcess) -> None:
    client = http1.Client(server.url)
    target = loadgen.Target(text="Short one. Second sentence here.", format="pcm")
    send = loadgen.http_request(client, target)
    first = await send(0)
    assert first.ok
    assert first.ttfa_s is not None
    assert first.audio_s == pytest.approx(first.bytes / 2 / 24000)
    assert first.ttfa_s <= first.total_s
    second = await send(1)
    assert second.ok
    assert len(client._idle) == 1  # kept alive and reused
    bad = await loadgen.http_request(client, loadgen.Target(text="", format="pcm"))(2)
    assert not bad.ok
    assert bad.status == 400
    assert bad.error == "text_empty"
    assert await client.get_json("/healthz") == {"status": "ok"}
    await client.aclose()


async def test_http1_client_detects_a_truncated_body(tmp_path: Path) -> None:
    engines = {"sim": {"kind": "simulated", "options": {"first_chunk_ms": 0, "rtf": 0.01}}}
    with ServerProcess(tmp_path, {"VOXGATE_ENGINES": json.dumps(engines)}) as sim:
        client = http1.Client(sim.url)
        text = "Several chunks of audio before it breaks. " * 3 + "#fault:mid"
        sample = await loadgen.http_request(client, loadgen.Target(text=text))(0)
        assert not sample.ok
        assert sample.error == "ProtocolError"
        await client.aclose()


def test_voxgate_bench_cli(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    r = subprocess.run(
        [sys.executable, "-m", "voxgate", "bench", "--url", server.url, "--concurrency", "1,2",
         "--requests", "3", "--json", str(out), "--plot", str(plot), "--route", "native"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    document = json.loads(out.read_text())
    levels = document["results"]
    assert [lvl["concurrency"] for lvl in levels] == [1, 2]
    assert all(lvl["ok"] == lvl["requests"] for lvl in levels)
    assert levels[0]["ttfa_ms"]["p50"] > 0
    assert document["machine"]["cores"] >= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unreachable = ["--url", "http://127.0.0.1:9", "--requests", "1"]
    r = subprocess.run(
        [sys.executable, "-m", "voxgate", "bench", *unreachable],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode != 0
    assert "connection_failed" in r.stderr
