"""CosyVoice's official gRPC protocol, both ways.

* voxgate as the client: the ``cosyvoice-grpc`` engine against the stand-in
  official server (tests/fakes/official/grpc_server.py, a subprocess on
  loopback, on the stand-in model). Its audio is compared sample for sample
  with what the stand-in model produces for the same texts, called in this
  process the way upstream's server calls it.
* voxgate as the server: a real voxgate process with ``VOXGATE_GRPC_PORT``,
  driven by the official client the way upstream's client.py is built: stubs
  compiled from the proto with grpcio-tools at test time and imported as
  ``cosyvoice_pb2`` / ``cosyvoice_pb2_grpc``.

That client runs in a subprocess (this module, run as a program: see
:func:`client_main`). protobuf refuses two modules that define the same
message names in one process, and the engine tests load voxgate's generated
modules here. For the same reason, and to keep the client quick to start,
nothing from ``voxgate.grpc``, the engine, or torch is imported at the top of
this module.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.support.cosyvoice import collect, join, make_fast, request, stand_in, voice_prompt
from tests.support.procs import FAKES, FakeServer
from voxgate import errors
from voxgate.audio.pcm import from_s16le
from voxgate.engines.base import AudioChunk, EngineRequest, Mode
from voxgate.engines.cosyvoice.profile import speakers_from_names
from voxgate.engines.cosyvoice.texts import upstream_texts
from voxgate.errors import EngineTimeout, EngineUnavailable, UpstreamError, VoxgateError
from voxgate.testing import ServerProcess, free_port
from voxgate.text.cosyvoice_syntax import Version

if TYPE_CHECKING:
    from voxgate.engines.cosyvoice.grpc import CosyVoiceGrpcEngine

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "src" / "voxgate" / "grpc" / "protos" / "cosyvoice.proto"
SERVER_MODULE = "fakes.official.grpc_server"

ZH = "收到好友从远方寄来的生日礼物，那份意外的惊喜让我心中充满了快乐。笑容如花儿般绽放。"
EN = "The gateway speaks the official protocol. Clients do not notice the difference."
LONG_ZH = "今天的天气非常好，我们一起去公园散步吧。" * 40
TRANSCRIPT = "希望你以后能够做的比我还好呦。"  # what voice_prompt() "says"
SPEAKER = speakers_from_names(["中文女"])[0]
FAST = {"backoff_s": 0.01, "backoff_max_s": 0.02}  # retries without waiting around


# -- the official servers (stand-ins) ----------------------------------------------


@dataclass
class Official:
    servers: dict[str, FakeServer]
    model_dirs: dict[int, Path]

    def __getitem__(self, name: str) -> FakeServer:
        return self.servers[name]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Official]:
    """Every stand-in server this module needs, started together: each loads
    torch, so in parallel they are ready sooner. Each serves one test, so
    that what a test counts in a server's log is its own doing."""
    from tests.fakes.modeldirs import make_model_dir  # imports torch

    root = tmp_path_factory.mktemp("official-grpc")
    dirs = {1: make_model_dir(root, 1), 2: make_model_dir(root, 2)}
    specs: dict[str, tuple[int, list[str]]] = {
        "v1": (1, ["--fail-first", "2"]),
        "v2": (2, []),
        "v2-dying": (2, ["--die-after-chunks", "1"]),
        "v1-stalling": (1, ["--stall-s", "2"]),
    }
    servers = {
        name: FakeServer(SERVER_MODULE, ["--model_dir", str(dirs[v]), *extra], root)
        for name, (v, extra) in specs.items()
    }
    with ThreadPoolExecutor(len(servers)) as pool:
        try:
            for started in [pool.submit(s.start) for s in servers.values()]:
                started.result()
            yield Official(servers, dirs)
        finally:
            list(pool.map(FakeServer.stop, servers.values()))


def calls(server: FakeServer) -> int:
    """How many calls the server received (it logs one line per call)."""
    return server.log().count("inference call ")


@contextlib.asynccontextmanager
async def engine_at(address: str, **options: Any) -> AsyncIterator[CosyVoiceGrpcEngine]:
    from voxgate.engines.cosyvoice.grpc import CosyVoiceGrpcEngine

    engine = CosyVoiceGrpcEngine("cv-grpc", url=address, **options)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


async def drain(engine: CosyVoiceGrpcEngine, req: EngineRequest, into: list[AudioChunk]) -> None:
    """Collect chunks into ``into``, which keeps them when the stream fails."""
    async for chunk in engine.synthesize(req):
        into.append(chunk)


_models: dict[Path, Any] = {}


def model_output(model_dir: Path, version: Version, req: EngineRequest) -> np.ndarray:
    """What upstream's server sends for ``req``, computed here: the stand-in
    model called per segment with the texts the engine sends, its float
    output cast to int16 without clipping, as upstream does."""
    if model_dir not in _models:
        _models[model_dir] = stand_in().AutoModel(model_dir=str(model_dir))
        make_fast()
    model = _models[model_dir]
    pieces: list[bytes] = []
    for segment in req.segments:
        texts = upstream_texts(version, req, segment)
        wav = io.BytesIO(req.prompt.wav(16000)) if req.prompt else None
        speaker = req.speaker.id if req.speaker else ""
        if req.mode is Mode.SFT:
            outputs = model.inference_sft(texts.tts_text, speaker)
        elif req.mode is Mode.ZERO_SHOT:
            outputs = model.inference_zero_shot(texts.tts_text, texts.prompt_text, wav)
        elif req.mode is Mode.CROSS_LINGUAL:
            outputs = model.inference_cross_lingual(texts.tts_text, wav)
        else:
            outputs = model.inference_instruct(texts.tts_text, speaker, texts.instruct_text)
        for out in outputs:
            pieces.append((out["tts_speech"].numpy() * 2**15).astype(np.int16).tobytes())
    return from_s16le(b"".join(pieces))


# -- the engine: configuration --------------------------------------------------------


def test_the_url_is_host_port_or_grpc_scheme() -> None:
    from voxgate.engines.cosyvoice.grpc import CosyVoiceGrpcEngine

    assert CosyVoiceGrpcEngine(url="gpu-host:50000").target == "gpu-host:50000"
    assert CosyVoiceGrpcEngine(url="grpc://gpu-host:50000/").target == "gpu-host:50000"
    with pytest.raises(ValueError, match="cosyvoice-http"):
        CosyVoiceGrpcEngine(url="http://gpu-host:50000")


def test_instruct_is_offered_for_v1_only() -> None:
    from voxgate.engines.cosyvoice.grpc import CosyVoiceGrpcEngine

    v1 = CosyVoiceGrpcEngine(url="h:1", version=1, modes=["sft", "instruct"])
    assert Mode.INSTRUCT in v1.capabilities.modes
    assert not v1.capabilities.streaming  # upstream sends one message per segment
    for version in (2, 3):
        engine = CosyVoiceGrpcEngine(url="h:1", version=version)
        assert engine.capabilities.modes == {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL}
        assert Mode.INSTRUCT not in engine.capabilities.prompt_modes
        with pytest.raises(ValueError, match="instruct needs CosyVoice 1"):
            CosyVoiceGrpcEngine(url="h:1", version=version, modes=["zero_shot", "instruct"])


def test_status_codes_decide_retries() -> None:
    import grpc

    from voxgate.engines.cosyvoice.grpc import classify_rpc_error

    def failure(code: grpc.StatusCode) -> tuple[str, bool]:
        empty = grpc.aio.Metadata()
        f = classify_rpc_error(grpc.aio.AioRpcError(code, empty, empty, details="x"))
        return f.kind, f.retryable

    assert failure(grpc.StatusCode.UNAVAILABLE) == ("unavailable", True)
    assert failure(grpc.StatusCode.DEADLINE_EXCEEDED) == ("timeout", True)
    assert failure(grpc.StatusCode.RESOURCE_EXHAUSTED) == ("protocol", True)
    assert failure(grpc.StatusCode.UNKNOWN) == ("protocol", True)
    assert failure(grpc.StatusCode.INVALID_ARGUMENT) == ("rejected", False)
    assert failure(grpc.StatusCode.NOT_FOUND) == ("rejected", False)


# -- the engine against the official server --------------------------------------------


async def test_v1_sft_and_instruct_are_what_the_model_says(official: Official) -> None:
    server = official["v1"]  # answers UNAVAILABLE to its first two calls
    sft = request(ZH, Mode.SFT, speaker=SPEAKER, max_chars=40)
    instruct = request(ZH, Mode.INSTRUCT, speaker=SPEAKER, instruct="用开心的语气说")
    assert len(sft.segments) >= 2
    options = {"version": 1, "modes": ["sft", "instruct"], "retries": 2, **FAST}
    async with engine_at(server.address, **options) as engine:
        assert engine.health.ok
        chunks = await collect(engine, sft)
        # Failures before the first byte are retried: the first segment took
        # three calls, the second one.
        assert server.log().count("injected fault") == 2
        assert calls(server) == 2 + len(sft.segments)
        instructed = join(await collect(engine, instruct))
        assert engine.stats.completed == 2
    assert [c.segment for c in chunks] == [s.index for s in sft.segments]  # one per segment
    expected = model_output(official.model_dirs[1], 1, sft)
    assert expected.size > 0
    np.testing.assert_array_equal(join(chunks), expected)
    np.testing.assert_array_equal(instructed, model_output(official.model_dirs[1], 1, instruct))
    plain = model_output(official.model_dirs[1], 1, request(ZH, Mode.SFT, speaker=SPEAKER))
    assert not np.array_equal(instructed, plain)  # the instruction reached the model


async def test_zero_shot_and_cross_lingual_on_v2_are_what_the_model_says(
    official: Official,
) -> None:
    prompt = voice_prompt(3.0, rate=48000)  # sent as 16 kHz int16, as the service wants
    zero_shot = request(ZH, Mode.ZERO_SHOT, prompt=prompt)
    cross = request(EN, Mode.CROSS_LINGUAL, prompt=prompt)
    async with engine_at(official["v2"].address, version=2) as engine:
        assert engine.capabilities.sample_rate == 24000
        got_zero_shot = join(await collect(engine, zero_shot))
        got_cross = join(await collect(engine, cross))
    np.testing.assert_array_equal(got_zero_shot, model_output(official.model_dirs[2], 2, zero_shot))
    np.testing.assert_array_equal(got_cross, model_output(official.model_dirs[2], 2, cross))


async def test_a_stream_cut_midway_is_an_upstream_error_not_a_retry(official: Official) -> None:
    server = official["v2-dying"]  # exits after sending its first message
    req = request(ZH, Mode.CROSS_LINGUAL, prompt=voice_prompt(), max_chars=40)
    received: list[AudioChunk] = []
    async with engine_at(server.address, version=2, retries=2, connect_timeout_s=5.0, **FAST) as e:
        with pytest.raises(UpstreamError, match="mid-stream") as info:
            await drain(e, req, received)
        assert info.value.code == "upstream_error"
        assert received  # audio had arrived: retrying would have repeated it
        assert calls(server) == 1
        assert server.process is not None
        server.process.wait(timeout=10)

        # The server is gone now: the next request fails at once, without
        # waiting out the connect timeout.
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as down:
            await collect(e, req)
        assert time.monotonic() - started < e.options.connect_timeout_s
        assert down.value.code == "engine_unavailable"
        assert calls(server) == 1


async def test_a_server_that_is_not_running_is_unavailable_at_once() -> None:
    address = f"127.0.0.1:{free_port()}"
    req = request(ZH, Mode.SFT, speaker=SPEAKER)
    async with engine_at(address, version=1, retries=2, connect_timeout_s=5.0, **FAST) as engine:
        assert engine.health.ok is False
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match="not reachable after 3 attempts") as info:
            await collect(engine, req)
        assert time.monotonic() - started < engine.options.connect_timeout_s
    assert info.value.code == "engine_unavailable"
    assert info.value.retry_after


async def test_a_stall_longer_than_the_read_timeout_is_engine_timeout(official: Official) -> None:
    server = official["v1-stalling"]  # sleeps 2 s before its first message
    req = request(ZH, Mode.SFT, speaker=SPEAKER)
    async with engine_at(server.address, version=1, read_timeout_s=0.3, retries=1, **FAST) as e:
        with pytest.raises(EngineTimeout, match="after 2 attempts") as info:
            await collect(e, req)
        assert e.stats.failed == 1
    assert info.value.code == "engine_timeout"
    assert calls(server) == 2  # a timeout before any audio is retried


# -- voxgate's drop-in service, driven by the official client -----------------------


@dataclass
class Dropin:
    espeak: ServerProcess
    espeak_grpc: str
    cosyvoice: ServerProcess
    cosyvoice_grpc: str
    stubs: Path
    work: Path


@pytest.fixture(scope="module")
def dropin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dropin]:
    """Two voxgate servers with the gRPC service on (the default espeak
    engine; the in-process ``cosyvoice`` engine on the stand-in v2 model),
    and the official client's stubs compiled from the proto."""
    from tests.fakes.modeldirs import make_model_dir  # imports torch

    work = tmp_path_factory.mktemp("dropin")
    stubs = work / "stubs"
    stubs.mkdir()
    from grpc_tools import protoc

    args = ["protoc", f"-I{PROTO.parent}", f"--python_out={stubs}", f"--grpc_python_out={stubs}"]
    assert protoc.main([*args, str(PROTO)]) == 0

    espeak_port, cosyvoice_port = free_port(), free_port()
    engines = {
        "cosyvoice": {
            "kind": "cosyvoice",
            "options": {"model_dir": str(make_model_dir(work, 2)), "repo_dir": str(FAKES)},
        }
    }
    espeak = ServerProcess(work / "espeak", {"VOXGATE_GRPC_PORT": str(espeak_port)})
    cosyvoice = ServerProcess(
        work / "cosyvoice",
        {
            "VOXGATE_GRPC_PORT": str(cosyvoice_port),
            "VOXGATE_ENGINES": json.dumps(engines),
            "VOXGATE_COSYVOICE_COMPAT_ENGINE": "cosyvoice",
            "FAKE_COSYVOICE_POLL_S": "0.01",
            "FAKE_COSYVOICE_TOKEN_S": "0.0005",
        },
    )
    with ThreadPoolExecutor(2) as pool:
        try:
            for started in [pool.submit(espeak.start), pool.submit(cosyvoice.start)]:
                started.result()
            yield Dropin(
                espeak,
                f"127.0.0.1:{espeak_port}",
                cosyvoice,
                f"127.0.0.1:{cosyvoice_port}",
                stubs,
                work,
            )
        finally:
            codes = list(pool.map(ServerProcess.stop, [espeak, cosyvoice]))
    assert codes == [0, 0], espeak.log()[-2000:] + cosyvoice.log()[-2000:]


@dataclass
class Answer:
    code: str
    details: str
    trailing: dict[str, str]
    messages: int
    audio: bytes


def official_client(stubs: Path, address: str, calls: list[dict[str, Any]]) -> list[Answer]:
    """Run ``calls`` through the official client (in a subprocess, see the
    module docstring), one after another on one channel."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.test_cosyvoice_grpc", str(stubs), address],
        input=json.dumps(calls),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    for answer in answers:
        answer["audio"] = Path(answer.pop("audio_file")).read_bytes()
    return [Answer(**a) for a in answers]


def short_prompt_file(dropin: Dropin) -> str:
    """0.03 s of 16 kHz PCM: too short to imitate."""
    path = dropin.work / "prompt-short.pcm"
    path.write_bytes(voice_prompt(4.0).pcm16(16000)[:1000])
    return str(path)


def prompt_file(dropin: Dropin) -> str:
    path = dropin.work / "prompt-16k.pcm"
    path.write_bytes(voice_prompt(4.0).pcm16(16000))
    return str(path)


def test_voxgate_errors_map_to_grpc_status_codes() -> None:
    import grpc

    from voxgate.grpc.common import details, status_code

    def status(code: str) -> str:
        return str(status_code(VoxgateError("m", code=code)).name)

    assert status(errors.TEXT_EMPTY) == "INVALID_ARGUMENT"
    assert status(errors.PROMPT_TOO_SHORT) == "INVALID_ARGUMENT"
    assert status(errors.VOICE_NOT_FOUND) == "NOT_FOUND"  # a 400, but "not found" says more
    assert status(errors.MODEL_NOT_FOUND) == "NOT_FOUND"
    assert status(errors.ENGINE_OVERLOADED) == "RESOURCE_EXHAUSTED"
    assert status(errors.ENGINE_UNAVAILABLE) == "UNAVAILABLE"
    assert status(errors.UPSTREAM_ERROR) == "UNAVAILABLE"
    assert status(errors.ENGINE_TIMEOUT) == "DEADLINE_EXCEEDED"
    assert status(errors.ENGINE_FAILED) == "INTERNAL"
    assert status(errors.INTERNAL_ERROR) == "INTERNAL"
    assert grpc.StatusCode.UNKNOWN.name not in {status(code) for code in errors.CODES}
    error = VoxgateError("the text is empty", code=errors.TEXT_EMPTY, hint="Send a word.")
    assert details(error) == "text_empty: the text is empty (Send a word.)"


def test_sft_with_espeak_is_the_pcm_the_http_api_sends(dropin: Dropin) -> None:
    text = "你好，欢迎使用语音合成服务。"
    [answer] = official_client(
        dropin.stubs, dropin.espeak_grpc, [{"sft_request": {"spk_id": "中文女", "tts_text": text}}]
    )
    assert answer.code == "OK", answer.details
    http = httpx.post(
        dropin.espeak.url + "/v1/tts",
        json={"text": text, "voice": "中文女", "format": "pcm"},
        timeout=30,
    )
    assert http.status_code == 200
    assert http.headers["x-sample-rate"] == "22050"  # espeak's own rate, as upstream answers
    assert answer.audio == http.content
    samples = from_s16le(answer.audio)
    assert 1.0 < samples.size / 22050 < 8.0  # 14 characters of speech
    assert float(np.sqrt(np.mean(samples**2))) > 0.02  # speech, not silence


def test_errors_carry_a_status_and_the_voxgate_code(dropin: Dropin) -> None:
    unknown, empty, unsupported = official_client(
        dropin.stubs,
        dropin.espeak_grpc,
        [
            {"sft_request": {"spk_id": "nobody", "tts_text": "你好"}},
            {},
            {
                "zero_shot_request": {"tts_text": "你好", "prompt_text": TRANSCRIPT},
                "prompt_audio_file": short_prompt_file(dropin),
            },
        ],
    )
    assert unknown.code == "NOT_FOUND"
    assert unknown.details.startswith("voice_not_found: ")
    assert "nobody" in unknown.details
    assert unknown.trailing["voxgate-error-code"] == "voice_not_found"
    assert empty.code == "INVALID_ARGUMENT"
    assert empty.details.startswith("missing_field: ")
    assert empty.trailing["voxgate-error-code"] == "missing_field"
    assert unsupported.code == "INVALID_ARGUMENT"
    assert unsupported.trailing["voxgate-error-code"] == "prompt_too_short"
    assert all(a.messages == 0 for a in (unknown, empty, unsupported))


def test_the_health_service_reports_serving(dropin: Dropin) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(dropin.espeak_grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cosyvoice.CosyVoice"):
            check = health_pb2.HealthCheckRequest(service=service)
            assert stub.Check(check, timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_zero_shot_and_cross_lingual_on_the_cosyvoice_engine(dropin: Dropin) -> None:
    prompt = prompt_file(dropin)
    zero_shot, cross = official_client(
        dropin.stubs,
        dropin.cosyvoice_grpc,
        [
            {
                "zero_shot_request": {"tts_text": ZH, "prompt_text": TRANSCRIPT},
                "prompt_audio_file": prompt,
            },
            {"cross_lingual_request": {"tts_text": EN}, "prompt_audio_file": prompt},
        ],
    )
    for answer, text in ((zero_shot, ZH), (cross, EN)):
        assert answer.code == "OK", answer.details
        assert answer.messages > 1  # streamed, not sent whole
        seconds = from_s16le(answer.audio).size / 24000
        # The stand-in speaks 3 tokens per character at 25 tokens a second.
        assert 0.5 * len(text) * 0.12 < seconds < 1.5 * len(text) * 0.12
    assert zero_shot.audio != cross.audio


def test_a_client_that_cancels_cancels_the_synthesis(dropin: Dropin) -> None:
    prompt = prompt_file(dropin)
    long, later = official_client(
        dropin.stubs,
        dropin.cosyvoice_grpc,
        [
            {"cross_lingual_request": {"tts_text": LONG_ZH}, "prompt_audio_file": prompt,
             "cancel_after": 1},
            {"cross_lingual_request": {"tts_text": "你好。"}, "prompt_audio_file": prompt},
        ],
    )  # fmt: skip
    assert long.code == "CANCELLED"
    assert long.messages == 1
    assert later.code == "OK", later.details
    assert later.audio

    def engine_idle_after_a_cancel() -> bool:
        stats = httpx.get(dropin.cosyvoice.url + "/v1/engines/cosyvoice", timeout=10).json()
        return bool(stats["stats"]["active"] == 0 and stats["stats"]["cancelled"] == 1)

    def grpc_outcomes() -> list[str]:
        lines = dropin.cosyvoice.log().splitlines()
        logged = [json.loads(x) for x in lines if x.startswith("{") and "/Inference" in x]
        return [e["outcome"] for e in logged if e.get("surface") == "grpc"]

    assert poll(engine_idle_after_a_cancel)  # the engine stopped and freed its slot
    assert poll(lambda: "cancelled" in grpc_outcomes())
    assert grpc_outcomes().count("cancelled") == 1


def poll(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the official client, as a program ---------------------------------------------


def client_main(argv: list[str]) -> int:
    """``python -m tests.integration.test_cosyvoice_grpc STUBS ADDRESS < calls.json``

    Each call is a ``Request`` as JSON (``{"sft_request": {...}}``, ``{}`` for
    an empty one), optionally with ``prompt_audio_file`` (raw int16 at 16 kHz)
    and ``cancel_after`` (messages to read before cancelling). Prints one
    answer per call as JSON; audio goes to files next to the stubs.
    """
    import grpc

    stubs, address = Path(argv[0]), argv[1]
    sys.path.insert(0, str(stubs))
    import cosyvoice_pb2  # type: ignore[import-not-found]
    import cosyvoice_pb2_grpc  # type: ignore[import-not-found]

    answers = []
    with grpc.insecure_channel(address) as channel:
        stub = cosyvoice_pb2_grpc.CosyVoiceStub(channel)
        for n, spec in enumerate(json.loads(sys.stdin.read())):
            prompt_path = spec.pop("prompt_audio_file", None)
            cancel_after = spec.pop("cancel_after", None)
            request = cosyvoice_pb2.Request(**spec)
            if prompt_path:
                for name in ("zero_shot_request", "cross_lingual_request"):
                    if request.HasField(name):
                        getattr(request, name).prompt_audio = Path(prompt_path).read_bytes()
            audio, messages = bytearray(), 0
            call = stub.Inference(request, timeout=60)
            try:
                for response in call:
                    audio += response.tts_audio
                    messages += 1
                    if cancel_after and messages >= cancel_after:
                        call.cancel()
                        break
                code, details = call.code(), call.details() or ""
                trailing = call.trailing_metadata() or ()
            except grpc.RpcError as exc:
                code, details, trailing = exc.code(), exc.details() or "", exc.trailing_metadata()
            out = stubs / f"answer-{time.monotonic_ns()}-{n}.pcm"
            out.write_bytes(bytes(audio))
            answers.append(
                {
                    "code": code.name,
                    "details": details,
                    "trailing": dict(trailing or ()),
                    "messages": messages,
                    "audio_file": str(out),
                }
            )
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(client_main(sys.argv[1:]))


def test_the_official_service_applies_the_http_rate_limits(dropin: Dropin, tmp_path: Path) -> None:
    """gRPC callers share the limits of HTTP callers: the third call in a
    minute from an address limited to two is RESOURCE_EXHAUSTED, with the code
    and Retry-After in the trailing metadata."""
    port = free_port()
    env = {"VOXGATE_GRPC_PORT": str(port), "VOXGATE_RATE_LIMIT_ANONYMOUS_RPM": "2"}
    with ServerProcess(tmp_path, env):
        call = {"sft_request": {"spk_id": "中文女", "tts_text": "你好。"}}
        answers = official_client(dropin.stubs, f"127.0.0.1:{port}", [call, call, call])
    assert [a.code for a in answers] == ["OK", "OK", "RESOURCE_EXHAUSTED"]
    assert answers[2].trailing["voxgate-error-code"] == "rate_limited"
    assert int(answers[2].trailing["retry-after"]) >= 20
    assert answers[0].audio


def test_official_calls_are_counted_in_the_metrics(dropin: Dropin) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def requests(route: str) -> float:
        text = httpx.get(f"{dropin.espeak.url}/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "voxgate_requests"
            for sample in family.samples
            if sample.name == "voxgate_requests_total" and sample.labels.get("route") == route
        )

    route = "grpc:/cosyvoice.CosyVoice/Inference"
    before = requests(route)
    call = {"sft_request": {"spk_id": "中文女", "tts_text": "你好。"}}
    answers = official_client(dropin.stubs, dropin.espeak_grpc, [call, call])
    assert [a.code for a in answers] == ["OK", "OK"]
    assert requests(route) == before + 2
