"""OpenAI-compatible speech: translate, run the pipeline, translate back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from voxgate.api import deps, responses
from voxgate.api.errors import SYNTHESIS_ERRORS, error_responses
from voxgate.api.openai.protocol import Model, ModelList, SpeechRequest
from voxgate.audio.formats import FORMATS, AudioFormat
from voxgate.config import Settings
from voxgate.engines.registry import EngineRegistry
from voxgate.pipeline import Pipeline, SynthesisRequest

router = APIRouter(tags=["OpenAI"])

AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Audio in the requested format, streamed as it is synthesized.",
        "content": {
            **{
                fi.media_type: {"schema": {"type": "string", "format": "binary"}}
                for fi in FORMATS.values()
            },
            # each event: "data: <JSON>" (speech.audio.delta / .done / error)
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                    "required": ["data"],
                }
            },
        },
    },
    **SYNTHESIS_ERRORS,
}


@router.post("/v1/audio/speech", responses=AUDIO_RESPONSES, response_class=Response)
async def create_speech(
    body: SpeechRequest,
    request: Request,
    pipeline: Pipeline = Depends(deps.pipeline),
    settings: Settings = Depends(deps.settings),
) -> Response:
    """Generate speech. The body streams as audio is synthesized (like OpenAI's)."""
    req = SynthesisRequest(
        text=body.input,
        voice=body.voice_name(),
        engine=body.model,
        instruct=body.instructions,
        language=body.language,
        speed=body.speed,
        format=AudioFormat(body.response_format),
        sample_rate=body.sample_rate or settings.openai_sample_rate,
        request_id=deps.request_id(request),
        tenant=deps.tenant(request),
        principal=deps.principal(request),
        priority=deps.priority(request, body.priority),
        cache=deps.cache_policy(request),
    )
    synthesis = await pipeline.prepare(req)
    state = deps.request_state(request)
    if body.stream_format == "sse":
        return await responses.sse_stream(synthesis, state)
    return await responses.audio_stream(synthesis, state)


def _models(registry: EngineRegistry) -> list[Model]:
    models = [Model(id=e.name, engine=e.name, kind=e.kind) for e in registry]
    for alias, target in sorted(registry.aliases().items()):
        engine = registry.get(target)
        models.append(Model(id=alias, engine=engine.name, kind=engine.kind))
    return models


@router.get("/v1/models", response_model=ModelList)
async def list_models(registry: EngineRegistry = Depends(deps.registry)) -> ModelList:
    """Engines and the model names (tts-1, ...) that point at them."""
    return ModelList(data=_models(registry))


@router.get("/v1/models/{model}", response_model=Model, responses=error_responses(400, 404))
async def get_model(
    model: str = Path(min_length=1, max_length=256),
    registry: EngineRegistry = Depends(deps.registry),
) -> Any:
    engine = registry.get(model)  # raises model_not_found
    return Model(id=model, engine=engine.name, kind=engine.kind)
