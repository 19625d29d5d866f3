"""CosyVoice's official gRPC service, served by voxgate (drop-in migration).

A client written for upstream's ``runtime/python/grpc/server.py`` points at
voxgate's gRPC port and keeps working: same ``cosyvoice.CosyVoice/Inference``
method, same messages, same answer (``Response`` messages of headerless
little-endian int16 mono PCM at the engine's own rate: 22050 Hz for v1 and
espeak, 24000 Hz for v2/v3). Behind it is the whole pipeline: admission, text
splitting, voices, any engine (``VOXGATE_COSYVOICE_COMPAT_ENGINE``, the
default engine when unset). Like every surface (DESIGN rule 1) this module
only translates: the oneof becomes an
:class:`~voxgate.api.cosyvoice.protocol.OfficialCall` (shared with the
``/inference_*`` HTTP routes) and the pipeline's chunks become messages.

Upstream reports every failure as ``UNKNOWN`` with the Python exception. voxgate
answers a status a client can act on, with details
``"<voxgate code>: <message> (<hint>)"`` and the code again in the trailing
metadata ``voxgate-error-code`` (plus ``voxgate-request-id``, and
``retry-after`` in seconds where waiting helps):

=====================================================  ======================
voxgate error                                          gRPC status
=====================================================  ======================
no request payload set; any other 400/413/415/422      INVALID_ARGUMENT
voice_not_found, model_not_found, not_found            NOT_FOUND
401 / 403                                              UNAUTHENTICATED /
                                                       PERMISSION_DENIED
engine_overloaded (503, queue full), 429               RESOURCE_EXHAUSTED
engine_unavailable (503), upstream_error (502)         UNAVAILABLE
engine_timeout (504)                                   DEADLINE_EXCEEDED
engine_failed, internal_error, any unexpected failure  INTERNAL
=====================================================  ======================

A failure after audio was sent ends the stream with that status after the
messages already delivered, so a client never mistakes a cut stream for a
complete one. A client that cancels (or whose deadline passes) cancels the
synthesis: the engine stops and its admission slot is freed at once.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Any

import grpc

from voxgate import errors
from voxgate.api.cosyvoice.protocol import OfficialCall
from voxgate.audio.prompt import prompt_from_bytes
from voxgate.config import Settings
from voxgate.errors import RequestError, VoxgateError
from voxgate.grpc.protos import cosyvoice_pb2
from voxgate.pipeline import Pipeline, Synthesis

log = logging.getLogger("voxgate.grpc")

SERVICE_NAME = "cosyvoice.CosyVoice"
PROMPT_RATE = 16000  # prompt_audio is int16 PCM at 16 kHz
ERROR_CODE_KEY = "voxgate-error-code"
REQUEST_ID_KEY = "voxgate-request-id"

_BY_CODE: dict[str, grpc.StatusCode] = {
    errors.VOICE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.MODEL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.ENGINE_OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ENGINE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    errors.UPSTREAM_ERROR: grpc.StatusCode.UNAVAILABLE,
    errors.ENGINE_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_BY_STATUS: dict[int, grpc.StatusCode] = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(error: VoxgateError) -> grpc.StatusCode:
    """The gRPC status for a voxgate error (the table in the module docstring)."""
    if error.code in _BY_CODE:
        return _BY_CODE[error.code]
    if error.status in _BY_STATUS:
        return _BY_STATUS[error.status]
    if 400 <= error.status < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def details(error: VoxgateError) -> str:
    text = f"{error.code}: {error.message}"
    return f"{text} ({error.hint})" if error.hint else text


def official_call(request: cosyvoice_pb2.Request) -> OfficialCall:
    """The call a ``Request`` makes, as the HTTP routes make it from a form."""
    which = request.WhichOneof("RequestPayload")
    if which == "sft_request":
        sft = request.sft_request
        return OfficialCall("sft", sft.tts_text, spk_id=sft.spk_id)
    if which == "zero_shot_request":
        zs = request.zero_shot_request
        prompt = prompt_from_bytes(
            zs.prompt_audio, zs.prompt_text, pcm16_rate=PROMPT_RATE, param="prompt_audio"
        )
        return OfficialCall("zero_shot", zs.tts_text, prompt_text=zs.prompt_text, prompt=prompt)
    if which == "cross_lingual_request":
        cl = request.cross_lingual_request
        prompt = prompt_from_bytes(cl.prompt_audio, pcm16_rate=PROMPT_RATE, param="prompt_audio")
        return OfficialCall("cross_lingual", cl.tts_text, prompt=prompt)
    if which == "instruct_request":
        ins = request.instruct_request
        return OfficialCall(
            "instruct", ins.tts_text, spk_id=ins.spk_id, instruct_text=ins.instruct_text
        )
    raise RequestError(
        "the request sets none of sft_request, zero_shot_request, cross_lingual_request, "
        "instruct_request",
        code=errors.MISSING_FIELD,
        hint="Set exactly one of them, as upstream's client.py does.",
        param="RequestPayload",
    )


class CosyVoiceService:
    """The ``cosyvoice.CosyVoice`` servicer (registered with
    ``cosyvoice_pb2_grpc.add_CosyVoiceServicer_to_server``)."""

    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self._pipeline = pipeline
        self._engine = settings.cosyvoice_compat_engine

    async def Inference(  # noqa: N802 (the method name is the wire name)
        self, request: cosyvoice_pb2.Request, context: grpc.aio.ServicerContext
    ) -> None:
        # A coroutine that writes, not an async generator: a cancellation
        # (client gone) then lands inside this frame, where it closes the
        # synthesis at once instead of whenever a suspended generator is
        # collected.
        request_id = uuid.uuid4().hex
        which = request.WhichOneof("RequestPayload")
        fields: dict[str, Any] = {
            "request_id": request_id,
            "surface": "grpc",
            "route": which.removesuffix("_request") if which else None,
            "outcome": "cancelled",
        }
        level = logging.INFO
        started = time.perf_counter()
        synthesis: Synthesis | None = None
        sent = 0
        try:
            call = official_call(request)
            synthesis = await self._pipeline.prepare(
                call.to_request(engine=self._engine, request_id=request_id)
            )
            # stream() is an async generator (annotated as an iterator): closing
            # it closes the engine's work too.
            stream = synthesis.stream()
            async with contextlib.aclosing(stream) as chunks:
                async for data in chunks:
                    await context.write(cosyvoice_pb2.Response(tts_audio=data))
                    sent += len(data)
            fields["outcome"] = "completed"
        except VoxgateError as exc:
            self._fail(context, exc, request_id)
            fields.update(outcome="failed", error=exc.code, error_message=exc.message)
            level = logging.WARNING if exc.status >= 500 else logging.INFO
        except Exception:
            if context.cancelled():  # a write raced with the client leaving
                return
            log.exception("grpc Inference failed", extra={"request_id": request_id})
            error = VoxgateError(
                "unexpected server error",
                hint=f"Report it with request id {request_id}; the server log has details.",
            )
            self._fail(context, error, request_id)
            fields.update(outcome="failed", error=error.code)
            level = logging.ERROR
        finally:
            if synthesis is not None:
                await synthesis.aclose()  # frees the slot if the stream never started
                usage = synthesis.usage
                fields.update(
                    engine=synthesis.engine.name,
                    audio_s=round(usage.audio_seconds, 3),
                    ttfa_ms=None
                    if usage.first_audio_s is None
                    else round(usage.first_audio_s * 1000, 1),
                )
            fields.update(bytes=sent, duration_ms=round((time.perf_counter() - started) * 1000, 1))
            log.log(level, "grpc %s/Inference", SERVICE_NAME, extra=fields)

    @staticmethod
    def _fail(context: grpc.aio.ServicerContext, error: VoxgateError, request_id: str) -> None:
        trailing = [(ERROR_CODE_KEY, error.code), (REQUEST_ID_KEY, request_id)]
        if error.retry_after is not None:
            trailing.append(("retry-after", str(max(1, round(error.retry_after)))))
        context.set_code(status_code(error))
        context.set_details(details(error))
        context.set_trailing_metadata(tuple(trailing))
