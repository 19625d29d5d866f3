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
``retry-after`` in seconds where waiting helps), by the table in
``grpc/common.py`` (shared with ``voxgate.v1.Speech``).

With authentication on, a call carries the same credential as an HTTP
request, in the ``authorization`` metadata (``Bearer vg_...`` or a JWT); the
tenant it proves decides which registered voices the call may use. The
health service stays open for probes.

A failure after audio was sent ends the stream with that status after the
messages already delivered, so a client never mistakes a cut stream for a
complete one. A client that cancels (or whose deadline passes) cancels the
synthesis: the engine stops and its admission slot is freed at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Sequence

import grpc

from voxgate import errors
from voxgate.api.cosyvoice.protocol import OfficialCall
from voxgate.audio.prompt import prompt_from_bytes
from voxgate.config import Settings
from voxgate.errors import RequestError, VoxgateError
from voxgate.grpc.common import caller, details, status_code, trailing_metadata
from voxgate.grpc.protos import cosyvoice_pb2
from voxgate.obs.calls import Call
from voxgate.obs.observer import RequestObserver, trace_context
from voxgate.pipeline import Pipeline, Synthesis
from voxgate.serving.auth import Authenticator
from voxgate.serving.limits import RequestLimits

log = logging.getLogger("voxgate.grpc")

SERVICE_NAME = "cosyvoice.CosyVoice"
PROMPT_RATE = 16000  # prompt_audio is int16 PCM at 16 kHz


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

    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        authenticator: Authenticator | None = None,
        limits: RequestLimits | None = None,
        observers: Sequence[RequestObserver] = (),
    ) -> None:
        self._pipeline = pipeline
        self._engine = settings.cosyvoice_compat_engine
        self._authenticator = authenticator  # None: authentication is off
        self._limits = limits  # the same rate limits as HTTP; None: none
        self._observers = tuple(observers)  # metrics and tracing, as for HTTP

    async def Inference(  # noqa: N802 (the method name is the wire name)
        self, request: cosyvoice_pb2.Request, context: grpc.aio.ServicerContext
    ) -> None:
        # A coroutine that writes, not an async generator: a cancellation
        # (client gone) then lands inside this frame, where it closes the
        # synthesis at once instead of whenever a suspended generator is
        # collected.
        request_id = uuid.uuid4().hex
        which = request.WhichOneof("RequestPayload")
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        report = Call(
            self._observers,
            route=f"grpc:/{SERVICE_NAME}/Inference",
            method="POST",
            request_id=request_id,
            trace_context=trace_context(metadata),
        )
        fields = report.fields
        fields.update(
            surface="grpc",
            mode=which.removesuffix("_request") if which else None,
            outcome="cancelled",
        )
        status = 499  # the client went away (or its deadline passed) first
        synthesis: Synthesis | None = None
        sent = 0
        try:
            who = await caller(context, self._authenticator, self._limits)
            fields.update(tenant=who.tenant, key_id=who.key_id)
            call = official_call(request)
            req = call.to_request(engine=self._engine, request_id=request_id, tenant=who.tenant)
            # the daily character quota counts this caller, as on HTTP
            synthesis = await self._pipeline.prepare(dataclasses.replace(req, principal=who))
            # stream() is an async generator (annotated as an iterator): closing
            # it closes the engine's work too.
            stream = synthesis.stream()
            async with contextlib.aclosing(stream) as chunks:
                async for data in chunks:
                    await context.write(cosyvoice_pb2.Response(tts_audio=data))
                    sent += len(data)
            fields["outcome"] = "completed"
            status = 200
        except VoxgateError as exc:
            self._fail(context, exc, request_id)
            fields.update(outcome="failed", error=exc.code, error_message=exc.message)
            status = exc.status
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
            status = error.status
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
            fields["bytes"] = sent
            report.finish(status, synthesis.usage if synthesis is not None else None)

    @staticmethod
    def _fail(context: grpc.aio.ServicerContext, error: VoxgateError, request_id: str) -> None:
        context.set_code(status_code(error))
        context.set_details(details(error))
        context.set_trailing_metadata(trailing_metadata(error, request_id))
