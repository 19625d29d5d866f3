"""create_app(): the one place that wires the parts together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from voxgate import __version__
from voxgate.api import admin, catalog, health
from voxgate.api import errors as api_errors
from voxgate.api.cosyvoice import routes as cosyvoice_routes
from voxgate.api.middleware import RequestContext
from voxgate.api.native import routes as native_routes
from voxgate.api.openai import routes as openai_routes
from voxgate.config import Settings, load_settings
from voxgate.engines.registry import EngineRegistry
from voxgate.pipeline import Pipeline

log = logging.getLogger("voxgate")

DESCRIPTION = """\
A serving gateway for CosyVoice-class speech models: OpenAI-compatible
`/v1/audio/speech`, native `/v1/tts` with CosyVoice's modes, every output
format, streamed. Errors are `{"error": {"code", "message", "hint"}}` with
stable codes (docs/errors.md).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = EngineRegistry.from_settings(settings)
    pipeline = Pipeline(registry, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        grpc_server = None
        if settings.grpc_port is not None:
            from voxgate.grpc.server import GrpcServer

            grpc_server = GrpcServer(pipeline, settings)
            await grpc_server.start()
        log.info(
            "voxgate ready: http://%s:%d (engines: %s; API docs at /docs)",
            settings.host,
            settings.port,
            ", ".join(registry.names()),
        )
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            await registry.close()
            pipeline.close()

    app = FastAPI(
        title="voxgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pipeline = pipeline
    api_errors.install(app)
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.include_router(health.router)
    app.include_router(openai_routes.router)
    app.include_router(native_routes.router)
    app.include_router(cosyvoice_routes.router)
    app.include_router(catalog.router)
    app.include_router(admin.router)
    _describe_errors_truthfully(app)
    return app


def _describe_errors_truthfully(app: FastAPI) -> None:
    """FastAPI documents a 422 with its own validation body on every route with
    parameters; voxgate answers validation failures with 400 and its error body
    (docs/errors.md), so those entries would be false."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                response = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(response):
                    del operation["responses"]["422"]
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
