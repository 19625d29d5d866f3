"""What the server offers: voices and engines."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path

from voxgate.api import deps
from voxgate.api.errors import error_responses
from voxgate.engines.base import Engine
from voxgate.pipeline import Pipeline
from voxgate.serving.router import EngineGroup

router = APIRouter(tags=["Catalog"], responses=error_responses(400, 404))


async def _engine_info(pipeline: Pipeline, engine: Engine) -> dict[str, Any]:
    described = dict(engine.describe())
    admission = pipeline.admission.get(engine.name)  # None: removed at run time just now
    info: dict[str, Any] = {
        "name": engine.name,
        "kind": engine.kind,
        "ready": engine.ready,
        "healthy": engine.healthy,
        "default": engine.name == pipeline.registry.default,
        "draining": pipeline.registry.draining(engine.name),
        "capabilities": engine.capabilities.to_dict(),
        "stats": engine.stats.to_dict(),
        "admission": admission.stats().to_dict() if admission is not None else None,
        "info": described,
    }
    if isinstance(engine, EngineGroup):  # its endpoints, with breakers read now
        described.pop("endpoints", None)
        info["endpoints"] = await engine.endpoint_details()
    return info


@router.get("/v1/engines")
async def list_engines(pipeline: Pipeline = Depends(deps.pipeline)) -> dict[str, Any]:
    """Each engine's capabilities, live load, admission queue and (for remote
    engines) the last health probe of the server behind it; for an engine with
    endpoints, each endpoint's load, health and circuit breaker."""
    return {"object": "list", "data": [await _engine_info(pipeline, e) for e in pipeline.registry]}


@router.get("/v1/engines/{name}")
async def get_engine(
    name: str = Path(min_length=1, max_length=256), pipeline: Pipeline = Depends(deps.pipeline)
) -> dict[str, Any]:
    """One engine by name (or by a model name that points at it)."""
    return await _engine_info(pipeline, pipeline.registry.get(name))
