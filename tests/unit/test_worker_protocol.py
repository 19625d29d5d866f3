"""The worker protocol's framing and wire types: what goes in comes out exactly."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxgate import errors
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import Capabilities, EngineRequest, Mode, Speaker
from voxgate.engines.simulated import SimulatedEngine
from voxgate.errors import EngineError, EngineUnavailable, Overloaded, RequestError, UpstreamError
from voxgate.text.markup import Feature, parse
from voxgate.text.split import split
from voxgate.worker import protocol
from voxgate.worker.protocol import Frame, FrameDecoder, FrameType, ProtocolError


def frames_strategy() -> st.SearchStrategy[list[tuple[int, bytes]]]:
    kinds = st.sampled_from([int(k) for k in FrameType] + [0x7F, 0xFF])
    return st.lists(st.tuples(kinds, st.binary(max_size=300)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(items=frames_strategy(), cuts=st.lists(st.integers(min_value=1, max_value=64), max_size=40))
def test_frames_survive_any_split_of_the_stream(
    items: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(struct.pack(">BI", kind, len(p)) + p for kind, p in items)
    decoder = FrameDecoder()
    got: list[Frame] = []
    position = 0
    for cut in cuts:
        got += decoder.feed(stream[position : position + cut])
        position += cut
    got += decoder.feed(stream[position:])
    assert [(f.type, f.payload) for f in got] == items
    assert decoder.pending == 0


def test_header_layout_is_type_then_big_endian_length() -> None:
    assert protocol.frame(FrameType.END, b"ab") == b"\x04\x00\x00\x00\x02ab"
    assert protocol.frame(FrameType.TEXT, "你好".encode())[:5] == b"\x12\x00\x00\x00\x06"


def test_a_truncated_stream_is_detected() -> None:
    data = protocol.json_frame(FrameType.END, {"chunks": 1})
    with pytest.raises(ProtocolError, match="truncated"):
        protocol.decode_all(data[:-1])
    with pytest.raises(ProtocolError, match="truncated"):
        protocol.decode_all(data + b"\x01\x00")


def test_an_oversized_frame_is_refused_before_it_is_buffered() -> None:
    header = struct.pack(">BI", FrameType.AUDIO, protocol.MAX_PAYLOAD + 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder().feed(header)


def test_audio_frames_carry_exact_float32_samples_and_the_segment() -> None:
    samples = np.array([0.0, -1.0, 1.0, 1e-38, np.pi, -0.25], dtype=np.float32)
    data = protocol.audio_frame(7, samples)
    assert data[:1] == b"\x01"
    assert data[5:9] == b"\x00\x00\x00\x07"
    assert data[9:] == samples.astype("<f4").tobytes()
    (item,) = protocol.decode_all(data)
    segment, back = protocol.parse_audio(item.payload)
    assert segment == 7
    assert back.tobytes() == samples.tobytes()
    with pytest.raises(ProtocolError):
        protocol.parse_audio(b"\x00\x00\x00\x01\x00\x00")  # half a sample


def test_requests_round_trip_with_markup_speaker_and_prompt() -> None:
    text = "她[h][ào]干净 [laughter] <strong>very</strong> [M][AY0][N][UW1][T] <|en|>end."
    segments = tuple(split(parse(text), max_chars=20))
    prompt = PromptAudio(
        np.linspace(-1, 1, 48_000, dtype=np.float32), 16_000, "提示文本", "voice_abc"
    )
    speaker = Speaker("sim-male", "Simulated male", "zh", "male", "d", ("onyx", "中文男"))
    request = EngineRequest(
        request_id="r1",
        mode=Mode.ZERO_SHOT,
        segments=segments,
        speaker=speaker,
        instruct="slowly",
        prompt=prompt,
        language="zh",
        speed=1.25,
        pitch=2.0,
        volume=0.5,
        seed=42,
        options={"temperature": 0.7, "nested": {"a": [1, 2]}},
    )
    body = protocol.encode_request(request, text_stream="s1")
    document, samples = protocol.split_request(protocol.decode_all(body))
    assert document["text_stream"] == "s1"
    back = protocol.request_from_wire(document, samples, speakers=[speaker])
    assert back.segments == request.segments  # the nodes, exactly
    assert [s.text for s in back.segments] == [s.text for s in segments]
    assert back.speaker is speaker  # the engine's own object
    assert back.prompt is not None
    assert back.prompt.samples.tobytes() == prompt.samples.tobytes()
    assert (back.prompt.sample_rate, back.prompt.text, back.prompt.voice_id) == (
        16_000,
        "提示文本",
        "voice_abc",
    )
    for name in ("request_id", "mode", "instruct", "language", "speed", "pitch", "volume", "seed"):
        assert getattr(back, name) == getattr(request, name), name
    assert back.options == request.options


def test_a_segment_sent_as_text_alone_is_parsed_on_arrival() -> None:
    segment = protocol.segment_from_wire({"index": 3, "script": "han", "text": "[breath]你好"})
    (expected,) = split(parse("[breath]你好"))
    assert segment.nodes == expected.nodes
    assert segment.index == 3


def test_capabilities_round_trip_every_field() -> None:
    caps = Capabilities(
        modes=frozenset({Mode.SFT, Mode.INSTRUCT}),
        languages=frozenset({"zh", "en"}),
        sample_rate=22050,
        streaming=False,
        max_concurrency=3,
        speed_range=(0.5, 2.0),
        pitch=True,
        volume=True,
        markup=frozenset({Feature.PINYIN}),
        text_streaming=True,
        max_segment_chars=77,
        prompt_modes=frozenset({Mode.INSTRUCT}),
    )
    assert protocol.capabilities_from_wire(protocol.capabilities_to_wire(caps)) == caps
    sim = SimulatedEngine().capabilities
    assert protocol.capabilities_from_wire(protocol.capabilities_to_wire(sim)) == sim


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errors.MODE_UNSUPPORTED, RequestError),
        (errors.LANGUAGE_UNSUPPORTED, RequestError),
        (errors.ENGINE_FAILED, EngineError),
        (errors.ENGINE_UNAVAILABLE, EngineUnavailable),
        (errors.UPSTREAM_ERROR, UpstreamError),
        (errors.ENGINE_OVERLOADED, Overloaded),
    ],
)
def test_errors_keep_their_class_and_code(code: str, cls: type[Exception]) -> None:
    original = {"code": code, "message": "m", "hint": "h", "param": "p", "retry_after": 3}
    exc = protocol.error_from_wire(original, "worker x")
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.hint, exc.param, exc.retry_after) == (code, "m", "h", "p", 3)
    assert protocol.error_to_wire(exc) == original


def test_an_unknown_error_code_becomes_upstream_error() -> None:
    exc = protocol.error_from_wire({"code": "gpu_on_fire", "message": "hot"}, "worker x")
    assert exc.code == errors.UPSTREAM_ERROR
    assert "gpu_on_fire" in exc.message
    assert "hot" in exc.message


def test_malformed_requests_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="no REQUEST"):
        protocol.split_request([Frame(FrameType.PROMPT, b"")])
    with pytest.raises(ProtocolError):
        protocol.request_from_wire({"request_id": "x", "mode": "nope", "segments": []}, None)
    with pytest.raises(ProtocolError, match="PROMPT"):
        protocol.request_from_wire(
            {"request_id": "x", "mode": "sft", "segments": [], "prompt": {"sample_rate": 16000}},
            None,
        )
    with pytest.raises(ProtocolError, match="unknown node"):
        protocol.node_from_wire({"t": "smell"})
