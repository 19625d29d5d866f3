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
  soak        20,000 requests in all six formats with faults; server memory over time
  encoders    encoder CPU on real speech: ffmpeg defaults against voxgate's settings
  cosyvoice   the CosyVoice stand-in with upstream's timing: time to first chunk
              across requests, called as upstream documents (the hop-length drift)
              and through voxgate's engine; and through a voxgate server
"""

from __future__ import annotations

import argparse
import asyncio
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

from voxgate.bench import http1, loadgen, report
from voxgate.bench.machine import describe
from voxgate.bench.runner import run_fast
from voxgate.engines.base import Engine, EngineRequest, Mode
from voxgate.engines.espeak.catalog import SPEAKERS_BY_ID
from voxgate.engines.espeak.engine import EspeakEngine
from voxgate.engines.simulated import SPEAKERS as SIM_SPEAKERS
from voxgate.engines.simulated import SimulatedEngine
from voxgate.testing import ServerProcess
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
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp)) as server:
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
    env = {"VOXGATE_ENGINES": sim_engines(**OVERHEAD_ENGINE), "VOXGATE_QUEUE_SIZE": "512"}
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
    env = {"VOXGATE_ENGINES": sim_engines(**OVERLOAD_ENGINE)}
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
    env = {"VOXGATE_ENGINES": sim_engines(**SOAK_ENGINE)}
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


SCENARIOS: dict[str, Scenario] = {
    "espeak": espeak,
    "overhead": overhead,
    "overload": overload,
    "soak": soak,
    "encoders": encoders,
    "cosyvoice": cosyvoice,
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
    if name == "soak":
        print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))
        return
    print(report.markdown(result["rows"]))
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
