"""Load for the streamed surfaces: WebSocket text sessions and gRPC calls,
as :data:`voxgate.bench.loadgen.RequestFn` so that ``run_closed`` drives them
like HTTP requests (bench/run.py, scenarios ``ws`` and ``grpc``).

A text session is timed the way a voice agent feels it: the text of one
sentence arrives word by word, the client waits until that sentence has
been spoken (its audio has stopped arriving), then the last sentence arrives
word by word, ending with ``input.done``. The time from that last piece of
text to the first audio after it is the delay a listener hears at the end of
an LLM's answer; the time to the first audio of the session is the other.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from voxgate.bench.loadgen import RequestFn, Sample

FIRST = "The weather today is mild, with a light breeze from the west."
LAST = "Tomorrow it will rain in the afternoon."


@dataclass
class SessionTimes:
    """Seconds, per session: the server's ``last_text_to_first_audio_ms``, and
    the client's time from its first text to the first audio."""

    server_last_text_s: list[float] = field(default_factory=list)
    client_first_audio_s: list[float] = field(default_factory=list)


def ws_session(
    url: str,
    config: dict[str, Any],
    times: SessionTimes,
    *,
    word_s: float = 0.02,
    quiet_s: float = 0.3,
) -> RequestFn:
    """One session per call. The Sample's ``ttfa_s`` is the client's time from
    the last text piece to the first audio after it; ``quiet_s`` without audio
    means the first sentence has been spoken."""
    import websockets

    async def send(n: int) -> Sample:
        started = time.perf_counter()
        last_audio = [started]
        arrivals: list[float] = []  # when each audio frame came
        heard_any = asyncio.Event()
        done: dict[str, Any] = {}
        size = 0

        async def receive(ws: Any) -> None:
            nonlocal size
            async for message in ws:
                if isinstance(message, bytes):
                    last_audio.append(time.perf_counter())
                    arrivals.append(last_audio[-1])
                    heard_any.set()
                    size += len(message)
                else:
                    event = json.loads(message)
                    if event["type"] in ("audio.done", "error"):
                        done.update(event)

        try:
            async with websockets.connect(url, max_size=None) as ws:
                reader = asyncio.create_task(receive(ws))
                await ws.send(json.dumps({"type": "session.config", **config}))
                opened = time.perf_counter()
                for word in FIRST.split(" "):
                    await ws.send(json.dumps({"type": "input.text", "text": word + " "}))
                    await asyncio.sleep(word_s)
                await asyncio.wait_for(heard_any.wait(), 60)
                await _quiet(last_audio, quiet_s)
                *words, final = LAST.split(" ")
                for word in words:
                    await ws.send(json.dumps({"type": "input.text", "text": word + " "}))
                    await asyncio.sleep(word_s)
                heard = len(arrivals)
                last_text = time.perf_counter()
                await ws.send(json.dumps({"type": "input.text", "text": final}))
                await ws.send(json.dumps({"type": "input.done"}))
                await asyncio.wait_for(reader, 60)
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            return Sample(False, 0, time.perf_counter() - started, error=type(exc).__name__)
        total = time.perf_counter() - started
        if done.get("type") != "audio.done" or len(arrivals) <= heard:
            return Sample(False, 0, total, error=str(done.get("code", "no audio")))
        times.client_first_audio_s.append(arrivals[0] - opened)
        server = done["timings"]["last_text_to_first_audio_ms"]
        if server is not None:
            times.server_last_text_s.append(server / 1000)
        audio_s = done["usage"]["audio_seconds"]
        return Sample(True, 200, total, arrivals[heard] - last_text, audio_s, size)

    return send


async def _quiet(arrivals: list[float], quiet_s: float) -> None:
    """Until no audio has arrived for ``quiet_s``."""
    while True:
        silent = time.perf_counter() - arrivals[-1]
        if silent >= quiet_s:
            return
        await asyncio.sleep(quiet_s - silent)


def grpc_stream(channel: grpc.aio.Channel, request: Any) -> RequestFn:
    """``SynthesizeStream`` timed like an HTTP stream: time to the first audio
    message (the ``info`` message comes just before it)."""
    from voxgate.grpc.protos import speech_pb2_grpc

    stub = speech_pb2_grpc.SpeechStub(channel)

    async def send(n: int) -> Sample:
        started = time.perf_counter()
        first: float | None = None
        size = 0
        audio_s = 0.0
        try:
            async for event in stub.SynthesizeStream(request, timeout=60):
                kind = event.WhichOneof("event")
                if kind == "audio":
                    if first is None:
                        first = time.perf_counter() - started
                    size += len(event.audio)
                elif kind == "usage":
                    audio_s = event.usage.audio_seconds
        except grpc.aio.AioRpcError as exc:
            return Sample(False, 0, time.perf_counter() - started, error=exc.code().name)
        return Sample(True, 200, time.perf_counter() - started, first, audio_s, size)

    return send
