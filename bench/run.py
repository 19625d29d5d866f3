"""Benchmark scenarios. ``make bench`` runs them all; ``python bench/run.py NAME``
runs one. Each prints a table and writes JSON to bench/out/; the numbers that
matter are copied into bench/RESULTS.md with the command and the machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from voxgate.bench import loadgen
from voxgate.bench.machine import describe
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.espeak.catalog import SPEAKERS_BY_ID
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.testing import ServerProcess
from voxgate.text.markup import parse
from voxgate.text.split import split

OUT = Path(__file__).resolve().parent / "out"
TEXT = "The quick brown fox jumps over the lazy dog. voxgate streams speech sentence by sentence."
LEVELS = (1, 8, 32)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of one process (the gateway itself, without its engine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_stream(concurrency: int) -> int:
    return max(10, 160 // concurrency)


def engine_request(engine: EspeakEngine) -> loadgen.RequestFn:
    """The same synthesis as the HTTP route, called on the engine in-process."""
    speaker = SPEAKERS_BY_ID["en-us-f2"]  # what "alloy" resolves to

    async def send(n: int) -> loadgen.Sample:
        started = time.perf_counter()
        request = EngineRequest(f"b{n}", Mode.SFT, tuple(split(parse(TEXT))), speaker)
        first = None
        samples = 0
        async for chunk in engine.synthesize(request):
            if first is None:
                first = time.perf_counter() - started
            samples += chunk.samples.size
        total = time.perf_counter() - started
        return loadgen.Sample(True, 200, total, first, samples / engine.capabilities.sample_rate)

    return send


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| path | format | conc. | ok/requests | RPS | TTFA p50 | TTFA p90 | TTFA p99 "
        "| total p50 | gateway CPU ms/req |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        t, tot = r["ttfa_ms"], r["total_ms"]
        lines.append(
            f"| {r['path']} | {r['format']} | {r['concurrency']} | {r['ok']}/{r['requests']} "
            f"| {r['rps']} | {t['p50']} | {t['p90']} | {t['p99']} | {tot['p50']} "
            f"| {r.get('gateway_cpu_ms', '')} |"
        )
    return "\n".join(lines)


async def foundation() -> dict[str, Any]:
    """TTFA and RPS through /v1/audio/speech against the engine in-process."""
    rows: list[dict[str, Any]] = []
    engine = EspeakEngine()
    await engine.start()
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp)) as server:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            for fmt in ("pcm", "mp3"):
                send = loadgen.http_request(
                    client,
                    "/v1/audio/speech",
                    lambda n, f=fmt: {
                        "model": "tts-1",
                        "voice": "alloy",
                        "input": TEXT,
                        "response_format": f,
                    },
                )
                await loadgen.run(send, 4, 5)  # warm up
                assert server.process is not None
                for c in LEVELS:
                    cpu = cpu_seconds(server.process.pid)
                    result = await loadgen.run(send, c, per_stream(c))
                    cpu_ms = (cpu_seconds(server.process.pid) - cpu) * 1000 / len(result.samples)
                    rows.append(
                        {
                            "path": "HTTP /v1/audio/speech",
                            "format": fmt,
                            "gateway_cpu_ms": round(cpu_ms, 2),
                            **result.report(),
                        }
                    )
            in_process = engine_request(engine)
            await loadgen.run(in_process, 4, 5)
            for c in LEVELS:
                result = await loadgen.run(in_process, c, per_stream(c))
                rows.append({"path": "engine in-process", "format": "float32", **result.report()})
    await engine.close()
    return {"scenario": "foundation", "text": TEXT, "machine": describe(), "rows": rows}


async def encoders() -> dict[str, Any]:
    """Encoder CPU on real speech: ffmpeg's default effort against voxgate's."""
    from voxgate.audio.chain import PostProcessor
    from voxgate.audio.encoders import AvEncoder
    from voxgate.audio.formats import AudioFormat

    engine = EspeakEngine()
    await engine.start()
    request = EngineRequest("enc", Mode.SFT, tuple(split(parse(TEXT))), SPEAKERS_BY_ID["en-us-f2"])
    chunks = [c.samples async for c in engine.synthesize(request)]
    await engine.close()
    post = PostProcessor(engine.capabilities.sample_rate, 24000)
    speech = [post.process(c) for c in chunks] + [post.flush()]
    seconds = sum(len(c) for c in speech) / 24000
    rows = []
    for fmt in (AudioFormat.MP3, AudioFormat.OPUS, AudioFormat.AAC, AudioFormat.FLAC):
        timings = {}
        for label, options in (("default", {}), ("voxgate", None)):
            runs = []
            for _ in range(5):
                started = time.process_time()
                enc = AvEncoder(fmt, 24000, codec_options=options)
                size = sum(len(enc.encode(c)) for c in speech) + len(enc.finish())
                runs.append(time.process_time() - started)
            timings[label] = (round(min(runs) * 1000, 1), size)
        rows.append(
            {
                "format": fmt.value,
                "audio_s": round(seconds, 2),
                "default_ms": timings["default"][0],
                "default_bytes": timings["default"][1],
                "voxgate_ms": timings["voxgate"][0],
                "voxgate_bytes": timings["voxgate"][1],
            }
        )
    return {"scenario": "encoders", "text": TEXT, "machine": describe(), "rows": rows}


def encoder_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| format | audio s | default CPU ms | default bytes | voxgate CPU ms | voxgate bytes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['format']} | {r['audio_s']} | {r['default_ms']} | {r['default_bytes']} "
            f"| {r['voxgate_ms']} | {r['voxgate_bytes']} |"
        )
    return "\n".join(lines)


SCENARIOS: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
    "foundation": foundation,
    "encoders": encoders,
}
TABLES: dict[str, Callable[[list[dict[str, Any]]], str]] = {"encoders": encoder_table}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*SCENARIOS, []], help="scenarios to run")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    for name in args.names or list(SCENARIOS):
        result = asyncio.run(SCENARIOS[name]())
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(f"\n## {name}  ({result['machine']['cpu']}, {result['machine']['cores']} cores)\n")
        print(TABLES.get(name, table)(result["rows"]))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main(sys.argv[1:]))
