"""Benchmark scenarios. ``make bench`` runs them all; ``python bench/run.py NAME``
runs one. Each starts its own server (a subprocess, as in production), prints
tables, and writes JSON (and plots) to bench/out/. The numbers that matter are
copied into bench/RESULTS.md with the command and the machine.

Scenarios:
  espeak      the embedded engine through /v1/audio/speech (pcm, mp3) against
              the engine called in-process, at 1, 8, 32 streams
  overhead    the gateway's own time-to-first-audio overhead over a simulated
              GPU engine (150 ms first chunk), at 1, 8, 32, 64 streams
  overload    open-loop offered load at 1x, 2x, 4x a simulated engine's capacity
  priority    realtime time to first audio alone, and behind a batch backlog
  cache       result cache: a hit against a miss; bursts of 20 identical requests
              with single flight against the cache switched off
  soak        20,000 requests in all six formats with faults; server memory over time
  encoders    encoder CPU on real speech: ffmpeg defaults against voxgate's settings
  cosyvoice   the CosyVoice stand-in with upstream's timing: time to first chunk
              across requests, called as upstream documents (the hop-length drift)
              and through voxgate's engine; and through a voxgate server
  worker      the cost of a worker hop: time to first audio through a gateway whose
              engine is a `voxgate worker` (loopback TCP) or an isolated child
              (Unix socket), against the same engine in the gateway's process
  ws          WebSocket text sessions fed word by word: time from the last text
              piece to the first audio after it (simulated engine; espeak), at
              1, 8, 32 sessions
  grpc        voxgate.v1.Speech SynthesizeStream against HTTP /v1/audio/speech:
              time to first audio over the simulated engine at 1, 8, 32 streams
  jobs        job throughput (audio seconds per wall second) with the simulated
              engine on one `voxgate worker` and on two
  gc          full garbage collections in the server under 32 streams, with the
              start-up heap frozen (the default) and without
  shared_admission  one admission decision shared through Redis: acquire time
              on a free engine
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
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

from voxgate.bench import http1, loadgen, report, sessions
from voxgate.bench.machine import describe
from voxgate.bench.runner import run_fast
from voxgate.engines.base import Engine, EngineRequest, Mode
from voxgate.engines.espeak.catalog import SPEAKERS_BY_ID
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.engines.simulated import SPEAKERS as SIM_SPEAKERS
from voxgate.engines.simulated import SimulatedEngine
from voxgate.testing import ServerProcess, WorkerProcess, free_port
from voxgate.text.markup import parse
from voxgate.text.split import split

OUT = Path(__file__).resolve().parent / "out"
TEXT = loadgen.DEFAULT_TEXT
Scenario = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


def cpu_seconds(pid: int) -> float:
    """User+system CPU of one process (the gateway itself, without its engine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def engine_request(engine: Engine, speaker_id: str, text: str = TEXT) -> loadgen.RequestFn:
    """The same synthesis as the HTTP route, called on the engine in-process."""
    speaker = next(s for s in engine.speakers() if s.id == speaker_id)
    segments = tuple(split(parse(text)))

    async def send(n: int) -> loadgen.Sample:
        started = time.perf_counter()
        request = EngineRequest(f"b{n}", Mode.SFT, segments, speaker)
        first = None
        samples = 0
        async for chunk in engine.synthesize(request):
            if first is None:
                first = time.perf_counter() - started
            samples += chunk.samples.size
        total = time.perf_counter() - started
        audio = samples / engine.capabilities.sample_rate
        return loadgen.Sample(True, 200, total, first, audio)

    return send


def sim_engines(**options: Any) -> str:
    return json.dumps({"sim": {"kind": "simulated", "options": options}})


async def http_levels(
    server: ServerProcess,
    target: loadgen.Target,
    levels: dict[int, int],
    label: str,
) -> list[dict[str, Any]]:
    """Closed-loop levels (streams -> requests per stream), with gateway CPU."""
    rows = []
    client = http1.Client(server.url)
    try:
        send = loadgen.http_request(client, target)
        assert server.process is not None
        for streams, per_stream in levels.items():
            cpu = cpu_seconds(server.process.pid)
            result = await loadgen.run_closed(send, streams, per_stream, label=label)
            row = result.report()
            row["gateway_cpu_ms"] = round(
                (cpu_seconds(server.process.pid) - cpu) * 1000 / len(result.samples), 2
            )
            rows.append(row)
            print(f"  {label} c={streams}: TTFA p50 {row['ttfa_ms']['p50']} ms", flush=True)
    finally:
        await client.aclose()
    return rows


async def in_process_levels(
    engine: Engine, speaker: str, levels: dict[int, int], label: str
) -> list[dict[str, Any]]:
    send = engine_request(engine, speaker)
    rows = []
    for streams, per_stream in levels.items():
        rows.append((await loadgen.run_closed(send, streams, per_stream, label=label)).report())
    return rows


# -- scenarios ---------------------------------------------------------------


async def espeak() -> dict[str, Any]:
    """The embedded engine: /v1/audio/speech against the engine in-process."""
    levels = {1: 160, 8: 20, 32: 10}
    rows: list[dict[str, Any]] = []
    env = {"VOXGATE_CACHE_ENABLED": "false"}  # every request must reach the engine
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
        for fmt in ("pcm", "mp3"):
            target = loadgen.Target(voice="alloy", format=fmt)
            rows += await http_levels(server, target, levels, f"HTTP {fmt}")
    engine = EspeakEngine()
    await engine.start()
    rows += await in_process_levels(engine, "en-us-f2", levels, "engine in-process")
    await engine.close()
    return {"scenario": "espeak", "text": TEXT, "rows": rows}


OVERHEAD_ENGINE = {"first_chunk_ms": 150, "rtf": 0.1, "chunk_ms": 200, "capacity": 128}


async def overhead() -> dict[str, Any]:
    """Time to first audio through the server minus the engine's own, with a
    simulated GPU engine that is never saturated (so only the gateway varies)."""
    levels = {1: 100, 8: 25, 32: 10, 64: 8}
    env = {
        "VOXGATE_ENGINES": sim_engines(**OVERHEAD_ENGINE),
        "VOXGATE_QUEUE_SIZE": "512",
        "VOXGATE_CACHE_ENABLED": "false",  # every request must reach the engine
    }
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
        target = loadgen.Target(voice="alloy", format="pcm", model="sim")
        http = await http_levels(server, target, levels, "HTTP pcm")
    engine = SimulatedEngine(**OVERHEAD_ENGINE)
    await engine.start()
    direct = await in_process_levels(engine, SIM_SPEAKERS[0].id, levels, "engine in-process")
    overheads = []
    for h, d in zip(http, direct, strict=True):
        overheads.append(
            {
                "concurrency": h["concurrency"],
                **{
                    f"{p}_ms": round(h["ttfa_ms"][p] - d["ttfa_ms"][p], 2)
                    for p in ("p50", "p90", "p99")
                },
                "gateway_cpu_ms": h["gateway_cpu_ms"],
            }
        )
    return {
        "scenario": "overhead",
        "engine": OVERHEAD_ENGINE,
        "rows": http + direct,
        "overhead": overheads,
    }


OVERLOAD_ENGINE = {"first_chunk_ms": 150, "rtf": 0.1, "chunk_ms": 200, "capacity": 8}


async def overload() -> dict[str, Any]:
    """Open-loop arrivals at 1x, 2x and 4x what the engine can serve."""
    text = "Overload is where a gateway earns its keep."  # 43 chars: 2.6 s of audio
    service_s = OVERLOAD_ENGINE["first_chunk_ms"] / 1000 + 2.6 * OVERLOAD_ENGINE["rtf"]
    capacity_rps = OVERLOAD_ENGINE["capacity"] / service_s
    # A realtime service: no request should wait more than a second for a slot.
    env = {
        "VOXGATE_ENGINES": sim_engines(**OVERLOAD_ENGINE),
        "VOXGATE_QUEUE_TIMEOUT_S": "1",
        "VOXGATE_CACHE_ENABLED": "false",  # every request must reach the engine
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
        target = loadgen.Target(voice="alloy", format="pcm", model="sim", text=text)
        client = http1.Client(server.url)
        send = loadgen.http_request(client, target)
        await loadgen.run_closed(send, 4, 2, warmup=0)  # warm the server up
        for factor in (1, 2, 4):
            result = await loadgen.run_open(send, capacity_rps * factor, 20.0, label=f"{factor}x")
            row = result.report()
            rows.append(row)
            print(f"  {factor}x: p99 TTFA {row['ttfa_ms']['p99']} ms, errors {row['errors']}")
            await asyncio.sleep(12)  # let the queue drain before the next level
        await client.aclose()
    return {
        "scenario": "overload",
        "engine": OVERLOAD_ENGINE,
        "capacity_rps": capacity_rps,
        "rows": rows,
    }


async def priority() -> dict[str, Any]:
    """Realtime requests alone, then while a batch backlog several times the
    engine's capacity waits: realtime should wait for one slot at most."""
    text = "Overload is where a gateway earns its keep."
    env = {
        "VOXGATE_ENGINES": sim_engines(**OVERLOAD_ENGINE),
        "VOXGATE_QUEUE_TIMEOUT_BATCH_S": "600",
        "VOXGATE_CACHE_ENABLED": "false",  # every request must reach the engine
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
        client = http1.Client(server.url, timeout_s=600)
        realtime = loadgen.http_request(
            client, loadgen.Target(model="sim", text=text, voice="alloy", priority="realtime")
        )
        batch = loadgen.http_request(
            client, loadgen.Target(model="sim", text=text, voice="alloy", priority="batch")
        )
        await loadgen.run_closed(realtime, 2, 2, warmup=0)
        alone = await loadgen.run_closed(realtime, 2, 20, label="realtime alone", warmup=1)
        rows.append(alone.report())
        backlog = OVERLOAD_ENGINE["capacity"] * 6
        started = time.perf_counter()
        pending = [asyncio.create_task(batch(i)) for i in range(backlog)]
        await asyncio.sleep(0.5)
        behind = await loadgen.run_closed(
            realtime, 2, 20, label=f"realtime, {backlog} batch waiting", warmup=0
        )
        rows.append(behind.report())
        batch_samples = list(await asyncio.gather(*pending))
        wall = time.perf_counter() - started
        rows.append(loadgen.RunResult("the batch backlog", batch_samples, wall).report())
        await client.aclose()
    return {"scenario": "priority", "engine": OVERLOAD_ENGINE, "rows": rows}


async def engine_started(client: http1.Client, engine: str) -> int:
    """Syntheses an engine has begun (its own counter)."""
    return int((await client.get_json(f"/v1/engines/{engine}"))["stats"]["started"])


def numbered(client: http1.Client, target: loadgen.Target) -> loadgen.RequestFn:
    """Every request a text of its own, so that every one is a cache miss."""

    async def send(n: int) -> loadgen.Sample:
        own = dataclasses.replace(target, text=f"{target.text} Request number {n + 100_000}.")
        return await loadgen.http_request(client, own)(n)

    return send


async def cache() -> dict[str, Any]:
    """A hit against a miss on an engine that is never saturated; then bursts of
    20 identical requests on an engine with room for 4, with single flight and
    with the cache off (where 20 syntheses queue for 4 slots)."""
    engines = {
        "sim": {"kind": "simulated", "options": OVERHEAD_ENGINE},
        "gpu4": {"kind": "simulated", "options": {**OVERHEAD_ENGINE, "capacity": 4}},
    }
    target = loadgen.Target(voice="alloy", format="pcm", model="sim")
    rows: list[dict[str, Any]] = []
    for enabled in ("true", "false"):
        env = {
            "VOXGATE_ENGINES": json.dumps(engines),
            "VOXGATE_QUEUE_SIZE": "512",
            "VOXGATE_CACHE_ENABLED": enabled,
        }
        state = "cache on" if enabled == "true" else "cache off"
        with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
            client = http1.Client(server.url)
            miss = await loadgen.run_closed(numbered(client, target), 1, 30, label=f"miss, {state}")
            rows.append(miss.report())
            if enabled == "true":
                hit = loadgen.http_request(client, target)
                await hit(0)  # stored from here on
                # A hit takes about a millisecond: the usual half-second ramp
                # would start the 32 streams one after another, not together.
                for streams, per_stream in ((1, 500), (32, 100)):
                    result = await loadgen.run_closed(
                        hit, streams, per_stream, label="hit", ramp_s=0.02
                    )
                    rows.append(result.report())
            samples: list[loadgen.Sample] = []
            syntheses = 0
            wall = 0.0
            for burst in range(5):
                text = f"{TEXT} Burst number {burst}."
                gpu4 = dataclasses.replace(target, model="gpu4", text=text)
                send = loadgen.http_request(client, gpu4)
                before = await engine_started(client, "gpu4")
                started = time.perf_counter()
                samples += await asyncio.gather(*(send(i) for i in range(20)))
                wall += time.perf_counter() - started
                syntheses += await engine_started(client, "gpu4") - before
            burst_result = loadgen.RunResult(
                f"20 identical at once, {state}", samples, wall, concurrency=20
            ).report()
            burst_result["engine_syntheses_per_burst"] = syntheses / 5
            rows.append(burst_result)
            await client.aclose()
    return {"scenario": "cache", "engine": OVERHEAD_ENGINE, "text": TEXT, "rows": rows}


SOAK_ENGINE = {
    "first_chunk_ms": 5,
    "rtf": 0.005,
    "chunk_ms": 250,
    "capacity": 64,
    "fault_rates": {"before": 0.005, "mid": 0.005, "nan": 0.01},
}


async def soak() -> dict[str, Any]:
    """20,000 requests in all six formats with injected faults; the gateway's
    resident memory sampled throughout must stay flat."""
    total = int(os.environ.get("VOXGATE_SOAK_REQUESTS", "20000"))
    streams = 32
    env = {"VOXGATE_ENGINES": sim_engines(**SOAK_ENGINE), "VOXGATE_CACHE_ENABLED": "false"}
    formats = ["pcm", "mp3", "opus", "aac", "flac", "wav"]
    samples: list[tuple[int, float, float]] = []  # (requests done, seconds, MiB)
    done = 0
    errors: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
        assert server.process is not None
        pid = server.process.pid
        client = http1.Client(server.url, 60)
        senders = [
            loadgen.http_request(
                client, loadgen.Target(model="sim", format=f, text=f"Soak request in {f}.")
            )
            for f in formats
        ]
        started = time.perf_counter()

        async def send(n: int) -> loadgen.Sample:
            return await senders[n % len(senders)](n)

        async def sampler() -> None:
            while True:
                samples.append((done, time.perf_counter() - started, rss_mib(pid)))
                await asyncio.sleep(1.0)

        def count(sample: loadgen.Sample) -> None:
            nonlocal done
            done += 1
            if not sample.ok:
                key = sample.error or str(sample.status)
                errors[key] = errors.get(key, 0) + 1
            if done % 2000 == 0:
                print(f"  {done} requests, RSS {rss_mib(pid):.1f} MiB", flush=True)

        watcher = asyncio.create_task(sampler())
        result = await loadgen.run_closed(send, streams, total // streams, on_sample=count)
        watcher.cancel()
        samples.append((done, time.perf_counter() - started, rss_mib(pid)))
        runtime = await client.get_json("/v1/admin/runtime")
        await client.aclose()
    n = np.array([s[0] for s in samples], dtype=float)
    mib = np.array([s[2] for s in samples])
    after_warmup = n >= min(2000, n.max() / 10)
    steady = mib[after_warmup]
    third = max(1, len(steady) // 3)
    # Allocators hand memory back in lumps, so RSS under load oscillates; a
    # leak shows as the middle of the distribution moving up, not as a fit
    # through the oscillation.
    early, late = float(np.median(steady[:third])), float(np.median(steady[-third:]))
    slope = float(np.polyfit(n[after_warmup], steady, 1)[0]) * 1000
    return {
        "scenario": "soak",
        "engine": SOAK_ENGINE,
        "requests": len(result.samples),
        "wall_s": round(result.wall_s, 1),
        "rps": round(len(result.samples) / result.wall_s, 1),
        "errors": errors,
        "rss_mib": {
            "start": round(float(mib[0]), 1),
            "after_2000": round(float(mib[after_warmup][0]), 1),
            "end": round(float(mib[-1]), 1),
            "max": round(float(mib.max()), 1),
            "median_first_third": round(early, 1),
            "median_last_third": round(late, 1),
            "slope_mib_per_1000_requests": round(slope, 3),
        },
        "runtime_after": runtime,
        "timeline": [
            {"requests": int(a), "s": round(b, 1), "rss_mib": round(c, 1)} for a, b, c in samples
        ],
    }


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
        for name, options in (("default", {}), ("voxgate", None)):
            runs = []
            for _ in range(5):
                started = time.process_time()
                enc = AvEncoder(fmt, 24000, codec_options=options)
                size = sum(len(enc.encode(c)) for c in speech) + len(enc.finish())
                runs.append(time.process_time() - started)
            timings[name] = (round(min(runs) * 1000, 1), size)
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
    return {"scenario": "encoders", "text": TEXT, "rows": rows}


# The stand-in model (tests/fakes/cosyvoice) with upstream's 0.1 s poll and a
# model that makes 100 speech tokens a second (25 tokens = 1 s of audio: 4x
# real time, a mid-range GPU running CosyVoice2 in PyTorch).
ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT / "tests" / "fakes"
STAND_IN_ENV = {"FAKE_COSYVOICE_POLL_S": "0.1", "FAKE_COSYVOICE_TOKEN_S": "0.01"}
COSYVOICE_TEXT = (
    "收到好友从远方寄来的生日礼物，那份意外的惊喜与深深的祝福让我心中充满了甜蜜的快乐。"
)


async def cosyvoice() -> dict[str, Any]:
    """First-chunk latency with and without the hop-length drift guard."""
    os.environ.update(STAND_IN_ENV)
    sys.path[:0] = [str(STAND_IN), str(ROOT)]
    from cosyvoice.cli.cosyvoice import AutoModel  # the stand-in
    from tests.fakes.modeldirs import make_model_dir

    from voxgate.audio.prompt import PromptAudio
    from voxgate.engines.cosyvoice.local import CosyVoiceEngine

    t = np.arange(48000, dtype=np.float32) / 16000
    prompt = PromptAudio((0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000, "提示")
    wav = prompt.wav(16000)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model_dir(Path(tmp), 2)
        upstream = AutoModel(model_dir=str(model_dir))
        firsts = []
        for _ in range(6):
            started = time.perf_counter()
            outputs = upstream.inference_zero_shot(
                COSYVOICE_TEXT, prompt.text, io.BytesIO(wav), stream=True
            )
            next(outputs)
            firsts.append(round((time.perf_counter() - started) * 1000))
            outputs.close()
        rows.append({"path": "upstream, called directly", "first_chunk_ms": firsts})

        options = {"model_dir": str(model_dir), "repo_dir": str(STAND_IN), "concurrency": 4}
        engine = CosyVoiceEngine("cv", **options)  # type: ignore[arg-type]
        await engine.start()
        segments = tuple(split(parse(COSYVOICE_TEXT), max_chars=80, first_max_chars=80))

        async def first_chunk(n: int) -> int:
            request = EngineRequest(f"b{n}", Mode.ZERO_SHOT, segments, None, prompt=prompt)
            started = time.perf_counter()
            stream = engine.synthesize(request)
            await anext(stream)
            elapsed = round((time.perf_counter() - started) * 1000)
            await stream.aclose()  # type: ignore[attr-defined]
            return elapsed

        sequential = [await first_chunk(i) for i in range(6)]
        rows.append({"path": "voxgate engine", "first_chunk_ms": sequential})
        concurrent = await asyncio.gather(*(first_chunk(10 + i) for i in range(4)))
        rows.append({"path": "voxgate engine, 4 at once", "first_chunk_ms": list(concurrent)})
        await engine.close()

        engines = {"cv": {"kind": "cosyvoice", "options": options}}
        env = {**STAND_IN_ENV, "VOXGATE_ENGINES": json.dumps(engines)}
        served: list[int] = []
        with ServerProcess(Path(tmp) / "server", env) as server:
            async with httpx.AsyncClient(timeout=60) as client:
                for _ in range(6):
                    files = {"prompt_wav": ("p.wav", wav)}
                    data = {"tts_text": COSYVOICE_TEXT, "prompt_text": prompt.text}
                    started = time.perf_counter()
                    url = server.url + "/inference_zero_shot"
                    async with client.stream("POST", url, data=data, files=files) as response:
                        async for _ in response.aiter_raw():
                            break
                    served.append(round((time.perf_counter() - started) * 1000))
            rows.append({"path": "voxgate server, /inference_zero_shot", "first_chunk_ms": served})
    return {"scenario": "cosyvoice", "stand_in": STAND_IN_ENV, "rows": rows}


async def worker() -> dict[str, Any]:
    """Time to first audio with the engine one process away, against the same
    engine in the gateway: the overhead scenario's simulated engine (never
    saturated), PCM through /v1/audio/speech, with the gateway's CPU."""
    levels = {1: 100, 8: 25, 32: 10}
    base = {"VOXGATE_QUEUE_SIZE": "512", "VOXGATE_CACHE_ENABLED": "false"}
    local = {**base, "VOXGATE_ENGINES": sim_engines(**OVERHEAD_ENGINE)}
    isolated = {"sim": {"kind": "simulated", "options": OVERHEAD_ENGINE, "isolate": True}}
    target = loadgen.Target(voice="alloy", format="pcm", model="sim")
    paths = ("in-process engine", "worker, loopback TCP", "isolated child, Unix socket")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with ServerProcess(root / "local", local) as server:
            rows += await http_levels(server, target, levels, paths[0])
        with WorkerProcess(root / "worker", "sim", local) as hop:
            remote = json.dumps({"sim": {"kind": "worker", "options": {"urls": [hop.url]}}})
            with ServerProcess(root / "via", {**base, "VOXGATE_ENGINES": remote}) as server:
                rows += await http_levels(server, target, levels, paths[1])
        env = {**base, "VOXGATE_ENGINES": json.dumps(isolated)}
        with ServerProcess(root / "isolated", env) as server:
            rows += await http_levels(server, target, levels, paths[2])
    direct = [r for r in rows if r["label"] == paths[0]]
    hops = []
    for path in paths[1:]:
        for h, d in zip([r for r in rows if r["label"] == path], direct, strict=True):
            hops.append(
                {
                    "path": path,
                    "concurrency": h["concurrency"],
                    **{
                        f"{p}_ms": round(h["ttfa_ms"][p] - d["ttfa_ms"][p], 2)
                        for p in ("p50", "p90", "p99")
                    },
                    "gateway_cpu_ms": round(h["gateway_cpu_ms"] - d["gateway_cpu_ms"], 2),
                }
            )
    return {"scenario": "worker", "engine": OVERHEAD_ENGINE, "rows": rows, "hop": hops}


async def ws() -> dict[str, Any]:
    """Text sessions over the WebSocket: a sentence word by word (20 ms a word,
    an LLM's pace), silence until it is spoken, then the last sentence word by
    word. Measured: its last piece to the first audio after it, by the client
    and by the server (``last_text_to_first_audio_ms``)."""
    levels = {1: 20, 8: 5, 32: 2}
    engines = {
        "sim": {"kind": "simulated", "options": OVERHEAD_ENGINE},
        "espeak": {"kind": "espeak"},
    }
    env = {"VOXGATE_ENGINES": json.dumps(engines), "VOXGATE_QUEUE_SIZE": "512"}
    rows, tails = [], []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
        url = server.url.replace("http://", "ws://") + "/v1/audio/speech/stream"
        for name in ("sim", "espeak"):
            for streams, per_stream in levels.items():
                times = sessions.SessionTimes()
                send = sessions.ws_session(url, {"engine": name}, times)
                label = f"ws {name}"
                row = (await loadgen.run_closed(send, streams, per_stream, label=label)).report()
                row["server_last_text_ms"] = loadgen.summarize(times.server_last_text_s)
                row["first_audio_ms"] = loadgen.summarize(times.client_first_audio_s)
                rows.append(row)
                tails.append(
                    {
                        "engine": name,
                        "concurrency": streams,
                        "sessions": row["ok"],
                        **{f"client_{p}_ms": row["ttfa_ms"][p] for p in ("p50", "p90", "p99")},
                        **{f"server_{p}_ms": row["server_last_text_ms"][p] for p in ("p50", "p99")},
                        "first_audio_p50_ms": row["first_audio_ms"]["p50"],
                    }
                )
                p50 = row["ttfa_ms"]["p50"]
                print(f"  {label} c={streams}: last text -> audio p50 {p50} ms", flush=True)
    return {"scenario": "ws", "engine": OVERHEAD_ENGINE, "rows": rows, "tail": tails}


async def grpc_overhead() -> dict[str, Any]:
    """The same synthesis through gRPC SynthesizeStream and HTTP
    /v1/audio/speech (PCM, 24 kHz, the overhead scenario's simulated engine,
    never saturated): what each surface adds to time to first audio."""
    import grpc

    from voxgate.grpc.protos import speech_pb2

    levels = {1: 100, 8: 25, 32: 10}
    port = free_port()
    env = {
        "VOXGATE_ENGINES": sim_engines(**OVERHEAD_ENGINE),
        "VOXGATE_QUEUE_SIZE": "512",
        "VOXGATE_CACHE_ENABLED": "false",
        "VOXGATE_GRPC_PORT": str(port),
    }
    request = speech_pb2.SynthesizeRequest(
        text=TEXT, engine="sim", voice="alloy", format=speech_pb2.AUDIO_FORMAT_PCM
    )
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), env) as server:
        target = loadgen.Target(voice="alloy", format="pcm", model="sim")
        rows = await http_levels(server, target, levels, "HTTP /v1/audio/speech")
        assert server.process is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            send = sessions.grpc_stream(channel, request)
            for streams, per_stream in levels.items():
                cpu = cpu_seconds(server.process.pid)
                result = await loadgen.run_closed(send, streams, per_stream, label="gRPC stream")
                row = result.report()
                row["gateway_cpu_ms"] = round(
                    (cpu_seconds(server.process.pid) - cpu) * 1000 / len(result.samples), 2
                )
                rows.append(row)
                print(f"  gRPC c={streams}: TTFA p50 {row['ttfa_ms']['p50']} ms", flush=True)
    http = [r for r in rows if r["label"].startswith("HTTP")]
    over = [r for r in rows if r["label"].startswith("gRPC")]
    diffs = [
        {
            "path": "gRPC minus HTTP",
            "concurrency": g["concurrency"],
            **{
                f"{p}_ms": round(g["ttfa_ms"][p] - h["ttfa_ms"][p], 2)
                for p in ("p50", "p90", "p99")
            },
            "gateway_cpu_ms": round(g["gateway_cpu_ms"] - h["gateway_cpu_ms"], 2),
        }
        for g, h in zip(over, http, strict=True)
    ]
    return {"scenario": "grpc", "engine": OVERHEAD_ENGINE, "rows": rows, "hop": diffs}


JOB_ENGINE = {"first_chunk_ms": 100, "rtf": 0.2, "chunk_ms": 500, "capacity": 2}


async def jobs() -> dict[str, Any]:
    """Eight jobs of twelve sentences at once, run by the gateway's embedded
    queue (four at a time), their segments going to one engine worker, then
    to two: audio seconds produced per wall second, and the scaling."""
    text = " ".join(f"Chapter sentence {i} for the throughput run." for i in range(12))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engine_env = {"VOXGATE_ENGINES": sim_engines(**JOB_ENGINE)}
        for count in (1, 2):
            hosts = [
                WorkerProcess(root / f"w{count}-{i}", "sim", engine_env).start()
                for i in range(count)
            ]
            try:
                urls = [h.url for h in hosts]
                env = {
                    "VOXGATE_ENGINES": json.dumps(
                        {"sim": {"kind": "worker", "options": {"urls": urls}}}
                    ),
                    "VOXGATE_JOB_WORKERS": "4",
                    "VOXGATE_JOB_SEGMENT_CHARS": "60",
                    "VOXGATE_CACHE_ENABLED": "false",
                }
                with ServerProcess(root / f"gw{count}", env) as server:
                    async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
                        started = time.perf_counter()
                        ids = []
                        for n in range(8):
                            body = {"text": f"{text} Job {n}.", "format": "pcm"}
                            ids.append((await client.post("/v1/jobs", json=body)).json()["id"])
                        audio = 0.0
                        for job_id in ids:
                            while True:
                                job = (await client.get(f"/v1/jobs/{job_id}")).json()
                                if job["state"] in ("succeeded", "failed", "cancelled"):
                                    break
                                await asyncio.sleep(0.1)
                            assert job["state"] == "succeeded", job
                            audio += job["progress"]["audio_seconds"]
                        wall = time.perf_counter() - started
            finally:
                for h in hosts:
                    h.stop()
            rows.append(
                {
                    "workers": count,
                    "jobs": len(ids),
                    "audio_s": round(audio, 1),
                    "wall_s": round(wall, 2),
                    "audio_s_per_s": round(audio / wall, 2),
                }
            )
            print(f"  {count} worker(s): {rows[-1]['audio_s_per_s']} audio s per wall s")
    ratio = rows[1]["audio_s_per_s"] / rows[0]["audio_s_per_s"]
    return {"scenario": "jobs", "engine": JOB_ENGINE, "rows": rows, "scaling": round(ratio, 2)}


GC_PROBE = """\
import gc, json, os, time
_log = os.environ.get("VOXGATE_GC_PROBE_LOG")
if _log:
    _started = [0.0]
    def _probe(phase, info):
        if info["generation"] != 2:
            return
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        pause = (time.perf_counter() - _started[0]) * 1000
        with open(_log, "a") as out:
            out.write(json.dumps({"pid": os.getpid(), "at": time.time(), "pause_ms": pause,
                                  "objects": len(gc.get_objects(2))}) + "\\n")
    gc.callbacks.append(_probe)
"""


async def gc_pauses() -> dict[str, Any]:
    """Full (generation-2) garbage collections in the server while it serves
    32 streams, with the start-up heap frozen (the default) and without: a
    ``gc.callbacks`` probe, loaded through ``sitecustomize``, logs each one."""
    rows: list[dict[str, Any]] = []
    collections: list[dict[str, Any]] = []
    for freeze in ("false", "true"):
        with tempfile.TemporaryDirectory() as tmp:
            probe_dir, log = Path(tmp) / "probe", Path(tmp) / "gc.jsonl"
            probe_dir.mkdir()
            (probe_dir / "sitecustomize.py").write_text(GC_PROBE)
            env = {
                "VOXGATE_ENGINES": sim_engines(**OVERHEAD_ENGINE),
                "VOXGATE_QUEUE_SIZE": "512",
                "VOXGATE_CACHE_ENABLED": "false",
                "VOXGATE_GC_FREEZE": freeze,
                "VOXGATE_GC_PROBE_LOG": str(log),
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(probe_dir), os.environ.get("PYTHONPATH")])
                ),
            }
            with ServerProcess(Path(tmp) / "data", env) as server:
                assert server.process is not None
                ready_at = time.time()
                target = loadgen.Target(voice="alloy", format="pcm", model="sim")
                label = "frozen" if freeze == "true" else "not frozen"
                rows += await http_levels(server, target, {32: 60}, f"32 streams, {label}")
                pid = server.process.pid
            lines = log.read_text().splitlines() if log.exists() else []
            seen = [json.loads(line) for line in lines]
            serving = [c for c in seen if c["pid"] == pid and c["at"] > ready_at]
            pauses = sorted(c["pause_ms"] for c in serving)
            collections.append(
                {
                    "heap": label,
                    "full_collections": len(serving),
                    "objects": [min((c["objects"] for c in serving), default=0),
                                max((c["objects"] for c in serving), default=0)],
                    "pause_ms": [round(p, 1) for p in pauses],
                }
            )  # fmt: skip
    return {"scenario": "gc", "engine": OVERHEAD_ENGINE, "rows": rows, "gc": collections}


async def shared_admission() -> dict[str, Any]:
    """The cost of one admission decision shared through Redis: 2,000
    acquire + release pairs on a free engine, one at a time, against the
    machine's Redis (``VOXGATE_REDIS_URL``, default the loopback one)."""
    from voxgate.serving.redis import RedisConnection
    from voxgate.serving.shared_admission import SharedAdmission

    url = os.environ.get("VOXGATE_REDIS_URL", "redis://127.0.0.1:6379/0")
    redis = RedisConnection(url, f"vgbench:{os.getpid()}:")
    admission = SharedAdmission("bench", 8, 64, 5.0, redis=redis)
    try:
        for _ in range(100):  # warm-up: scripts loaded, connections open
            (await admission.acquire()).release()
        times = []
        for _ in range(2000):
            started = time.perf_counter()
            lease = await admission.acquire()
            times.append(time.perf_counter() - started)
            lease.release()
        await asyncio.sleep(0.2)  # releases run in the background
        calls = np.array(times) * 1000
    finally:
        await admission.close()
        await redis.close()
    row = {f"p{p}_ms": round(float(np.percentile(calls, p)), 3) for p in (50, 90, 99)}
    return {"scenario": "shared_admission", "acquires": len(calls), "acquire": row}


SCENARIOS: dict[str, Scenario] = {
    "espeak": espeak,
    "overhead": overhead,
    "overload": overload,
    "priority": priority,
    "cache": cache,
    "soak": soak,
    "encoders": encoders,
    "cosyvoice": cosyvoice,
    "worker": worker,
    "ws": ws,
    "grpc": grpc_overhead,
    "jobs": jobs,
    "gc": gc_pauses,
    "shared_admission": shared_admission,
}


def show(result: dict[str, Any]) -> None:
    name = result["scenario"]
    if name == "encoders":
        print("| format | audio s | default CPU ms | bytes | voxgate CPU ms | bytes |")
        print("|---|---|---|---|---|---|")
        for r in result["rows"]:
            print(f"| {r['format']} | {r['audio_s']} | {r['default_ms']} | {r['default_bytes']} "
                  f"| {r['voxgate_ms']} | {r['voxgate_bytes']} |")  # fmt: skip
        return
    if name == "cosyvoice":
        print("| path | time to first chunk, ms (request 1, 2, ...) |")
        print("|---|---|")
        for r in result["rows"]:
            print(f"| {r['path']} | {', '.join(map(str, r['first_chunk_ms']))} |")
        return
    if name == "shared_admission":
        print(json.dumps(result["acquire"]))
        return
    if name == "soak":
        print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))
        return
    if name == "jobs":
        print("| engine workers | jobs | audio s | wall s | audio s per wall s |")
        print("|---|---|---|---|---|")
        for r in result["rows"]:
            cells = (r["workers"], r["jobs"], r["audio_s"], r["wall_s"], r["audio_s_per_s"])
            print("| " + " | ".join(map(str, cells)) + " |")
        print(f"\nscaling, two workers over one: {result['scaling']}x")
        return
    if name == "ws":
        cells = (
            "engine concurrency sessions client_p50_ms client_p90_ms client_p99_ms "
            "server_p50_ms server_p99_ms first_audio_p50_ms"
        ).split()
        print("| " + " | ".join(cells) + " |\n|" + "---|" * len(cells))
        for t in result["tail"]:
            print("| " + " | ".join(str(t[c]) for c in cells) + " |")
        return
    print(report.markdown(result["rows"]))
    if name == "cache":
        print("\n| burst | engine syntheses per burst of 20 |\n|---|---|")
        for r in result["rows"]:
            if "engine_syntheses_per_burst" in r:
                print(f"| {r['label']} | {r['engine_syntheses_per_burst']:g} |")
    if "hop" in result:
        print("\n| path | streams | hop p50 ms | p90 | p99 | gateway CPU ms/req, added |")
        print("|---|---|---|---|---|---|")
        for o in result["hop"]:
            cells = ("path", "concurrency", "p50_ms", "p90_ms", "p99_ms", "gateway_cpu_ms")
            print("| " + " | ".join(str(o[c]) for c in cells) + " |")
    if "gc" in result:
        print("\n| heap | full collections while serving | objects walked | pauses ms |")
        print("|---|---|---|---|")
        for g in result["gc"]:
            low, high = g["objects"]
            print(f"| {g['heap']} | {g['full_collections']} | {low}-{high} | {g['pause_ms']} |")
    if "overhead" in result:
        print("\n| streams | overhead p50 ms | p90 | p99 | gateway CPU ms/req |")
        print("|---|---|---|---|---|")
        for o in result["overhead"]:
            print(f"| {o['concurrency']} | {o['p50_ms']} | {o['p90_ms']} | {o['p99_ms']} "
                  f"| {o['gateway_cpu_ms']} |")  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "names", nargs="*", help=f"scenarios (default: all): {', '.join(SCENARIOS)}"
    )
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}")
    OUT.mkdir(exist_ok=True)
    for name in args.names or list(SCENARIOS):
        print(f"\n## {name}", flush=True)
        result = run_fast(SCENARIOS[name]())
        result["machine"] = describe()
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
        if "rows" in result and name in ("espeak", "overhead", "overload"):
            report.plot(result["rows"], OUT / f"{name}.png", title=name)
        show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
