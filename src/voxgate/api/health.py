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
    """Every engine (but those drained on purpose) is loaded and accepting work.

    Remote engines are ready once started: a remote server that is down does
    not make voxgate unready (it still answers, with a clean 503 and a code);
    its last health probe is shown under ``remote_health``."""
    engines = {e.name: e.ready for e in registry}
    # A drained engine is paused on purpose: no reason to take the gateway
    # out of its load balancer.
    ready = all(ok for name, ok in engines.items() if not registry.draining(name))
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "engines": engines}
    remote = {e.name: e.healthy for e in registry if e.healthy is not None}
    if remote:
        body["remote_health"] = remote
    draining = [e.name for e in registry if registry.draining(e.name)]
    if draining:
        body["draining"] = draining
    # Endpoints and their circuit breakers: an open breaker leaves the gateway
    # ready (it answers circuit_open at once), but an operator wants to see it.
    endpoints: dict[str, dict[str, Any]] = {}
    for status in await registry.endpoint_status():
        if status.breaker is not None:
            endpoints.setdefault(status.engine, {})[status.endpoint] = {
                "ready": status.ready,
                "breaker": status.breaker.state.value,
                "draining": status.draining,
            }
    if endpoints:
        body["endpoints"] = endpoints
    return JSONResponse(body, status_code=200 if ready else 503)
