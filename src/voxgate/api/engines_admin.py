"""The engine admin API: register, list, drain, resume and remove engines
while the gateway serves. Thin (DESIGN rule 1): the work is
:class:`~voxgate.serving.engine_control.EngineControl`'s.

Every route needs an administrator (``deps.admin``), like the rest of
``/v1/admin``: registering an engine makes the gateway open connections to,
and send callers' text and voices to, whatever server it names.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxgate import errors
from voxgate.api import deps
from voxgate.api.errors import error_responses
from voxgate.config import EngineConfig
from voxgate.engines.base import Engine
from voxgate.errors import RequestError
from voxgate.serving.engine_control import EngineControl, redact
from voxgate.serving.router import EngineGroup

router = APIRouter(
    tags=["Engine administration"],
    dependencies=[Depends(deps.admin)],
    responses=error_responses(400, 401, 403, 404),
)

EngineName = Path(min_length=1, max_length=64, description="The engine's name.")
EndpointId = Query(
    None, min_length=1, max_length=64, description="Only this endpoint (its id, or <name>#<id>)."
)


async def control(request: Request) -> EngineControl:
    found: EngineControl = request.app.state.engines
    return found


class EngineCreate(BaseModel):
    """An engine as in ``VOXGATE_ENGINES``, plus its name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="What callers put in model or engine; letters, digits, . _ -",
    )
    kind: str = Field(min_length=1, max_length=64, description="An engine kind (docs/engines.md).")
    options: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=64,
        description="Interchangeable instances: option overrides each, optionally with an id.",
    )
    queue_size: int | None = Field(None, ge=0)
    queue_timeout_s: float | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)

    def config(self) -> EngineConfig:
        try:
            return EngineConfig(**self.model_dump(exclude={"name"}))
        except ValidationError as exc:  # an endpoint that is not an object, say
            raise RequestError(
                f"invalid engine configuration: {exc.errors()[0]['msg']}",
                code=errors.INVALID_REQUEST,
                hint="See docs/api.md, Engine administration.",
            ) from None


def engine_object(
    ctl: EngineControl, engine: Engine, endpoints: list[dict[str, Any]]
) -> dict[str, Any]:
    config = ctl.config_of(engine.name)
    return {
        "object": "engine",
        "name": engine.name,
        "kind": engine.kind,
        "source": ctl.source(engine.name),
        "ready": engine.ready,
        "draining": ctl.registry.draining(engine.name),
        "removing": ctl.retiring(engine.name),
        "in_flight": ctl.in_flight(engine.name),
        "capacity": engine.capabilities.max_concurrency,
        "options": redact(config.options) if config is not None else {},
        "endpoints": endpoints,
    }


async def describe(ctl: EngineControl, engine: Engine) -> dict[str, Any]:
    if isinstance(engine, EngineGroup):
        endpoints = await engine.endpoint_details()
    else:
        endpoints = []
    return engine_object(ctl, engine, endpoints)


def _find(ctl: EngineControl, name: str) -> Engine:
    engine = ctl.registry.find(name)
    if engine is None:
        raise RequestError(
            f"no engine named {name!r}",
            code=errors.ENGINE_NOT_FOUND,
            hint="GET /v1/admin/engines lists them.",
        )
    return engine


@router.post(
    "/v1/admin/engines",
    status_code=201,
    responses=error_responses(400, 409, 503),
    summary="Register an engine",
)
async def create_engine(body: EngineCreate, ctl: EngineControl = Depends(control)) -> Any:
    """Builds and starts the engine, stores it, and serves it on every gateway
    sharing the database (within ``VOXGATE_ENGINE_SYNC_S`` with Redis). A name
    already in use is 409 ``engine_exists``; an engine that does not start is
    503 ``engine_unavailable`` and nothing is stored."""
    engine = await ctl.register(body.name, body.config())
    return JSONResponse(await describe(ctl, engine), status_code=201)


@router.get("/v1/admin/engines", summary="List engines with endpoint and breaker state")
async def list_engines(ctl: EngineControl = Depends(control)) -> dict[str, Any]:
    """Every engine, configured or registered, with each endpoint's circuit
    breaker, requests in flight and drain state. ``unavailable`` lists stored
    engines this gateway could not start, with the reason."""
    data = [await describe(ctl, engine) for engine in ctl.registry]
    unavailable = [{"name": n, "error": e} for n, e in sorted(ctl.failed().items())]
    return {"object": "list", "data": data, "unavailable": unavailable}


@router.get("/v1/admin/engines/{name}", summary="One engine")
async def get_engine(
    name: str = EngineName, ctl: EngineControl = Depends(control)
) -> dict[str, Any]:
    return await describe(ctl, _find(ctl, name))


@router.post("/v1/admin/engines/{name}/drain", summary="Stop routing new requests")
async def drain_engine(
    name: str = EngineName,
    endpoint: str | None = EndpointId,
    ctl: EngineControl = Depends(control),
) -> dict[str, Any]:
    """New requests for the engine get 503 ``engine_unavailable`` (or, with
    ``endpoint``, go to its other endpoints); requests under way finish.
    ``in_flight`` in the answer says how many are left."""
    await ctl.drain(name, endpoint, draining=True)
    return await describe(ctl, _find(ctl, name))


@router.post("/v1/admin/engines/{name}/resume", summary="Route new requests again")
async def resume_engine(
    name: str = EngineName,
    endpoint: str | None = EndpointId,
    ctl: EngineControl = Depends(control),
) -> dict[str, Any]:
    await ctl.drain(name, endpoint, draining=False)
    return await describe(ctl, _find(ctl, name))


@router.delete(
    "/v1/admin/engines/{name}",
    responses={**error_responses(404, 409), 202: {"description": "Removed once idle."}},
    summary="Drain and remove an engine",
)
async def delete_engine(
    name: str = EngineName,
    wait_s: float = Query(30.0, ge=0, le=600, description="How long to wait for it to be idle."),
    ctl: EngineControl = Depends(control),
) -> JSONResponse:
    """Deletes a registered engine at once (every gateway stops routing to it),
    then removes and closes it once its requests under way have ended: 200
    if that happened within ``wait_s``, else 202 (it goes when idle).
    Configured engines are 409 ``engine_configured``."""
    removed = await ctl.remove(name, wait_s)
    body = {"object": "engine.deleted", "name": name, "deleted": True, "removed": removed}
    return JSONResponse(body, status_code=200 if removed else 202)
