"""Liveness and readiness, for load balancers and Kubernetes probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, RedirectResponse

from voxgate.api import deps
from voxgate.engines.registry import EngineRegistry

router = APIRouter(tags=["Health"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    """A person opening the server in a browser lands on the API docs."""
    return RedirectResponse("/docs")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "An engine is not ready."}})
async def readyz(registry: EngineRegistry = Depends(deps.registry)) -> Any:
    """Every configured engine is loaded and accepting work.

    Remote engines are ready once started: a remote server that is down does
    not make voxgate unready (it still answers, with a clean 503 and a code);
    its last health probe is shown under ``remote_health``."""
    engines = {e.name: e.ready for e in registry}
    ready = all(engines.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "engines": engines}
    remote = {e.name: e.healthy for e in registry if e.healthy is not None}
    if remote:
        body["remote_health"] = remote
    return JSONResponse(body, status_code=200 if ready else 503)
