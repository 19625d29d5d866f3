"""The worker protocol, version 1: wire types and framing.

A *worker* is a process that hosts one engine and serves it to gateways
(``voxgate worker --engine NAME``, or a child the gateway supervises). The
gateway keeps everything that is not the model: text handling, voices,
admission, encoding. What crosses the wire is one :class:`EngineRequest` in
and the engine's float32 chunks out, so a request through a worker gives the
same samples as the engine in-process. This docstring is the specification;
a worker in another language implements exactly this.

Transport
---------
HTTP/1.1 over TCP (``http://host:port``) or a Unix socket
(``unix:/path/to.sock``, used for supervised children). When the worker has a
token (``VOXGATE_WORKER_TOKEN``) every route needs
``Authorization: Bearer <token>``; otherwise 401. JSON is UTF-8.

``GET /worker/v1/info`` -> 200, JSON::

    {"protocol": 1, "worker_id": str, "engine": str, "kind": str, "pid": int,
     "started_at": float (unix s), "capabilities": {see below},
     "speakers": [{"id", "name", "language", "gender", "description",
                   "aliases": [str]}],
     "default_speaker": str | null, "describe": {...}}

``capabilities`` carries every field of
:class:`voxgate.engines.base.Capabilities`: ``modes``, ``languages``,
``sample_rate``, ``streaming``, ``max_concurrency``, ``speed_range``
(``[lo, hi]`` or null), ``pitch``, ``volume``, ``markup``,
``text_streaming``, ``max_segment_chars``, ``prompt_modes``.

``GET /worker/v1/health`` -> JSON ``{"ready", "draining", "in_flight",
"capacity", "served", "failed", "cancelled", "rss_bytes", "pid", "worker_id",
"uptime_s", "healthy"}``; status 200 when ready and not draining, else 503.

``POST /worker/v1/synthesize``: the body is frames (below): one ``REQUEST``,
then one ``PROMPT`` if the request has a voice prompt. A request refused
before it starts (malformed, draining, not ready, refused by the engine's
``check``) is answered with that error's HTTP status and the JSON body
``{"error": {"code", "message", "hint", "param", "retry_after"}}``. Otherwise
the answer is 200 with ``Content-Type: application/x-voxgate-frames`` and a
body of frames: ``EVENT`` frames (notices), ``AUDIO`` frames as the engine
produces them, and exactly one terminal frame, ``END`` or ``ERROR``. A body
that ends without a terminal frame means the worker died: the receiver must
treat it as a failure. Closing the connection cancels the synthesis on the
worker at once.

``POST /worker/v1/text/{stream_id}``: for a request with ``text_stream``,
the text as it arrives: a body of ``TEXT`` frames ending with ``END``
(sent on a second connection, alongside the synthesis; either may arrive
first). 204 when consumed.

``POST /worker/v1/voices/prepare``: frames ``REQUEST`` (JSON
``{"voice_id", "sample_rate", "text"}``) and ``PROMPT``; answers JSON
``{"prepared": bool}``. ``POST /worker/v1/voices/forget``: JSON
``{"voice_id"}``; answers 204.

Frames
------
Every frame is a 5-byte header and a payload::

    +--------+----------------------------+------------------+
    | type   | length (uint32 big-endian) | payload (length) |
    | 1 byte | 4 bytes                    | bytes            |
    +--------+----------------------------+------------------+

A payload is at most 64 MiB. A receiver skips frame types it does not know.

====  =======  =============================================================
type  name     payload
====  =======  =============================================================
0x01  AUDIO    uint32 big-endian segment index, then float32 little-endian
               mono samples at ``capabilities.sample_rate``
0x02  EVENT    JSON object with ``"type"``; ``"notice"`` carries ``"code"``
               and ``"message"``. Unknown event types are ignored.
0x03  ERROR    JSON ``{"code", "message", "hint", "param", "retry_after"}``
               with a voxgate error code (docs/errors.md); terminal
0x04  END      JSON ``{"chunks": int, "samples": int}`` (may be empty);
               terminal in a response, ends the text in a text body
0x10  REQUEST  JSON: the engine request (below)
0x11  PROMPT   float32 little-endian mono samples of the voice prompt
0x12  TEXT     UTF-8 text: the next piece of a streamed text
====  =======  =============================================================

The ``REQUEST`` document::

    {"request_id": str, "mode": "sft" | "zero_shot" | "cross_lingual" | "instruct",
     "segments": [{"index": int, "script": str | null, "text": str,
                   "nodes": [node, ...]}],
     "speaker": speaker | null, "instruct": str | null, "language": str | null,
     "speed": float, "pitch": float, "volume": float, "seed": int,
     "options": {...},
     "prompt": {"sample_rate": int, "samples": int, "text": str | null,
                "voice_id": str | null} | null,
     "text_stream": str | null}

A segment's ``text`` is its markup in CosyVoice syntax; ``nodes`` is the same
already parsed (``{"t": "text", "text"}``, ``{"t": "event", "name"}``,
``{"t": "span", "name", "children": [...]}``, ``{"t": "pinyin", "initial",
"final", "tone", "source"}``, ``{"t": "arpabet", "phones": [...]}``,
``{"t": "control", "token"}``). A worker may re-parse ``text`` instead; the
Python worker uses ``nodes``, which are exact even for text the gateway has
rewritten. ``text_stream`` is the id to post the streamed text to.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np

from voxgate import errors
from voxgate.audio.pcm import Samples
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import Capabilities, EngineRequest, Mode, Speaker
from voxgate.errors import (
    CODES,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    Overloaded,
    RequestError,
    UpstreamError,
    VoxgateError,
)
from voxgate.text.markup import Arpabet, Control, Event, Feature, Node, Pinyin, Span, Text
from voxgate.text.script import Script
from voxgate.text.split import Segment

PROTOCOL_VERSION = 1
PREFIX = "/worker/v1"
MEDIA_TYPE = "application/x-voxgate-frames"
MAX_PAYLOAD = 64 * 1024 * 1024
HEADER = struct.Struct(">BI")
_SEGMENT = struct.Struct(">I")
_F32 = np.dtype("<f4")


class FrameType(IntEnum):
    AUDIO = 0x01
    EVENT = 0x02
    ERROR = 0x03
    END = 0x04
    REQUEST = 0x10
    PROMPT = 0x11
    TEXT = 0x12


class ProtocolError(Exception):
    """Bytes that are not the worker protocol (a bug, or not a worker)."""


class Frame(NamedTuple):
    type: int
    payload: bytes


# -- framing -------------------------------------------------------------------


def frame(kind: FrameType, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: FrameType, document: Mapping[str, Any]) -> bytes:
    return frame(kind, json.dumps(document, ensure_ascii=False, default=str).encode())


def audio_frame(segment: int, samples: Samples) -> bytes:
    data = np.ascontiguousarray(samples, dtype=_F32).tobytes()
    return b"".join((HEADER.pack(FrameType.AUDIO, 4 + len(data)), _SEGMENT.pack(segment), data))


def samples_frame(kind: FrameType, samples: Samples) -> bytes:
    return frame(kind, np.ascontiguousarray(samples, dtype=_F32).tobytes())


def parse_audio(payload: bytes) -> tuple[int, Samples]:
    """An AUDIO payload as (segment index, read-only float32 samples)."""
    if len(payload) < 4 or (len(payload) - 4) % 4:
        raise ProtocolError(f"an AUDIO frame of {len(payload)} bytes is not index + float32s")
    (segment,) = _SEGMENT.unpack_from(payload)
    return segment, np.frombuffer(payload, dtype=_F32, offset=4)


def parse_samples(payload: bytes) -> Samples:
    if len(payload) % 4:
        raise ProtocolError(f"{len(payload)} bytes are not float32 samples")
    return np.frombuffer(payload, dtype=_F32).astype(np.float32)


def parse_json(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload) if payload else {}
    except ValueError as exc:
        raise ProtocolError(f"a frame holds invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError("a JSON frame must hold an object")
    return document


class FrameDecoder:
    """Cuts a byte stream into frames, whatever the sizes of its pieces."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        size = len(buffer)
        while size - offset >= HEADER.size:
            kind, length = HEADER.unpack_from(buffer, offset)
            if length > MAX_PAYLOAD:
                raise ProtocolError(f"frame of {length} bytes exceeds {MAX_PAYLOAD}")
            end = offset + HEADER.size + length
            if end > size:
                break
            frames.append(Frame(kind, bytes(buffer[offset + HEADER.size : end])))
            offset = end
        if offset:
            del buffer[:offset]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (non-zero at the end means truncation)."""
        return len(self._buffer)


def decode_all(data: bytes) -> list[Frame]:
    decoder = FrameDecoder()
    frames = decoder.feed(data)
    if decoder.pending:
        raise ProtocolError(f"{decoder.pending} bytes of a truncated frame at the end")
    return frames


async def read_frames(chunks: AsyncIterator[bytes]) -> AsyncIterator[Frame]:
    decoder = FrameDecoder()
    async for data in chunks:
        for item in decoder.feed(data):
            yield item
    if decoder.pending:
        raise ProtocolError(f"{decoder.pending} bytes of a truncated frame at the end")


# -- markup and segments -------------------------------------------------------


def node_to_wire(node: Node) -> dict[str, Any]:
    if isinstance(node, Text):
        return {"t": "text", "text": node.text}
    if isinstance(node, Event):
        return {"t": "event", "name": node.name}
    if isinstance(node, Span):
        return {
            "t": "span",
            "name": node.name,
            "children": [node_to_wire(c) for c in node.children],
        }
    if isinstance(node, Pinyin):
        return {
            "t": "pinyin",
            "initial": node.initial,
            "final": node.final,
            "tone": node.tone,
            "source": node.source,
        }
    if isinstance(node, Arpabet):
        return {"t": "arpabet", "phones": list(node.phones)}
    return {"t": "control", "token": node.token}


def node_from_wire(doc: Mapping[str, Any]) -> Node:
    kind = doc.get("t")
    try:
        if kind == "text":
            return Text(str(doc["text"]))
        if kind == "event":
            return Event(str(doc["name"]))
        if kind == "span":
            return Span(str(doc["name"]), tuple(node_from_wire(c) for c in doc["children"]))
        if kind == "pinyin":
            return Pinyin(
                str(doc["initial"]), str(doc["final"]), int(doc["tone"]), str(doc["source"])
            )
        if kind == "arpabet":
            return Arpabet(tuple(str(p) for p in doc["phones"]))
        if kind == "control":
            return Control(str(doc["token"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind} node: {exc!r}") from None
    raise ProtocolError(f"unknown node type {kind!r}")


def segment_to_wire(segment: Segment) -> dict[str, Any]:
    return {
        "index": segment.index,
        "script": segment.script.value if segment.script else None,
        "text": segment.text,
        "nodes": [node_to_wire(n) for n in segment.nodes],
    }


def segment_from_wire(doc: Mapping[str, Any]) -> Segment:
    from voxgate.text.markup import parse  # only for workers that send text alone

    try:
        index = int(doc["index"])
        script = Script(doc["script"]) if doc.get("script") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed segment: {exc!r}") from None
    if "nodes" in doc and doc["nodes"] is not None:
        nodes = tuple(node_from_wire(n) for n in doc["nodes"])
    else:
        nodes = parse(str(doc.get("text", "")))
    return Segment(index, nodes, script)


# -- speakers and capabilities -------------------------------------------------


def speaker_to_wire(speaker: Speaker) -> dict[str, Any]:
    return {**dataclasses.asdict(speaker), "aliases": list(speaker.aliases)}


def speaker_from_wire(doc: Mapping[str, Any]) -> Speaker:
    try:
        return Speaker(
            id=str(doc["id"]),
            name=str(doc.get("name") or doc["id"]),
            language=str(doc.get("language") or ""),
            gender=doc.get("gender"),
            description=str(doc.get("description") or ""),
            aliases=tuple(str(a) for a in doc.get("aliases") or ()),
        )
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed speaker: {exc!r}") from None


def capabilities_to_wire(caps: Capabilities) -> dict[str, Any]:
    """Every field (``Capabilities.to_dict`` is for people and leaves some out)."""
    return {
        "modes": sorted(caps.modes),
        "languages": sorted(caps.languages),
        "sample_rate": caps.sample_rate,
        "streaming": caps.streaming,
        "max_concurrency": caps.max_concurrency,
        "speed_range": list(caps.speed_range) if caps.speed_range else None,
        "pitch": caps.pitch,
        "volume": caps.volume,
        "markup": sorted(caps.markup),
        "text_streaming": caps.text_streaming,
        "max_segment_chars": caps.max_segment_chars,
        "prompt_modes": sorted(caps.prompt_modes),
    }


def capabilities_from_wire(doc: Mapping[str, Any]) -> Capabilities:
    try:
        speed = doc.get("speed_range")
        return Capabilities(
            modes=frozenset(Mode(m) for m in doc["modes"]),
            languages=frozenset(str(lang) for lang in doc["languages"]),
            sample_rate=int(doc["sample_rate"]),
            streaming=bool(doc["streaming"]),
            max_concurrency=max(1, int(doc["max_concurrency"])),
            speed_range=(float(speed[0]), float(speed[1])) if speed else None,
            pitch=bool(doc.get("pitch", False)),
            volume=bool(doc.get("volume", False)),
            markup=frozenset(Feature(f) for f in doc.get("markup", ())),
            text_streaming=bool(doc.get("text_streaming", False)),
            max_segment_chars=int(doc.get("max_segment_chars", 200)),
            prompt_modes=frozenset(Mode(m) for m in doc.get("prompt_modes", ())),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed capabilities: {exc!r}") from None


# -- requests ------------------------------------------------------------------


def request_to_wire(
    request: EngineRequest, text_stream: str | None = None
) -> tuple[dict[str, Any], Samples | None]:
    """The REQUEST document and the prompt's samples (None without a prompt)."""
    prompt = request.prompt
    document: dict[str, Any] = {
        "request_id": request.request_id,
        "mode": request.mode.value,
        "segments": [segment_to_wire(s) for s in request.segments],
        "speaker": speaker_to_wire(request.speaker) if request.speaker else None,
        "instruct": request.instruct,
        "language": request.language,
        "speed": request.speed,
        "pitch": request.pitch,
        "volume": request.volume,
        "seed": request.seed,
        "options": dict(request.options),
        "prompt": None
        if prompt is None
        else {
            "sample_rate": prompt.sample_rate,
            "samples": len(prompt.samples),
            "text": prompt.text,
            "voice_id": prompt.voice_id,
        },
        "text_stream": text_stream,
    }
    return document, None if prompt is None else prompt.samples


def encode_request(request: EngineRequest, text_stream: str | None = None) -> bytes:
    document, samples = request_to_wire(request, text_stream)
    parts = [json_frame(FrameType.REQUEST, document)]
    if samples is not None:
        parts.append(samples_frame(FrameType.PROMPT, samples))
    return b"".join(parts)


def request_from_wire(
    document: Mapping[str, Any],
    prompt_samples: Samples | None,
    speakers: Sequence[Speaker] = (),
    text_stream: AsyncIterator[str] | None = None,
) -> EngineRequest:
    """An engine request from its wire form. A speaker the engine itself
    offers is passed as the engine's own object (engines may compare them)."""
    try:
        speaker = None
        if document.get("speaker"):
            wire = speaker_from_wire(document["speaker"])
            speaker = next((s for s in speakers if s.id == wire.id), wire)
        prompt = None
        if document.get("prompt"):
            meta = document["prompt"]
            if prompt_samples is None:
                raise ProtocolError("the request names a prompt but no PROMPT frame came")
            prompt = PromptAudio(
                prompt_samples, int(meta["sample_rate"]), meta.get("text"), meta.get("voice_id")
            )
        options = document.get("options") or {}
        if not isinstance(options, dict):
            raise ProtocolError("options must be an object")
        return EngineRequest(
            request_id=str(document["request_id"]),
            mode=Mode(document["mode"]),
            segments=tuple(segment_from_wire(s) for s in document["segments"]),
            speaker=speaker,
            instruct=document.get("instruct"),
            prompt=prompt,
            language=document.get("language"),
            speed=float(document.get("speed", 1.0)),
            pitch=float(document.get("pitch", 0.0)),
            volume=float(document.get("volume", 1.0)),
            seed=int(document.get("seed", 0)),
            options=options,
            text_stream=text_stream,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed request: {exc!r}") from None


def split_request(frames: Iterable[Frame]) -> tuple[dict[str, Any], Samples | None]:
    """The REQUEST document and PROMPT samples out of a request body's frames."""
    document: dict[str, Any] | None = None
    samples: Samples | None = None
    for item in frames:
        if item.type == FrameType.REQUEST:
            document = parse_json(item.payload)
        elif item.type == FrameType.PROMPT:
            samples = parse_samples(item.payload)
    if document is None:
        raise ProtocolError("the body has no REQUEST frame")
    return document, samples


# -- errors --------------------------------------------------------------------


def error_to_wire(exc: VoxgateError) -> dict[str, Any]:
    return {
        "code": exc.code,
        "message": exc.message,
        "hint": exc.hint,
        "param": exc.param,
        "retry_after": exc.retry_after,
    }


_ENGINE_ERRORS: dict[str, type[EngineError]] = {
    errors.ENGINE_UNAVAILABLE: EngineUnavailable,
    errors.CIRCUIT_OPEN: EngineUnavailable,
    errors.ENGINE_TIMEOUT: EngineTimeout,
    errors.UPSTREAM_ERROR: UpstreamError,
    errors.ENGINE_FAILED: EngineError,
}


def error_from_wire(doc: Mapping[str, Any], where: str) -> VoxgateError:
    """The error a worker reported, as the same class and code it had there:
    a 4xx stays the caller's mistake, an engine fault stays an engine fault.
    A code this gateway does not know becomes ``upstream_error``."""
    code = str(doc.get("code") or "")
    message = str(doc.get("message") or "the worker reported an error without a message")
    hint = doc.get("hint")
    param = doc.get("param")
    retry = doc.get("retry_after")
    retry_after = float(retry) if isinstance(retry, int | float) else None
    if code not in CODES:
        return UpstreamError(
            f"{where} reported an unknown error {code or '(none)'!r}: {message}",
            hint=hint,
            retry_after=retry_after,
        )
    kwargs: dict[str, Any] = {"code": code, "hint": hint, "param": param}
    kwargs["retry_after"] = retry_after
    if code in _ENGINE_ERRORS:
        return _ENGINE_ERRORS[code](message, **kwargs)
    if code == errors.ENGINE_OVERLOADED:
        return Overloaded(message, **kwargs)
    if 400 <= CODES[code].status < 500:
        return RequestError(message, **kwargs)
    return VoxgateError(message, **kwargs)
