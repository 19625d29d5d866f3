"""``cosyvoice-grpc``: CosyVoice's official gRPC server as an engine.

The server (upstream ``runtime/python/grpc/server.py``, port 50000) offers one
server-streaming method, ``cosyvoice.CosyVoice/Inference``: a ``Request``
carrying one of ``sft_request``, ``zero_shot_request``,
``cross_lingual_request`` or ``instruct_request``, answered by ``Response``
messages of headerless little-endian int16 mono PCM at the model's rate, one
per model output (one per segment: the server does not stream inside a
segment). Prompts travel as int16 PCM at 16 kHz. Every failure inside the
server reaches the client as status ``UNKNOWN`` with the Python exception as
its details; a server at its ``--max_conc`` limit answers
``RESOURCE_EXHAUSTED``.

    [engines.cosyvoice]
    kind = "cosyvoice-grpc"
    options = { url = "gpu-host:50000", version = 1 }

How the shared remote-engine rules (:mod:`voxgate.engines.remote`) map onto gRPC:

* **one channel per engine**: gRPC multiplexes every call over one HTTP/2
  connection, so the channel is the pool; ``concurrency`` is the number of
  calls voxgate lets through at once (keep it at or below the server's
  ``--max_conc``);
* **connect timeout**: before a call the channel must be READY within
  ``connect_timeout_s``. A channel whose last connection attempt failed
  (TRANSIENT_FAILURE: connection refused, reset) fails the call at once, as a
  refused HTTP connection does, so a server that is down is reported in
  milliseconds, not after a timeout; the channel keeps reconnecting in the
  background (backoff capped at one second), so a restarted server is used
  again within about a second;
* **read timeout**: the longest wait for the next message (the first one
  included), not a deadline on the whole call: a long text streams for as
  long as it needs, a stuck server is given up on after ``read_timeout_s``;
* **status codes**: UNAVAILABLE is "cannot reach the server" (retried),
  DEADLINE_EXCEEDED a timeout (retried), RESOURCE_EXHAUSTED the server's
  concurrency limit (retried, with backoff); INVALID_ARGUMENT, NOT_FOUND and
  the other verdicts on the request itself are not retried; anything else
  (UNKNOWN: an exception in the server) is retried. As for every remote
  engine, retries happen only before the first audio of a segment.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc

from voxgate.audio.pcm import Samples, from_s16le
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.cosyvoice.remote import CosyVoiceRemote
from voxgate.engines.cosyvoice.texts import upstream_texts
from voxgate.engines.remote import PcmReassembler, RemoteFailure
from voxgate.grpc.protos import cosyvoice_pb2, cosyvoice_pb2_grpc
from voxgate.text.split import Segment

PROMPT_RATE = 16000  # the service's prompt_audio is int16 PCM at 16 kHz

# Upstream answers one message per segment; 20 s of 24 kHz int16 is about
# 1 MB, and a long segment can pass gRPC's default 4 MB receive limit.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect soon after a server comes back (gRPC's default backoff grows
    # to two minutes, during which the engine would stay unavailable).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # voxgate retries itself, before the first audio only.
    ("grpc.enable_retries", 0),
]

_REJECTIONS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def grpc_target(url: str) -> str:
    """The channel target for an engine ``url``: ``host:port`` or ``grpc://host:port``
    (gRPC's own ``dns:``, ``ipv4:`` and ``unix:`` targets pass unchanged)."""
    target = url.strip()
    if target.startswith("grpc://"):
        target = target.removeprefix("grpc://").rstrip("/")
    elif "://" in target and not target.startswith(("dns:", "unix:")):
        raise ValueError(
            f"cosyvoice-grpc url {url!r}: use host:port or grpc://host:port "
            "(the official gRPC server speaks plain-text gRPC; for its FastAPI "
            "server use kind cosyvoice-http)"
        )
    if not target:
        raise ValueError(f"cosyvoice-grpc url {url!r}: expected host:port")
    return target


def classify_rpc_error(exc: grpc.aio.AioRpcError) -> RemoteFailure:
    """A failed call as a retry decision (see the module docstring)."""
    code = exc.code()
    message = f"{code.name}: {exc.details() or ''}".rstrip(": ")
    if code is grpc.StatusCode.UNAVAILABLE:
        return RemoteFailure(message, kind="unavailable", retryable=True)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return RemoteFailure(message, kind="timeout", retryable=True)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RemoteFailure(message, kind="protocol", retryable=True)
    if code in _REJECTIONS:
        return RemoteFailure(message, kind="rejected", retryable=False)
    return RemoteFailure(message, kind="protocol", retryable=True)


class CosyVoiceGrpcEngine(CosyVoiceRemote):
    """The official gRPC server as an engine; see the module docstring.

    Modes: sft, zero_shot and cross_lingual for every version; instruct only
    for version 1. The service's ``instruct_request`` carries a speaker id and
    upstream's server passes it to ``inference_instruct``, which only the v1
    -Instruct model has; v2 and v3 instruct (``inference_instruct2``, which
    needs a voice prompt) cannot be reached through this service, so the
    engine does not claim instruct for them (a request for it is answered
    ``mode_unsupported`` before any call; use ``cosyvoice-http``, whose
    ``/inference_instruct2`` route has it).
    """

    kind = "cosyvoice-grpc"
    probe_name = "CosyVoice gRPC server"
    # Upstream's server calls the model without stream=True: one message per
    # segment, so no audio leaves before a segment is synthesized.
    streaming = False

    def __init__(self, name: str = "cosyvoice-grpc", **options: Any) -> None:
        explicit_modes = options.get("modes")
        super().__init__(name, **options)
        self.target = grpc_target(self.options.url)
        if self.profile.version != 1 and Mode.INSTRUCT in self.profile.modes:
            if explicit_modes is not None:
                raise ValueError(
                    f"engine {name!r} (cosyvoice-grpc): mode instruct needs CosyVoice 1 "
                    f"behind the official gRPC server, not version {self.profile.version} "
                    "(its instruct_request has no voice prompt); remove it from modes, "
                    "or use kind cosyvoice-http"
                )
            modes = self.profile.modes - {Mode.INSTRUCT}
            self.profile = dataclasses.replace(self.profile, modes=modes)
            self._capabilities = dataclasses.replace(
                self._capabilities,
                modes=modes,
                prompt_modes=self._capabilities.prompt_modes - {Mode.INSTRUCT},
            )
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    # -- channel -------------------------------------------------------------

    async def _open(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        self._stub = cosyvoice_pb2_grpc.CosyVoiceStub(self._channel)

    async def _aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            raise RuntimeError(f"engine {self.name} is not started")
        return self._channel

    async def _connected(self) -> None:
        """Return once the channel is READY; raise an ``unavailable`` failure
        if it cannot connect, at once if a connection attempt failed."""
        channel = self.channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.connect_timeout_s
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                raise RemoteFailure(
                    f"cannot connect to {self.target} (connection failed)",
                    kind="unavailable",
                    retryable=True,
                )
            if state is grpc.ChannelConnectivity.SHUTDOWN:
                raise RemoteFailure("the channel is closed", kind="unavailable", retryable=False)
            try:
                async with asyncio.timeout_at(deadline):
                    await channel.wait_for_state_change(state)
            except TimeoutError:
                raise RemoteFailure(
                    f"cannot connect to {self.target} in {self.options.connect_timeout_s:g} s",
                    kind="unavailable",
                    retryable=True,
                ) from None
            state = channel.get_state(try_to_connect=True)

    async def _probe(self) -> None:
        # The official server has no health service: a connection that
        # reaches READY (the HTTP/2 handshake with the server) is the probe.
        await self._connected()

    # -- calls ---------------------------------------------------------------

    def message(self, request: EngineRequest, segment: Segment) -> cosyvoice_pb2.Request:
        """The ``Request`` for one segment."""
        texts = upstream_texts(self.profile.version, request, segment)
        speaker = request.speaker.id if request.speaker else ""
        if request.mode == Mode.SFT:
            return cosyvoice_pb2.Request(
                sft_request=cosyvoice_pb2.sftRequest(spk_id=speaker, tts_text=texts.tts_text)
            )
        if request.mode == Mode.INSTRUCT:
            return cosyvoice_pb2.Request(
                instruct_request=cosyvoice_pb2.instructRequest(
                    tts_text=texts.tts_text, spk_id=speaker, instruct_text=texts.instruct_text
                )
            )
        if request.prompt is None:
            raise ValueError(f"mode {request.mode.value} needs a prompt")
        audio = request.prompt.pcm16(PROMPT_RATE)
        if request.mode == Mode.ZERO_SHOT:
            return cosyvoice_pb2.Request(
                zero_shot_request=cosyvoice_pb2.zeroshotRequest(
                    tts_text=texts.tts_text, prompt_text=texts.prompt_text, prompt_audio=audio
                )
            )
        return cosyvoice_pb2.Request(
            cross_lingual_request=cosyvoice_pb2.crosslingualRequest(
                tts_text=texts.tts_text, prompt_audio=audio
            )
        )

    async def _call(self, request: EngineRequest, segment: Segment) -> AsyncIterator[Samples]:
        message = self.message(request, segment)
        await self._connected()
        pcm = PcmReassembler()
        call = self._stub.Inference(message, wait_for_ready=False)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.options.read_timeout_s):
                        response = await call.read()
                except TimeoutError:
                    raise RemoteFailure(
                        f"no message for {self.options.read_timeout_s:g} s",
                        kind="timeout",
                        retryable=True,
                    ) from None
                if response is grpc.aio.EOF:
                    break
                whole = pcm.feed(response.tts_audio)
                if whole:
                    yield from_s16le(whole)
        except grpc.aio.AioRpcError as exc:
            raise classify_rpc_error(exc) from None
        finally:
            # A no-op once the call is over; otherwise (a timeout, a client
            # gone, a failure) it tells the server to stop synthesizing.
            call.cancel()
        if pcm.leftover():
            raise RemoteFailure(
                "the stream ended in the middle of a sample", kind="protocol", retryable=True
            )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "target": self.target}
