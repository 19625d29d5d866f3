"""The native synthesis route."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from voxgate import errors
from voxgate.api import deps, responses
from voxgate.api.forms import JsonOrForm, multipart_variant
from voxgate.api.native.protocol import TTSRequest
from voxgate.api.openai.routes import AUDIO_RESPONSES
from voxgate.audio.intake import intake
from voxgate.audio.prompt import PromptAudio
from voxgate.config import Settings
from voxgate.errors import RequestError
from voxgate.pipeline import Pipeline, Synthesis, SynthesisRequest

router = APIRouter(tags=["Native"], route_class=JsonOrForm)


def _done_extra(synthesis: Synthesis) -> dict[str, Any]:
    usage = synthesis.usage
    return {
        "audio_seconds": round(usage.audio_seconds, 3),
        "sample_rate": synthesis.sample_rate,
        "format": synthesis.format.value,
        "first_audio_ms": None
        if usage.first_audio_s is None
        else round(usage.first_audio_s * 1000, 1),
    }


async def inline_prompt(body: TTSRequest, settings: Settings) -> PromptAudio | None:
    """A prompt sent with the request: base64 (JSON) or a file (multipart),
    through the same intake as a registered voice."""
    if not body.reference_audio:
        return None
    try:
        data = base64.b64decode(body.reference_audio, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            "reference_audio is not base64",
            code=errors.PROMPT_INVALID,
            hint="Send the audio file base64-encoded, or as a multipart/form-data file field.",
            param="reference_audio",
        ) from None
    taken = await asyncio.to_thread(
        intake,
        data,
        min_seconds=settings.voice_min_seconds,
        max_seconds=settings.voice_max_seconds,
        param="reference_audio",
    )
    text = (body.reference_text or "").strip() or None
    return replace(taken.prompt, text=text)


@router.post(
    "/v1/tts",
    responses=AUDIO_RESPONSES,
    response_class=Response,
    openapi_extra=multipart_variant(
        "TTSRequest", {"reference_audio": "A voice prompt file for this request (3-15 s)."}
    ),
)
async def tts(
    body: TTSRequest,
    request: Request,
    pipeline: Pipeline = Depends(deps.pipeline),
    settings: Settings = Depends(deps.settings),
) -> Response:
    """Synthesize with CosyVoice's modes. Whole file by default; ``stream`` for
    chunked audio (raw PCM streams carry X-Sample-Rate and X-Channels). Takes
    JSON, or the same fields as multipart/form-data with ``reference_audio``
    as a file."""
    req = SynthesisRequest(
        text=body.text,
        voice=body.speaker_id or body.voice,
        engine=body.engine,
        mode=body.mode,
        instruct=body.instruct,
        language=body.language,
        speed=body.speed,
        pitch=body.pitch,
        volume=body.volume,
        format=body.format,
        sample_rate=body.sample_rate,
        seed=body.seed,
        prompt=await inline_prompt(body, settings),
        request_id=deps.request_id(request),
        tenant=deps.tenant(request),
        principal=deps.principal(request),
        priority=deps.priority(request, body.priority),
        cache=deps.cache_policy(request),
    )
    synthesis = await pipeline.prepare(req)
    state = deps.request_state(request)
    if not body.stream:
        return await responses.whole(synthesis, state)
    if body.stream_format == "sse":
        return await responses.sse_stream(synthesis, state, done_extra=_done_extra)
    return await responses.audio_stream(synthesis, state)
