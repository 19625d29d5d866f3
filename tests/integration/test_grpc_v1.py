"""``voxgate.v1.Speech`` through a real server process, with a client built
the way a user builds one: stubs compiled from the repository's
``speech.proto`` with grpcio-tools at test time, into a temporary directory.

The compiled file keeps the proto's path (``voxgate/grpc/protos/speech.proto``),
so protobuf sees the very same file if voxgate's committed modules are loaded
in this process too; only the stub's import of its messages is pointed at
the fresh module. Authentication is on (an admin token and API keys made
through the admin API), so every call carries ``authorization`` metadata.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest

from tests.support.audio import decode
from voxgate.testing import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
PROTO = "voxgate/grpc/protos/speech.proto"
ADMIN_TOKEN = "grpc-v1-admin-token-for-the-integration-tests"
SERVICE = "voxgate.v1.Speech"
SIM = {"first_chunk_ms": 60, "rtf": 0.05, "chunk_ms": 100}
ENGINES = {
    "sim": {"kind": "simulated", "options": SIM},
    "espeak": {"kind": "espeak"},
    "stuck": {"kind": "simulated", "timeout_s": 1, "options": SIM},
    "drained": {"kind": "simulated", "options": SIM},
}
TEXT = "The first sentence is here. Then comes a second one, a little longer. A third!"


@dataclass
class Stubs:
    pb: ModuleType  # speech_pb2
    grpc: ModuleType  # speech_pb2_grpc


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Stubs:
    out = tmp_path_factory.mktemp("stubs")
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'src'}"]
    outputs = [f"--python_out={out}", f"--grpc_python_out={out}"]
    compiled = subprocess.run(
        [*protoc, *outputs, PROTO], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stderr
    here = out / "voxgate" / "grpc" / "protos"
    stub = here / "speech_pb2_grpc.py"
    source = stub.read_text()
    assert "from voxgate.grpc.protos import speech_pb2" in source
    stub.write_text(
        source.replace("from voxgate.grpc.protos import speech_pb2", "import speech_pb2")
    )
    sys.path.insert(0, str(here))
    try:
        return Stubs(
            importlib.import_module("speech_pb2"), importlib.import_module("speech_pb2_grpc")
        )
    finally:
        sys.path.remove(str(here))


@dataclass
class Gateway:
    server: ServerProcess
    address: str
    keys: dict[str, str] = field(default_factory=dict)

    def metadata(self, tenant: str = "tenant-a") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[tenant]}"),)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    env = {
        "VOXGATE_AUTH": "on",
        "VOXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "VOXGATE_GRPC_PORT": str(port),
        "VOXGATE_ENGINES": json.dumps(ENGINES),
        "VOXGATE_WS_IDLE_TIMEOUT_S": "2",
    }
    with ServerProcess(tmp_path_factory.mktemp("grpc-v1"), env) as server:
        gateway = Gateway(server, f"127.0.0.1:{port}")
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=server.url, headers=admin, timeout=30) as http:
            for tenant, limits in (
                ("tenant-a", {}),
                ("tenant-rpm", {"requests_per_minute": 1}),
                ("tenant-quota", {"characters_per_day": 40}),
            ):
                assert http.post("/v1/admin/tenants", json={"id": tenant}).status_code == 201
                made = http.post("/v1/admin/keys", json={"tenant": tenant, "name": "g", **limits})
                assert made.status_code == 201, made.text
                gateway.keys[tenant] = made.json()["key"]
            assert http.post("/v1/admin/engines/drained/drain").status_code == 200
        yield gateway


@pytest.fixture(scope="module")
def channel(gateway: Gateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.address) as ch:
        yield ch


def stub(v1: Stubs, channel: grpc.Channel) -> Any:
    return v1.grpc.SpeechStub(channel)


def trailer(error: grpc.RpcError, key: str) -> str | None:
    return dict(error.trailing_metadata() or ()).get(key)


def engine(gateway: Gateway, name: str) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    url = f"{gateway.server.url}/v1/engines/{name}"
    document: dict[str, Any] = httpx.get(url, headers=admin, timeout=10).json()
    return document


# -- the three methods ---------------------------------------------------------------------


def test_synthesize_returns_the_whole_file(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway
) -> None:
    request = v1.pb.SynthesizeRequest(text=TEXT, engine="sim")
    response = stub(v1, channel).Synthesize(request, metadata=gateway.metadata(), timeout=30)
    info, usage = response.info, response.usage
    assert info.format == v1.pb.AUDIO_FORMAT_WAV  # the default, as on /v1/tts
    assert info.media_type == "audio/wav"
    assert (info.engine, info.voice, info.sample_rate, info.channels) == (
        "sim",
        "sim-female",
        24000,
        1,
    )
    assert len(info.request_id) == 32
    audio = decode(response.audio, "wav")
    assert audio.sample_rate == 24000
    assert audio.duration == pytest.approx(usage.audio_seconds, abs=0.001)
    assert usage.characters == len(TEXT)
    assert usage.HasField("first_audio_ms")
    assert 0 < usage.first_audio_ms <= usage.total_ms


@pytest.mark.parametrize(
    ("fmt", "name"), [("AUDIO_FORMAT_OPUS", "opus"), ("AUDIO_FORMAT_MP3", "mp3")]
)
def test_synthesize_stream_sends_info_audio_usage(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway, fmt: str, name: str
) -> None:
    request = v1.pb.SynthesizeRequest(
        text=TEXT, engine="espeak", voice="en-us-f3", format=getattr(v1.pb, fmt), speed=1.25
    )
    events = list(
        stub(v1, channel).SynthesizeStream(request, metadata=gateway.metadata(), timeout=30)
    )
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "info"
    assert kinds[-1] == "usage"
    assert set(kinds[1:-1]) == {"audio"}
    assert len(kinds) > 3  # streamed in pieces
    info, usage = events[0].info, events[-1].usage
    assert info.engine == "espeak"
    assert info.voice == "en-us-f3"
    audio = decode(b"".join(e.audio for e in events[1:-1]), name)
    assert audio.duration == pytest.approx(usage.audio_seconds, abs=0.08)
    assert usage.characters == len(TEXT)


@dataclass
class Heard:
    events: list[Any] = field(default_factory=list)
    first_audio_at: float | None = None
    done_at: float | None = None


def pieces(v1: Stubs, config: Any, text: str, heard: Heard, delay_s: float = 0.04) -> Iterator[Any]:
    yield v1.pb.StreamingSynthesizeRequest(config=config)
    for word in text.split(" "):
        yield v1.pb.StreamingSynthesizeRequest(text=word + " ")
        time.sleep(delay_s)
    heard.done_at = time.perf_counter()
    yield v1.pb.StreamingSynthesizeRequest(done=v1.pb.InputDone())


@pytest.mark.parametrize("name", ["sim", "espeak"])
def test_streaming_synthesize_speaks_before_the_text_is_done(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway, name: str
) -> None:
    heard = Heard()
    config = v1.pb.SessionConfig(engine=name, format=v1.pb.AUDIO_FORMAT_PCM)
    calls = stub(v1, channel).StreamingSynthesize(
        pieces(v1, config, TEXT, heard), metadata=gateway.metadata(), timeout=60
    )
    for event in calls:
        if event.WhichOneof("event") == "audio" and heard.first_audio_at is None:
            heard.first_audio_at = time.perf_counter()
        heard.events.append(event)
    assert heard.first_audio_at is not None
    assert heard.done_at is not None
    assert heard.first_audio_at < heard.done_at
    kinds = [e.WhichOneof("event") for e in heard.events]
    assert kinds[0] == "info"
    assert kinds[-1] == "usage"
    info, usage = heard.events[0].info, heard.events[-1].usage
    assert info.engine == name
    assert info.format == v1.pb.AUDIO_FORMAT_PCM
    pcm = b"".join(e.audio for e in heard.events[1:-1])
    assert len(pcm) / 2 / info.sample_rate == pytest.approx(usage.audio_seconds, abs=0.001)
    assert usage.characters == sum(len(w) + 1 for w in TEXT.split(" "))
    assert usage.HasField("last_text_to_first_audio_ms")
    assert usage.first_audio_ms < usage.total_ms


@pytest.mark.parametrize(
    ("fmt", "name"), [("AUDIO_FORMAT_OPUS", "opus"), ("AUDIO_FORMAT_PCM", "pcm")]
)
def test_every_method_reports_the_formats_media_type(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway, fmt: str, name: str
) -> None:
    request = v1.pb.SynthesizeRequest(text="Hello there.", engine="sim", format=getattr(v1.pb, fmt))
    metadata = gateway.metadata()
    streamed = _call(v1, channel, "SynthesizeStream", request, metadata=metadata)[0].info
    session = _call(v1, channel, "StreamingSynthesize", request, metadata=metadata)[0].info
    auth = {"Authorization": f"Bearer {gateway.keys['tenant-a']}"}
    body = {"text": "Hello there.", "engine": "sim", "format": name}
    http = httpx.post(f"{gateway.server.url}/v1/tts", json=body, headers=auth, timeout=30)
    assert http.status_code == 200, http.text
    assert session.format == streamed.format == getattr(v1.pb, fmt)
    assert session.media_type == streamed.media_type == http.headers["content-type"]


def test_cancelling_a_session_frees_the_engine(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway
) -> None:
    long = "A sentence that keeps the simulated engine busy for a good while. " * 40
    config = v1.pb.SessionConfig(engine="sim")
    requests = iter(
        [
            v1.pb.StreamingSynthesizeRequest(config=config),
            v1.pb.StreamingSynthesizeRequest(text=long),
        ]
    )
    blocked = threading.Event()

    def forever() -> Iterator[Any]:
        yield from requests
        blocked.wait(30)  # no done: the client cancels instead

    call = stub(v1, channel).StreamingSynthesize(forever(), metadata=gateway.metadata(), timeout=60)
    for event in call:
        if event.WhichOneof("event") == "audio":
            break
    busy = engine(gateway, "sim")
    call.cancel()
    blocked.set()
    for _ in range(100):
        if engine(gateway, "sim")["admission"]["in_use"] == 0:
            break
        time.sleep(0.05)
    idle = engine(gateway, "sim")
    assert busy["admission"]["in_use"] == 1
    assert busy["info"]["running"] == 1
    assert idle["admission"]["in_use"] == 0
    assert idle["info"]["running"] == 0


# -- authentication, limits and errors ---------------------------------------------------------


def _call(v1: Stubs, channel: grpc.Channel, method: str, request: Any, **kwargs: Any) -> Any:
    speech = stub(v1, channel)
    if method == "Synthesize":
        return speech.Synthesize(request, timeout=30, **kwargs)
    if method == "SynthesizeStream":
        return list(speech.SynthesizeStream(request, timeout=30, **kwargs))
    config = v1.pb.SessionConfig(
        engine=request.engine, voice=request.voice, format=request.format or v1.pb.AUDIO_FORMAT_PCM
    )
    if request.HasField("speed"):
        config.speed = request.speed
    messages = [v1.pb.StreamingSynthesizeRequest(config=config)]
    if request.text:
        messages.append(v1.pb.StreamingSynthesizeRequest(text=request.text))
    messages.append(v1.pb.StreamingSynthesizeRequest(done=v1.pb.InputDone()))
    return list(speech.StreamingSynthesize(iter(messages), timeout=30, **kwargs))


METHODS = ["Synthesize", "SynthesizeStream", "StreamingSynthesize"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("credential", "code"), [(None, "auth_required"), ("Bearer vg_nope_nope", "invalid_api_key")]
)
def test_calls_without_a_valid_key_are_unauthenticated(
    v1: Stubs, channel: grpc.Channel, method: str, credential: str | None, code: str
) -> None:
    metadata = () if credential is None else (("authorization", credential),)
    request = v1.pb.SynthesizeRequest(text="Hello.", engine="sim")
    with pytest.raises(grpc.RpcError) as failed:
        _call(v1, channel, method, request, metadata=metadata)
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert trailer(failed.value, "voxgate-error-code") == code
    assert trailer(failed.value, "voxgate-request-id")


ERRORS = [
    ({"voice": "nobody"}, grpc.StatusCode.NOT_FOUND, "voice_not_found"),
    ({"engine": "nothing"}, grpc.StatusCode.NOT_FOUND, "model_not_found"),
    ({"speed": 9.0}, grpc.StatusCode.INVALID_ARGUMENT, "speed_out_of_range"),
    ({"text": ""}, grpc.StatusCode.INVALID_ARGUMENT, "text_empty"),
    ({"format": 42}, grpc.StatusCode.INVALID_ARGUMENT, "format_unsupported"),
    ({"engine": "drained"}, grpc.StatusCode.UNAVAILABLE, "engine_unavailable"),
    (
        {"engine": "stuck", "text": "Nothing #fault:hang comes."},
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "engine_timeout",
    ),
    ({"text": "It #fault:before breaks."}, grpc.StatusCode.INTERNAL, "engine_failed"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("fields", "status", "code"), ERRORS)
def test_errors_are_statuses_with_voxgates_code(
    v1: Stubs,
    channel: grpc.Channel,
    gateway: Gateway,
    method: str,
    fields: dict[str, Any],
    status: grpc.StatusCode,
    code: str,
) -> None:
    request = v1.pb.SynthesizeRequest(**{"text": "Hello there.", "engine": "sim", **fields})
    with pytest.raises(grpc.RpcError) as failed:
        _call(v1, channel, method, request, metadata=gateway.metadata())
    assert failed.value.code() == status
    assert trailer(failed.value, "voxgate-error-code") == code
    assert code in failed.value.details()
    if status == grpc.StatusCode.UNAVAILABLE:
        assert int(trailer(failed.value, "retry-after") or 0) >= 1


def test_rate_limits_apply_with_retry_information(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway
) -> None:
    request = v1.pb.SynthesizeRequest(text="Once.", engine="sim")
    metadata = gateway.metadata("tenant-rpm")
    assert stub(v1, channel).Synthesize(request, metadata=metadata, timeout=30).audio
    with pytest.raises(grpc.RpcError) as failed:
        stub(v1, channel).Synthesize(request, metadata=metadata, timeout=30)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailer(failed.value, "voxgate-error-code") == "rate_limited"
    assert int(trailer(failed.value, "retry-after") or 0) >= 1


def test_the_daily_quota_counts_grpc_characters(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway
) -> None:
    metadata = gateway.metadata("tenant-quota")  # 40 characters a day
    speech = stub(v1, channel)
    first = v1.pb.SynthesizeRequest(text="Twenty-five characters!!", engine="sim")
    assert speech.Synthesize(first, metadata=metadata, timeout=30).usage.characters == 24
    config = v1.pb.SessionConfig(engine="sim")
    session = iter(
        [
            v1.pb.StreamingSynthesizeRequest(config=config),
            v1.pb.StreamingSynthesizeRequest(text="This session is more than what is left. "),
            v1.pb.StreamingSynthesizeRequest(done=v1.pb.InputDone()),
        ]
    )
    with pytest.raises(grpc.RpcError) as failed:
        list(speech.StreamingSynthesize(session, metadata=metadata, timeout=30))
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailer(failed.value, "voxgate-error-code") == "quota_exceeded"


def test_a_session_must_start_with_its_config(
    v1: Stubs, channel: grpc.Channel, gateway: Gateway
) -> None:
    messages = iter([v1.pb.StreamingSynthesizeRequest(text="Hello.")])
    with pytest.raises(grpc.RpcError) as failed:
        list(
            stub(v1, channel).StreamingSynthesize(messages, metadata=gateway.metadata(), timeout=30)
        )
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer(failed.value, "voxgate-error-code") == "unexpected_message"


def test_an_idle_session_is_ended(v1: Stubs, channel: grpc.Channel, gateway: Gateway) -> None:
    release = threading.Event()

    def quiet() -> Iterator[Any]:
        yield v1.pb.StreamingSynthesizeRequest(config=v1.pb.SessionConfig(engine="sim"))
        release.wait(30)

    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as failed:
        list(
            stub(v1, channel).StreamingSynthesize(quiet(), metadata=gateway.metadata(), timeout=30)
        )
    release.set()
    assert trailer(failed.value, "voxgate-error-code") == "session_idle_timeout"
    assert 2.0 <= time.perf_counter() - started < 10


# -- health, reflection, metrics ------------------------------------------------------------------


def test_health_reports_the_speech_service(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE, "cosyvoice.CosyVoice"):
        check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_services(channel: grpc.Channel) -> None:
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, described = list(reflect.ServerReflectionInfo(iter(asks), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "cosyvoice.CosyVoice", "grpc.health.v1.Health"} <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    speech = next(f for f in files if f.package == "voxgate.v1")
    [service] = speech.service
    assert [m.name for m in service.method] == [
        "Synthesize",
        "SynthesizeStream",
        "StreamingSynthesize",
    ]


def test_calls_are_in_the_metrics(v1: Stubs, channel: grpc.Channel, gateway: Gateway) -> None:
    request = v1.pb.SynthesizeRequest(text="Counted.", engine="sim")
    stub(v1, channel).Synthesize(request, metadata=gateway.metadata(), timeout=30)
    metrics = httpx.get(f"{gateway.server.url}/metrics", timeout=10).text
    route = f'route="grpc:/{SERVICE}/Synthesize"'
    lines = [line for line in metrics.splitlines() if route in line]
    assert any(
        line.startswith("voxgate_requests_total")
        and 'status="200"' in line
        and 'engine="sim"' in line
        for line in lines
    ), lines
    assert any(line.startswith("voxgate_time_to_first_audio_seconds_count") for line in lines)
