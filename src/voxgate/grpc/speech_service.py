"""``voxgate.v1.Speech``: voxgate's own gRPC API (protos/speech.proto).

Three methods over the one pipeline (DESIGN rule 1: this module translates):

* ``Synthesize``: a ``/v1/tts`` request, the whole file back in one message;
* ``SynthesizeStream``: the same request; ``info``, audio chunks as they are
  synthesized, then ``usage``;
* ``StreamingSynthesize``: a streamed text session
  (:class:`~voxgate.serving.session.TextSession`, as the WebSocket): a
  ``config``, ``text`` pieces, ``done``; audio from the first complete
  sentence on. gRPC's flow control is the backpressure: a write waits for
  the client's window, and the session pulls audio only as it is written.

Callers are treated as on HTTP: the ``authorization`` metadata through the
same Authenticator, the per-minute limits (``RequestLimits.check``) once per
call, the daily quota through the request's principal, and each call in
the Prometheus metrics and the access log with the route
``grpc:/voxgate.v1.Speech/<Method>`` (obs/calls.py).

Failures are statuses (the table in :mod:`voxgate.grpc.common`)
with ``voxgate-error-code``, ``voxgate-request-id`` and, where waiting
helps (RESOURCE_EXHAUSTED, UNAVAILABLE), ``retry-after`` in seconds in the
trailing metadata. A client that cancels, or whose deadline passes, stops
the engine at once and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import grpc

from voxgate import errors
from voxgate.audio.formats import AudioFormat
from voxgate.audio.formats import info as format_info
from voxgate.audio.intake import intake
from voxgate.audio.prompt import PromptAudio
from voxgate.config import Settings
from voxgate.engines.base import Mode
from voxgate.errors import RequestError, VoxgateError
from voxgate.grpc.common import caller, details, peer_host, status_code, trailing_metadata
from voxgate.grpc.protos import speech_pb2
from voxgate.obs.calls import Call
from voxgate.obs.observer import RequestObserver, trace_context
from voxgate.pipeline import Pipeline, Synthesis, SynthesisRequest, Usage
from voxgate.serving.admission import Priority
from voxgate.serving.auth import Authenticator
from voxgate.serving.limits import RequestLimits
from voxgate.serving.principal import Principal
from voxgate.serving.session import TextSession, idle_error, stop_task

_IDLE_HINT = "Send done when the text is complete"
log = logging.getLogger("voxgate.grpc")

SERVICE_NAME = "voxgate.v1.Speech"

_FORMATS = {
    speech_pb2.AUDIO_FORMAT_WAV: AudioFormat.WAV,
    speech_pb2.AUDIO_FORMAT_MP3: AudioFormat.MP3,
    speech_pb2.AUDIO_FORMAT_OPUS: AudioFormat.OPUS,
    speech_pb2.AUDIO_FORMAT_AAC: AudioFormat.AAC,
    speech_pb2.AUDIO_FORMAT_FLAC: AudioFormat.FLAC,
    speech_pb2.AUDIO_FORMAT_PCM: AudioFormat.PCM,
}
_FORMAT_VALUES = {fmt: value for value, fmt in _FORMATS.items()}
_SESSION_FORMATS = (AudioFormat.PCM, AudioFormat.OPUS)
_MODES = {
    speech_pb2.MODE_SFT: Mode.SFT,
    speech_pb2.MODE_ZERO_SHOT: Mode.ZERO_SHOT,
    speech_pb2.MODE_CROSS_LINGUAL: Mode.CROSS_LINGUAL,
    speech_pb2.MODE_INSTRUCT: Mode.INSTRUCT,
}
_PRIORITIES = {
    speech_pb2.PRIORITY_REALTIME: Priority.REALTIME,
    speech_pb2.PRIORITY_BATCH: Priority.BATCH,
}


def _enum(value: int, table: Mapping[Any, Any], default: Any, code: str, param: str) -> Any:
    if value == 0:
        return default
    if value not in table:
        raise RequestError(f"unknown {param} {value}", code=code, param=param)
    return table[value]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def audio_info(
    *,
    request_id: str,
    fmt: AudioFormat,
    sample_rate: int,
    engine: str,
    voice: str,
    warnings: Iterable[str] = (),
) -> speech_pb2.AudioInfo:
    """The ``info`` message of every method: the media type is the format's, as on HTTP."""
    return speech_pb2.AudioInfo(
        request_id=request_id,
        format=_FORMAT_VALUES[fmt],
        media_type=format_info(fmt).media_type,
        sample_rate=sample_rate,
        channels=1,
        engine=engine,
        voice=voice,
        warnings=list(warnings),
    )


def synthesis_info(synthesis: Synthesis) -> speech_pb2.AudioInfo:
    return audio_info(
        request_id=synthesis.request_id,
        fmt=synthesis.format,
        sample_rate=synthesis.sample_rate,
        engine=synthesis.engine.name,
        voice=synthesis.voice.label,
        warnings=[n.header() for n in synthesis.notices],
    )


def _request_fields(
    msg: speech_pb2.SynthesizeRequest | speech_pb2.SessionConfig,
    fmt: AudioFormat,
    who: Principal,
    request_id: str,
) -> dict[str, Any]:
    """The SynthesisRequest fields a SynthesizeRequest and a SessionConfig share."""
    return {
        "voice": msg.voice or None,
        "engine": msg.engine or msg.model or None,
        "mode": _enum(msg.mode, _MODES, None, errors.MODE_UNSUPPORTED, "mode"),
        "instruct": msg.instruct or None,
        "language": msg.language or None,
        "speed": msg.speed if msg.HasField("speed") else 1.0,
        "format": fmt,
        "sample_rate": msg.sample_rate if msg.HasField("sample_rate") else None,
        "priority": _enum(
            msg.priority, _PRIORITIES, Priority.REALTIME, errors.INVALID_REQUEST, "priority"
        ),
        "request_id": request_id,
        "tenant": who.tenant,
        "principal": who,
    }


def usage_message(usage: Usage) -> speech_pb2.Usage:
    return speech_pb2.Usage(
        characters=usage.characters,
        audio_seconds=round(usage.audio_seconds, 3),
        first_audio_ms=_ms(usage.first_audio_s),
        total_ms=_ms(usage.total_s) or 0.0,
        queue_ms=_ms(usage.queued_s) or 0.0,
    )


class _Rpc:
    """One call: who made it, its report, and how it fails."""

    def __init__(self, service: SpeechService, context: grpc.aio.ServicerContext, method: str):
        self.context = context
        self.service = service
        self.request_id = uuid.uuid4().hex
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.metadata = metadata
        self.call = Call(
            service.observers,
            route=f"grpc:/{SERVICE_NAME}/{method}",
            method="POST",
            request_id=self.request_id,
            trace_context=trace_context(metadata),
        )
        self.call.fields.update(surface="grpc", outcome="cancelled")
        self.status = 499  # the client went away (or its deadline passed) first

    async def caller(self) -> Principal:
        """Authentication, then the per-minute limits, as HTTP's middleware does."""
        self.call.fields["client"] = peer_host(self.context.peer() or "")
        # limits after the log fields are set, so a refused caller is named
        who = await caller(self.context, self.service.authenticator, limits=None)
        self.call.fields.update(tenant=who.tenant, auth=who.method)
        if who.key_id:
            self.call.fields["key_id"] = who.key_id
        if self.service.limits is not None:
            await self.service.limits.check(who)
        return who

    async def fail(self, error: VoxgateError) -> None:
        """End the call with the status for ``error`` (raises grpc's abort)."""
        self.status = error.status
        self.call.fields.update(outcome="failed", error=error.code, error_message=error.message)
        trailing = trailing_metadata(error, self.request_id)
        await self.context.abort(status_code(error), details(error), trailing)

    async def unexpected(self) -> None:
        log.exception("grpc call failed", extra={"request_id": self.request_id})
        await self.fail(
            VoxgateError(
                "unexpected server error",
                hint=f"Report it with request id {self.request_id}; the server log has details.",
            )
        )

    def completed(self) -> None:
        self.status = 200
        self.call.fields["outcome"] = "completed"

    def finish(self, usage: Usage | None, engine: str | None = None) -> None:
        if engine:
            self.call.fields["engine"] = engine
        if usage is not None:
            self.call.fields.update(
                characters=usage.characters,
                audio_s=round(usage.audio_seconds, 3),
                ttfa_ms=_ms(usage.first_audio_s),
            )
        self.call.finish(self.status, usage)


class SpeechService:
    """The ``voxgate.v1.Speech`` servicer (``speech_pb2_grpc.add_SpeechServicer_to_server``)."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        authenticator: Authenticator | None = None,
        limits: RequestLimits | None = None,
        observers: tuple[RequestObserver, ...] = (),
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.authenticator = authenticator  # None: authentication is off
        self.limits = limits
        self.observers = observers

    # -- one request, whole or streamed -----------------------------------------------

    async def Synthesize(  # noqa: N802 (the wire name)
        self, request: speech_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> speech_pb2.SynthesizeResponse:
        rpc = _Rpc(self, context, "Synthesize")
        synthesis: Synthesis | None = None
        try:
            req = await self._request(request, await rpc.caller(), rpc.request_id)
            synthesis = await self.pipeline.prepare(req)
            data = await synthesis.read_all()
            rpc.completed()
            return speech_pb2.SynthesizeResponse(
                info=synthesis_info(synthesis), audio=data, usage=usage_message(synthesis.usage)
            )
        except VoxgateError as exc:
            await rpc.fail(exc)
        except Exception:
            await rpc.unexpected()
        finally:
            await self._done(rpc, synthesis)
        raise AssertionError("unreachable: fail() aborts")  # pragma: no cover

    async def SynthesizeStream(  # noqa: N802
        self, request: speech_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # A coroutine that writes, not an async generator: a cancellation
        # (client gone) lands in this frame and closes the synthesis at once.
        rpc = _Rpc(self, context, "SynthesizeStream")
        synthesis: Synthesis | None = None
        try:
            req = await self._request(request, await rpc.caller(), rpc.request_id)
            synthesis = await self.pipeline.prepare(req)
            Event = speech_pb2.SynthesizeStreamResponse  # noqa: N806
            async with contextlib.aclosing(synthesis.stream()) as chunks:
                first = await anext(chunks, b"")  # failures so far: a clean status, no info
                await context.write(Event(info=synthesis_info(synthesis)))
                if first:
                    await context.write(Event(audio=first))
                async for data in chunks:
                    await context.write(Event(audio=data))
            await context.write(Event(usage=usage_message(synthesis.usage)))
            rpc.completed()
        except VoxgateError as exc:
            await rpc.fail(exc)
        except Exception:
            await rpc.unexpected()
        finally:
            await self._done(rpc, synthesis)

    async def _request(
        self, msg: speech_pb2.SynthesizeRequest, who: Principal, request_id: str
    ) -> SynthesisRequest:
        fmt = _enum(msg.format, _FORMATS, AudioFormat.WAV, errors.FORMAT_UNSUPPORTED, "format")
        fields = _request_fields(msg, fmt, who, request_id)
        req = SynthesisRequest(
            text=msg.text,
            pitch=msg.pitch if msg.HasField("pitch") else 0.0,
            volume=msg.volume if msg.HasField("volume") else 1.0,
            seed=msg.seed,
            prompt=await self._prompt(msg.reference_audio, msg.reference_text),
            **fields,
        )
        if not req.text.strip():
            raise RequestError(
                "text is empty", code=errors.TEXT_EMPTY, hint="Set text.", param="text"
            )
        return req

    async def _prompt(self, audio: bytes, text: str) -> PromptAudio | None:
        """A voice prompt sent with the request, through the same intake as /v1/tts's."""
        if not audio:
            return None
        settings = self.settings
        taken = await asyncio.to_thread(
            intake,
            audio,
            min_seconds=settings.voice_min_seconds,
            max_seconds=settings.voice_max_seconds,
            param="reference_audio",
        )
        return replace(taken.prompt, text=text.strip() or None)

    @staticmethod
    async def _done(rpc: _Rpc, synthesis: Synthesis | None) -> None:
        if synthesis is None:
            rpc.finish(None)
            return
        await synthesis.aclose()  # frees the slot if it never ran
        rpc.finish(synthesis.usage, synthesis.engine.name)

    # -- text streamed in -----------------------------------------------------------------

    async def StreamingSynthesize(  # noqa: N802
        self, request_iterator: Any, context: grpc.aio.ServicerContext
    ) -> None:
        rpc = _Rpc(self, context, "StreamingSynthesize")
        session: TextSession | None = None
        try:
            who = await rpc.caller()
            config = await self._first(context)
            session = TextSession(
                self.pipeline,
                self._template(config, who, rpc.request_id),
                max_chars=self.settings.ws_max_text_chars,
            )
            await session.open()
            writer = asyncio.create_task(self._write(session, context))
            try:
                await self._read(session, context, writer)
            finally:
                await stop_task(writer)
            rpc.completed()
        except VoxgateError as exc:
            await rpc.fail(exc)
        except Exception:
            await rpc.unexpected()
        finally:
            if session is None:
                rpc.finish(None)
            else:
                await session.aclose()
                rpc.finish(session.usage(), session.engine.name if session.engine else None)

    async def _first(self, context: grpc.aio.ServicerContext) -> speech_pb2.SessionConfig:
        limit = self.settings.ws_idle_timeout_s
        try:
            async with asyncio.timeout(limit):
                message = await context.read()
        except TimeoutError:
            raise idle_error(limit, _IDLE_HINT) from None
        if message is grpc.aio.EOF or message.WhichOneof("event") != "config":
            raise RequestError(
                "the first message must carry config",
                code=errors.UNEXPECTED_MESSAGE,
                hint="Send a StreamingSynthesizeRequest with config first.",
            )
        config: speech_pb2.SessionConfig = message.config
        return config

    def _template(
        self, config: speech_pb2.SessionConfig, who: Principal, request_id: str
    ) -> SynthesisRequest:
        fmt = _enum(config.format, _FORMATS, AudioFormat.PCM, errors.FORMAT_UNSUPPORTED, "format")
        if fmt not in _SESSION_FORMATS:
            raise RequestError(
                f"a session cannot stream {fmt.value}",
                code=errors.FORMAT_UNSUPPORTED,
                hint="Use AUDIO_FORMAT_PCM or AUDIO_FORMAT_OPUS.",
                param="format",
            )
        return SynthesisRequest(text="", **_request_fields(config, fmt, who, request_id))

    async def _read(
        self, session: TextSession, context: grpc.aio.ServicerContext, writer: asyncio.Task[None]
    ) -> None:
        """Client messages until the audio is complete (a half-close is ``done``)."""
        limit = self.settings.ws_idle_timeout_s
        reading: asyncio.Task[Any] | None = None
        try:
            while True:
                if reading is None and not session.finished:
                    reading = asyncio.create_task(context.read())
                waiting: set[asyncio.Task[Any]] = {writer} if reading is None else {reading, writer}
                done, _ = await asyncio.wait(
                    waiting,
                    timeout=max(0.01, limit - session.idle_s()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if writer in done:
                    writer.result()
                    return
                if reading is not None and reading in done:
                    message, reading = reading.result(), None
                    await self._handle(session, message)
                elif session.idle_s() >= limit:
                    raise idle_error(limit, _IDLE_HINT)
        finally:
            if reading is not None:
                await stop_task(reading)

    @staticmethod
    async def _handle(session: TextSession, message: Any) -> None:
        if message is grpc.aio.EOF:
            if not session.finished:
                session.finish()
            return
        kind = message.WhichOneof("event")
        if kind == "text":
            await session.feed(message.text)
        elif kind == "done" and not session.finished:
            session.finish()
        else:
            what = "done was already sent" if kind == "done" else f"{kind} after the first message"
            raise RequestError(
                what,
                code=errors.UNEXPECTED_MESSAGE,
                hint="Send config once, then text pieces, then done.",
            )

    @staticmethod
    async def _write(session: TextSession, context: grpc.aio.ServicerContext) -> None:
        assert session.engine is not None
        assert session.voice is not None
        Event = speech_pb2.StreamingSynthesizeResponse  # noqa: N806
        started = False
        async with contextlib.aclosing(session.audio()) as chunks:
            async for data in chunks:
                if not started:
                    started = True
                    first = audio_info(
                        request_id=session.request_id,
                        fmt=session.format,
                        sample_rate=session.sample_rate,
                        engine=session.engine.name,
                        voice=session.voice.label,
                    )
                    await context.write(Event(info=first))
                await context.write(Event(audio=data))
                session.touch()
        summary = session.summary()
        timings = summary["timings"]
        await context.write(
            Event(
                usage=speech_pb2.Usage(
                    characters=summary["usage"]["characters"],
                    audio_seconds=summary["usage"]["audio_seconds"],
                    first_audio_ms=timings["first_audio_ms"],
                    total_ms=timings["total_ms"],
                    last_text_to_first_audio_ms=timings["last_text_to_first_audio_ms"],
                )
            )
        )
