"""The official CosyVoice proto, voxgate's own speech.proto, and the modules
generated from them.

Two things can go wrong without anyone noticing: the committed
``cosyvoice_pb2*.py`` drift from the proto (someone edits one and not the
other), or the proto drifts from upstream's wire protocol (a renamed field,
a renumbered one, a unary method where upstream streams). The first is caught
by regenerating with scripts/gen-protos.sh and comparing; the second by
reading the compiled descriptor and checking it against upstream's
``runtime/python/grpc/cosyvoice.proto`` (commit ace7c47), written out below
as facts: names, numbers and types are what the wire depends on. voxgate's
own ``voxgate.v1.Speech`` is checked the same way against what clients in
other languages were generated from: renumbering a field breaks them silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "src" / "voxgate" / "grpc" / "protos"
PROTO = PROTOS / "cosyvoice.proto"
GENERATED = tuple(
    f"{name}{suffix}"
    for name in ("cosyvoice", "speech")
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
)

F = descriptor_pb2.FieldDescriptorProto
# Upstream's messages: name -> [(field, number, type, message type or "")].
UPSTREAM_MESSAGES = {
    "Request": [
        ("sft_request", 1, F.TYPE_MESSAGE, ".cosyvoice.sftRequest"),
        ("zero_shot_request", 2, F.TYPE_MESSAGE, ".cosyvoice.zeroshotRequest"),
        ("cross_lingual_request", 3, F.TYPE_MESSAGE, ".cosyvoice.crosslingualRequest"),
        ("instruct_request", 4, F.TYPE_MESSAGE, ".cosyvoice.instructRequest"),
    ],
    "sftRequest": [("spk_id", 1, F.TYPE_STRING, ""), ("tts_text", 2, F.TYPE_STRING, "")],
    "zeroshotRequest": [
        ("tts_text", 1, F.TYPE_STRING, ""),
        ("prompt_text", 2, F.TYPE_STRING, ""),
        ("prompt_audio", 3, F.TYPE_BYTES, ""),
    ],
    "crosslingualRequest": [
        ("tts_text", 1, F.TYPE_STRING, ""),
        ("prompt_audio", 2, F.TYPE_BYTES, ""),
    ],
    "instructRequest": [
        ("tts_text", 1, F.TYPE_STRING, ""),
        ("spk_id", 2, F.TYPE_STRING, ""),
        ("instruct_text", 3, F.TYPE_STRING, ""),
    ],
    "Response": [("tts_audio", 1, F.TYPE_BYTES, "")],
}


def test_the_committed_modules_are_what_the_proto_generates(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-protos.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    fresh = tmp_path / "voxgate" / "grpc" / "protos"
    stale = [
        name for name in GENERATED if (fresh / name).read_bytes() != (PROTOS / name).read_bytes()
    ]
    assert not stale, f"{stale} differ from the proto: run scripts/gen-protos.sh"


def compiled(tmp_path: Path, proto: Path = PROTO) -> descriptor_pb2.FileDescriptorProto:
    """The proto as upstream compiles it (its own directory as the include path)."""
    out = tmp_path / f"{proto.stem}.pb"
    args = ["protoc", f"-I{PROTOS}", f"--descriptor_set_out={out}", str(proto)]
    assert protoc.main(args) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert len(files) == 1
    return files[0]


def test_the_proto_is_upstreams_wire_protocol(tmp_path: Path) -> None:
    proto = compiled(tmp_path)
    assert proto.name == "cosyvoice.proto"
    assert proto.package == "cosyvoice"
    assert proto.syntax == "proto3"

    [service] = proto.service
    assert service.name == "CosyVoice"
    [method] = service.method
    assert (method.name, method.input_type, method.output_type) == (
        "Inference",
        ".cosyvoice.Request",
        ".cosyvoice.Response",
    )
    assert method.server_streaming
    assert not method.client_streaming

    messages = {
        m.name: [(f.name, f.number, f.type, f.type_name) for f in m.field]
        for m in proto.message_type
    }
    assert messages == UPSTREAM_MESSAGES
    [request] = [m for m in proto.message_type if m.name == "Request"]
    assert [o.name for o in request.oneof_decl] == ["RequestPayload"]
    assert all(f.HasField("oneof_index") and f.oneof_index == 0 for f in request.field)
    for message in proto.message_type:
        assert all(f.label == F.LABEL_OPTIONAL for f in message.field), message.name


# voxgate.v1.Speech: method -> (input, output, client streaming, server streaming)
SPEECH_METHODS = {
    "Synthesize": (".voxgate.v1.SynthesizeRequest", ".voxgate.v1.SynthesizeResponse", False, False),
    "SynthesizeStream": (
        ".voxgate.v1.SynthesizeRequest",
        ".voxgate.v1.SynthesizeStreamResponse",
        False,
        True,
    ),
    "StreamingSynthesize": (
        ".voxgate.v1.StreamingSynthesizeRequest",
        ".voxgate.v1.StreamingSynthesizeResponse",
        True,
        True,
    ),
}
# The request every client builds: field -> number (the wire depends on these).
SYNTHESIZE_REQUEST = dict(
    zip(
        "text voice engine model mode instruct language speed pitch volume format "
        "sample_rate seed priority reference_audio reference_text".split(),
        range(1, 17),
        strict=True,
    )
)
AUDIO_FORMATS = dict(zip("UNSPECIFIED WAV MP3 OPUS AAC FLAC PCM".split(), range(7), strict=True))
EVENTS = {"info": 1, "audio": 2, "usage": 3}


def test_the_speech_proto_keeps_its_wire_shape(tmp_path: Path) -> None:
    proto = compiled(tmp_path, PROTOS / "speech.proto")
    assert proto.package == "voxgate.v1"
    [service] = proto.service
    assert service.name == "Speech"
    methods = {
        m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
        for m in service.method
    }
    assert methods == SPEECH_METHODS
    messages = {m.name: {f.name: f.number for f in m.field} for m in proto.message_type}
    assert messages["SynthesizeRequest"] == SYNTHESIZE_REQUEST
    for name in ("SynthesizeStreamResponse", "StreamingSynthesizeResponse"):
        assert messages[name] == EVENTS
    assert messages["StreamingSynthesizeRequest"] == {"config": 1, "text": 2, "done": 3}
    [formats] = [e for e in proto.enum_type if e.name == "AudioFormat"]
    numbers = {v.name.removeprefix("AUDIO_FORMAT_"): v.number for v in formats.value}
    assert numbers == AUDIO_FORMATS
