"""What the server offers: voices and engines."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from voxgate import errors
from voxgate.api import deps
from voxgate.api.errors import error_responses
from voxgate.engines.base import Engine
from voxgate.errors import RequestError
from voxgate.pipeline import Pipeline

router = APIRouter(tags=["Catalog"], responses=error_responses(400, 404))


class VoiceInfo(BaseModel):
    id: str
    object: Literal["audio.voice"] = "audio.voice"
    name: str
    type: Literal["builtin", "registered"] = "builtin"
    engine: str
    language: str
    gender: str | None = None
    aliases: list[str]
    description: str = ""
    created_at: int = 0


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None


@router.get("/v1/audio/voices", response_model=VoiceList)
async def list_voices(
    engine: str | None = Query(None, description="Only this engine's voices."),
    language: str | None = Query(None, description="Only voices whose language starts with this."),
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, description="Cursor: the last id of the previous page."),
    pipeline: Pipeline = Depends(deps.pipeline),
) -> VoiceList:
    """Built-in speakers of every engine (registered voices join them later)."""
    engines = [pipeline.registry.get(engine)] if engine else list(pipeline.registry)
    voices = [
        VoiceInfo(
            id=s.id,
            name=s.name,
            engine=e.name,
            language=s.language,
            gender=s.gender,
            aliases=list(s.aliases),
            description=s.description,
        )
        for e in engines
        for s in e.speakers()
        if language is None or s.language.lower().startswith(language.lower())
    ]
    if after is not None:
        ids = [v.id for v in voices]
        if after not in ids:
            raise RequestError(
                f"cursor {after!r} is not a voice id in this listing",
                code=errors.INVALID_REQUEST,
                hint="Pass the last_id of the previous page.",
                param="after",
            )
        voices = voices[ids.index(after) + 1 :]
    page = voices[:limit]
    return VoiceList(
        data=page,
        has_more=len(voices) > limit,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )


def _engine_info(pipeline: Pipeline, engine: Engine) -> dict[str, Any]:
    return {
        "name": engine.name,
        "kind": engine.kind,
        "ready": engine.ready,
        "healthy": engine.healthy,
        "default": engine.name == pipeline.registry.default,
        "capabilities": engine.capabilities.to_dict(),
        "stats": engine.stats.to_dict(),
        "admission": pipeline.admission[engine.name].stats().to_dict(),
        "info": dict(engine.describe()),
    }


@router.get("/v1/engines")
async def list_engines(pipeline: Pipeline = Depends(deps.pipeline)) -> dict[str, Any]:
    """Each engine's capabilities, live load, admission queue and (for remote
    engines) the last health probe of the server behind it."""
    return {"object": "list", "data": [_engine_info(pipeline, e) for e in pipeline.registry]}


@router.get("/v1/engines/{name}")
async def get_engine(
    name: str = Path(min_length=1, max_length=256), pipeline: Pipeline = Depends(deps.pipeline)
) -> dict[str, Any]:
    """One engine by name (or by a model name that points at it)."""
    return _engine_info(pipeline, pipeline.registry.get(name))
