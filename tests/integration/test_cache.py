"""The result cache and single flight through real servers: the embedded
mode (files, in-process flights) and the shared mode (the machine's Redis),
with the same scenarios (DESIGN rule 7); then two gateways on one Redis.

Syntheses are counted by the simulated engines' own ``started`` counter
(``GET /v1/engines/{name}``). Each test speaks its own text, so tests sharing
a server never see each other's entries."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.prompts import SENTENCE, speech, wav_bytes
from tests.support.redis import REDIS_URL, redis_env
from voxgate.testing import ServerProcess

ENGINES = {
    # fast: most tests
    "sim": {"kind": "simulated", "options": {"first_chunk_ms": 30, "rtf": 0.05, "chunk_ms": 100}},
    # slow enough (about 2 s for a sentence) that requests meet while it runs
    "slow": {"kind": "simulated", "options": {"first_chunk_ms": 100, "rtf": 0.7, "chunk_ms": 100}},
    # registered voices need an engine that speaks with a prompt
    "espeak": {"kind": "espeak"},
}
ENV = {"VOXGATE_ENGINES": json.dumps(ENGINES), "VOXGATE_ASR__KIND": "none"}
CONSENT = "I, Test Speaker, agree that my voice may be used to make this voice."


@dataclass
class Gateway:
    server: ServerProcess
    mode: str
    prefix: str | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def stats(self, engine: str = "sim") -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.url}/v1/engines/{engine}").json()["stats"]
        return stats

    def started(self, engine: str = "sim") -> int:
        return self.stats(engine)["started"]

    def stored(self, key: str) -> bool:
        """Whether the entry with this key exists where the gateway keeps it."""
        if self.prefix is None:
            return (self.server.data_dir / "cache" / key[:2] / key).exists()
        client = redis.Redis.from_url(REDIS_URL)
        try:
            return bool(client.exists(f"{self.prefix}cache:entry:{key}"))
        finally:
            client.close()


def drop_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module", params=["embedded", "redis"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    env = dict(ENV)
    prefix = None
    if request.param == "redis":
        prefix = f"vgtest:{uuid.uuid4().hex[:12]}:"
        env |= redis_env(prefix)
    try:
        with ServerProcess(tmp_path_factory.mktemp(f"cache-{request.param}"), env) as server:
            yield Gateway(server, request.param, prefix)
    finally:
        if prefix is not None:
            drop_keys(prefix)


def unique(text: str) -> str:
    return f"{text} Request {uuid.uuid4().hex[:6]}."


def speech_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sim", "input": text, "voice": "alloy", "response_format": "mp3", **extra}


def say(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    response = httpx.post(url + "/v1/audio/speech", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response


def tts(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url + "/v1/tts", json=body, headers=headers, timeout=60)


async def concurrently(urls: list[str], body: dict[str, Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(u + "/v1/audio/speech", json=body) for u in urls))


# -- single flight and hits ------------------------------------------------------------


async def test_twenty_identical_requests_make_one_synthesis(gateway: Gateway) -> None:
    body = speech_body(unique("Twenty callers ask for this very sentence at once."), model="slow")
    before = gateway.started("slow")
    responses = await concurrently([gateway.url] * 20, body)
    assert [r.status_code for r in responses] == [200] * 20
    assert gateway.started("slow") - before == 1
    assert len({r.content for r in responses}) == 1
    assert len(responses[0].content) > 10_000
    verdicts = [r.headers["x-voxgate-cache"] for r in responses]
    assert verdicts.count("miss") == 1
    assert verdicts.count("shared") >= 1
    assert set(verdicts) <= {"miss", "shared", "hit"}


def test_a_repeated_request_is_a_hit_with_the_same_bytes(gateway: Gateway) -> None:
    body = speech_body(unique("Say it once, serve it twice."))
    before = gateway.started()
    first = say(gateway.url, body)
    second = say(gateway.url, body)
    assert first.headers["x-voxgate-cache"] == "miss"
    assert second.headers["x-voxgate-cache"] == "hit"
    assert second.content == first.content
    assert gateway.started() - before == 1
    # the audio is described as it was the first time
    for name in ("x-sample-rate", "x-audio-format", "x-voxgate-engine", "x-voxgate-voice"):
        assert second.headers[name] == first.headers[name]
    assert second.headers["etag"] == f'"{second.headers["etag"].strip(chr(34))}"'
    assert second.headers["cache-control"] == "no-store"  # a stream is never client-cached


def test_anything_that_changes_the_audio_is_a_different_entry(gateway: Gateway) -> None:
    text = unique("Small changes make new audio.")
    say(gateway.url, speech_body(text))
    before = gateway.started()
    variants = [
        speech_body(text + " Again"),
        speech_body(text, voice="onyx"),
        speech_body(text, response_format="wav"),
        speech_body(text, speed=1.25),
        speech_body(text, sample_rate=16000),
    ]
    for body in variants:
        assert say(gateway.url, body).headers["x-voxgate-cache"] == "miss", body
    assert gateway.started() - before == len(variants)
    # streamed and whole bytes differ, so they are separate entries too
    whole = tts(gateway.url, {"text": text, "engine": "sim", "voice": "alloy", "format": "mp3"})
    assert whole.headers["x-voxgate-cache"] == "miss"


def test_cache_control_lets_a_client_bypass_the_cache(gateway: Gateway) -> None:
    body = speech_body(unique("Fresh audio, please."))
    first = say(gateway.url, body)
    before = gateway.started()
    fresh = say(gateway.url, body, {"Cache-Control": "no-cache"})
    assert fresh.headers["x-voxgate-cache"] == "miss"
    assert fresh.content == first.content  # the engine is deterministic
    unstored = say(gateway.url, body, {"Cache-Control": "no-store"})
    assert "x-voxgate-cache" not in unstored.headers
    assert gateway.started() - before == 2
    assert say(gateway.url, body).headers["x-voxgate-cache"] == "hit"


def test_whole_responses_carry_an_etag_and_answer_if_none_match(gateway: Gateway) -> None:
    body = {"text": unique("A whole file with a tag."), "engine": "sim", "voice": "alloy"}
    first = tts(gateway.url, body)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, max-age=86400"
    assert first.headers["x-voxgate-cache"] == "miss"
    before = gateway.started()
    unchanged = tts(gateway.url, body, {"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    changed = tts(gateway.url, body, {"If-None-Match": '"something-else"'})
    assert changed.status_code == 200
    assert changed.headers["x-voxgate-cache"] == "hit"
    assert changed.headers["etag"] == etag
    assert changed.content == first.content
    assert gateway.started() == before


# -- disconnects and failures ----------------------------------------------------------


async def test_the_first_client_leaving_does_not_break_the_others(gateway: Gateway) -> None:
    body = speech_body(unique("The leader hangs up early but the others listen on."), model="slow")
    body["response_format"] = "pcm"
    before = gateway.stats("slow")
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as a_client,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as b_client,
        a_client.stream("POST", "/v1/audio/speech", json=body) as leader,
    ):
        assert leader.headers["x-voxgate-cache"] == "miss"
        leader_chunks = leader.aiter_raw()  # held: dropping it would close the response
        await anext(leader_chunks)
        async with b_client.stream("POST", "/v1/audio/speech", json=body) as follower:
            assert follower.headers["x-voxgate-cache"] == "shared"
            await leader.aclose()  # the first client goes away mid-stream
            shared = b"".join([chunk async for chunk in follower.aiter_raw()])
    after = gateway.stats("slow")
    assert after["started"] - before["started"] == 1
    assert after["completed"] - before["completed"] == 1
    assert after["cancelled"] == before["cancelled"]
    hit = say(gateway.url, body)
    assert hit.headers["x-voxgate-cache"] == "hit"
    assert hit.content == shared
    fresh = say(gateway.url, body, {"Cache-Control": "no-store"})
    assert fresh.content == shared  # all of it, not a truncated stream


async def test_when_every_client_leaves_the_synthesis_stops_and_nothing_is_kept(
    gateway: Gateway,
) -> None:
    body = speech_body(unique("Nobody stays to hear the end of this one."), model="slow")
    before = gateway.stats("slow")
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
        client.stream("POST", "/v1/audio/speech", json=body) as response,
    ):
        chunks = response.aiter_raw()
        await anext(chunks)
    for _ in range(50):
        after = gateway.stats("slow")
        if after["cancelled"] > before["cancelled"]:
            break
        await asyncio.sleep(0.1)
    assert after["cancelled"] - before["cancelled"] == 1
    assert after["active"] == 0
    again = say(gateway.url, body)
    assert again.headers["x-voxgate-cache"] == "miss"


async def test_a_failure_is_shared_and_never_kept(gateway: Gateway) -> None:
    body = speech_body(unique("This one fails #fault:before"), model="slow")
    before = gateway.started("slow")
    responses = await concurrently([gateway.url] * 3, body)
    assert gateway.started("slow") - before == 1
    codes = {(r.status_code, r.json()["error"]["code"]) for r in responses}
    assert len(codes) == 1
    assert next(iter(codes))[0] >= 500
    again = await concurrently([gateway.url], body)
    assert again[0].status_code >= 500
    assert gateway.started("slow") - before == 2


# -- registered voices -----------------------------------------------------------------


def register(url: str) -> dict[str, Any]:
    form = {"name": "cache fox", "consent": CONSENT, "prompt_text": SENTENCE}
    files = {"audio_sample": ("prompt.wav", wav_bytes(speech(), 24000), "audio/wav")}
    response = httpx.post(url + "/v1/audio/voices", data=form, files=files, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_deleting_a_voice_removes_the_audio_made_with_it(gateway: Gateway) -> None:
    voice = register(gateway.url)["id"]
    body = {"text": unique("Spoken in a registered voice."), "engine": "espeak", "voice": voice}
    first = tts(gateway.url, body)
    assert first.status_code == 200, first.text
    assert first.headers["x-voxgate-cache"] == "miss"
    key = first.headers["etag"].strip('"')
    assert gateway.stored(key)
    assert tts(gateway.url, body).headers["x-voxgate-cache"] == "hit"
    assert httpx.delete(f"{gateway.url}/v1/audio/voices/{voice}").status_code == 200
    assert not gateway.stored(key)
    gone = tts(gateway.url, body)
    assert gone.status_code == 400
    assert gone.json()["error"]["code"] == "voice_not_found"


def test_changing_a_voice_drops_its_old_audio(gateway: Gateway) -> None:
    voice = register(gateway.url)["id"]
    body = {"text": unique("Before and after the transcript changed."), "engine": "espeak"}
    body["voice"] = voice
    first = tts(gateway.url, body)
    key = first.headers["etag"].strip('"')
    assert gateway.stored(key)
    patched = httpx.patch(
        f"{gateway.url}/v1/audio/voices/{voice}", json={"prompt_text": SENTENCE + " Again."}
    )
    assert patched.status_code == 200, patched.text
    assert not gateway.stored(key)
    after = tts(gateway.url, body)
    assert after.headers["x-voxgate-cache"] == "miss"
    assert after.headers["etag"] != first.headers["etag"]


def test_an_inline_prompt_is_part_of_the_key(gateway: Gateway) -> None:
    def with_prompt(speaker: str) -> httpx.Response:
        prompt = base64.b64encode(wav_bytes(speech(speaker=speaker), 24000)).decode()
        body = {
            "text": text,
            "engine": "espeak",
            "mode": "cross_lingual",
            "reference_audio": prompt,
        }
        response = tts(gateway.url, body)
        assert response.status_code == 200, response.text
        return response

    text = unique("Whose voice is this?")
    first = with_prompt("en-us-m3")
    again = with_prompt("en-us-m3")
    other = with_prompt("en-us-f3")
    assert (first.headers["x-voxgate-cache"], again.headers["x-voxgate-cache"]) == ("miss", "hit")
    assert again.content == first.content
    assert other.headers["x-voxgate-cache"] == "miss"
    assert other.headers["etag"] != first.headers["etag"]


# -- bounds ----------------------------------------------------------------------------------


def test_entries_expire_and_large_results_are_not_kept(tmp_path: Path) -> None:
    env = {**ENV, "VOXGATE_CACHE_TTL_S": "1", "VOXGATE_CACHE_MAX_ENTRY_BYTES": "30000"}
    with ServerProcess(tmp_path, env) as server:
        gateway = Gateway(server, "embedded")
        body = speech_body(unique("Soon forgotten."))
        assert say(server.url, body).headers["x-voxgate-cache"] == "miss"
        assert say(server.url, body).headers["x-voxgate-cache"] == "hit"
        time.sleep(1.3)
        assert say(server.url, body).headers["x-voxgate-cache"] == "miss"
        # about 6 s of 24 kHz 16-bit WAV is far above 30,000 bytes
        long = {"text": "A long text. " * 8, "engine": "sim", "voice": "alloy"}
        first = tts(server.url, long)
        assert len(first.content) > 30_000
        assert first.headers["cache-control"] == "no-store"
        before = gateway.started()
        assert tts(server.url, long).headers["x-voxgate-cache"] == "miss"
        assert gateway.started() - before == 1


def test_the_cache_can_be_switched_off(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, {**ENV, "VOXGATE_CACHE_ENABLED": "false"}) as server:
        body = speech_body("The same words, twice.")
        first, second = say(server.url, body), say(server.url, body)
        assert "x-voxgate-cache" not in first.headers
        assert "x-voxgate-cache" not in second.headers
        assert Gateway(server, "embedded").started() == 2


# -- two gateways, one Redis -----------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    prefix = f"vgtest:{uuid.uuid4().hex[:12]}:"
    env = {**ENV, **redis_env(prefix)}
    try:
        with (
            ServerProcess(tmp_path_factory.mktemp("gw-a"), env) as a,
            ServerProcess(tmp_path_factory.mktemp("gw-b"), env) as b,
        ):
            yield Gateway(a, "redis", prefix), Gateway(b, "redis", prefix)
    finally:
        drop_keys(prefix)


def test_a_result_made_on_one_gateway_is_a_hit_on_another(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    body = speech_body(unique("Made on A, served by B."))
    before_b = b.started()
    made = say(a.url, body)
    served = say(b.url, body)
    assert made.headers["x-voxgate-cache"] == "miss"
    assert served.headers["x-voxgate-cache"] == "hit"
    assert served.content == made.content
    assert b.started() == before_b


async def test_identical_requests_on_two_gateways_share_one_synthesis(
    pair: tuple[Gateway, Gateway],
) -> None:
    a, b = pair
    body = speech_body(unique("Both gateways want this sentence right now."), model="slow")
    before = a.started("slow") + b.started("slow")
    responses = await concurrently([a.url, b.url] * 6, body)
    assert [r.status_code for r in responses] == [200] * 12
    assert a.started("slow") + b.started("slow") - before == 1
    assert len({r.content for r in responses}) == 1
    verdicts = [r.headers["x-voxgate-cache"] for r in responses]
    assert verdicts.count("miss") == 1
    # every request on the other gateway read the leader's chunks through Redis
    assert verdicts.count("shared") + verdicts.count("hit") == 11
