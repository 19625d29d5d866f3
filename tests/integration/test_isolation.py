"""Concurrent requests never mix: each gets exactly the audio it would get alone
(the peer bug: two callers receiving each other's audio, or identical audio)."""

from __future__ import annotations

import asyncio

import numpy as np
import openai

from tests.support.audio import decode
from voxgate.testing import ServerProcess

VOICES = ["alloy", "echo", "中文女", "onyx"]


def texts() -> list[tuple[str, str]]:
    out = []
    for i in range(32):
        if i % 4 == 2:
            out.append((f"第{i}号请求，今天说的是不同的话。", VOICES[i % 4]))
        else:
            out.append(
                (f"Request number {i} says something of its own, {i * 7} times.", VOICES[i % 4])
            )
    return out


async def test_32_concurrent_requests_get_their_own_audio(server: ServerProcess) -> None:
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

    async def speak(text: str, voice: str) -> np.ndarray:
        r = await client.audio.speech.create(
            model="tts-1", voice=voice, input=text, response_format="pcm"
        )
        return decode(r.content, "pcm").samples

    cases = texts()
    alone = [await speak(t, v) for t, v in cases]
    together = await asyncio.gather(*(speak(t, v) for t, v in cases))
    for (text, _), a, b in zip(cases, alone, together, strict=True):
        assert np.array_equal(a, b), f"audio for {text!r} changed under concurrency"
    fingerprints = {a.tobytes() for a in alone}
    assert len(fingerprints) == len(cases), "different texts must give different audio"
    await client.close()
