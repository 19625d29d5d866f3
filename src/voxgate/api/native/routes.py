"""The native synthesis route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from voxgate.api import deps, responses
from voxgate.api.native.protocol import TTSRequest
from voxgate.api.openai.routes import AUDIO_RESPONSES
from voxgate.pipeline import Pipeline, Synthesis, SynthesisRequest

router = APIRouter(tags=["Native"])


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


@router.post("/v1/tts", responses=AUDIO_RESPONSES, response_class=Response)
async def tts(
    body: TTSRequest, request: Request, pipeline: Pipeline = Depends(deps.pipeline)
) -> Response:
    """Synthesize with CosyVoice's modes. Whole file by default; ``stream`` for
    chunked audio (raw PCM streams carry X-Sample-Rate and X-Channels)."""
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
        request_id=deps.request_id(request),
    )
    synthesis = await pipeline.prepare(req)
    state = deps.request_state(request)
    if not body.stream:
        return await responses.whole(synthesis, state)
    if body.stream_format == "sse":
        return await responses.sse_stream(synthesis, state, done_extra=_done_extra)
    return await responses.audio_stream(synthesis, state)
