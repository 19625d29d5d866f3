"""create_app(): the one place that wires the parts together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from voxgate import __version__
from voxgate.api import admin, catalog, engines_admin, health, web
from voxgate.api import errors as api_errors
from voxgate.api import keys as key_routes
from voxgate.api import metrics as metrics_routes
from voxgate.api.auth import Authentication
from voxgate.api.cosyvoice import routes as cosyvoice_routes
from voxgate.api.jobs import routes as job_routes
from voxgate.api.limits import RateLimits
from voxgate.api.middleware import RequestContext
from voxgate.api.native import routes as native_routes
from voxgate.api.openai import routes as openai_routes
from voxgate.api.stream import routes as stream_routes
from voxgate.api.voices import routes as voice_routes
from voxgate.asr.base import build_transcriber
from voxgate.config import Settings, load_settings
from voxgate.engines.registry import EngineRegistry
from voxgate.heap import freeze_startup_heap
from voxgate.jobs.setup import build_jobs
from voxgate.obs.metrics import Metrics
from voxgate.obs.observer import RequestObserver
from voxgate.obs.tracing import build_tracing
from voxgate.pipeline import Pipeline
from voxgate.serving.auth import (
    Authenticator,
    StartupRefused,
    auth_enabled,
    describe,
    startup_problem,
)
from voxgate.serving.breaker import breaker_factory
from voxgate.serving.engine_control import EngineControl
from voxgate.serving.keys import KeyStore
from voxgate.serving.limits import RatePolicy, build_request_limits
from voxgate.serving.quota import build_quota
from voxgate.serving.redis import RedisConnection
from voxgate.serving.results import build_results
from voxgate.store.blobs import LocalBlobStore
from voxgate.store.db import Database
from voxgate.voices.features import BlobFeatureStore
from voxgate.voices.library import VoiceLibrary

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
    redis = None
    if settings.redis_url:
        redis = RedisConnection(settings.redis_url, settings.redis_prefix)
    registry = EngineRegistry.from_settings(settings, breaker_factory(settings, redis))
    db = Database(settings.db_url)
    blobs = LocalBlobStore(settings.blob_path)
    features = BlobFeatureStore(blobs)
    for engine in registry:
        engine.features = features
    results = build_results(settings, redis)  # result cache + single flight; None: off
    transcriber = build_transcriber(settings.asr)
    library = VoiceLibrary(db, blobs, settings, registry, transcriber, cache=results)
    pipeline = Pipeline(registry, settings, library, redis)
    pipeline.results = results
    engines = EngineControl(pipeline, db, settings, redis, features)  # registered at run time
    tracing = build_tracing(settings.otel_endpoint)
    pipeline.quota = build_quota(redis, settings.quota_characters_per_day)
    limits = build_request_limits(
        redis, RatePolicy(settings.rate_limit_rpm, settings.rate_limit_anonymous_rpm)
    )
    keys = KeyStore(db, touch_interval_s=settings.api_key_touch_s)
    jobs = build_jobs(settings, pipeline, db, blobs)
    authenticator = Authenticator(settings, keys) if auth_enabled(settings) else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.migrate()
        problem = await startup_problem(settings, authenticator)
        if problem:
            log.error("refusing to start: %s", problem)
            raise StartupRefused(problem)
        log.info("%s", describe(settings))
        await registry.start()
        await engines.start()
        if results is not None:
            await results.start()
        await library.start()
        if jobs is not None:
            await jobs.start()
        grpc_server = None
        if settings.grpc_port is not None:
            from voxgate.grpc.server import GrpcServer

            grpc_server = GrpcServer(
                pipeline, settings, authenticator, limits=limits, observers=tuple(observers)
            )
            await grpc_server.start()
        if settings.gc_freeze:
            freeze_startup_heap()
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
            if jobs is not None:
                await jobs.close()
            await library.close()
            if results is not None:
                await results.close()
            await engines.close()
            await registry.close()
            for admission in pipeline.admission.values():
                await admission.close()
            pipeline.close()
            await keys.close()
            await db.close()
            if redis is not None:
                await redis.close()
            if tracing is not None:
                tracing.shutdown()

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
    app.state.jobs = jobs.service if jobs is not None else None
    app.state.library = library
    app.state.redis = redis
    app.state.cache = results  # stats() for metrics; None when the cache is off
    app.state.engines = engines
    app.state.limits = limits  # per-minute limits (the quota is pipeline.quota)
    app.state.metrics = Metrics(pipeline, app.state) if settings.metrics_enabled else None
    observers: list[RequestObserver] = [o for o in (app.state.metrics, tracing) if o is not None]
    app.state.observers = observers  # WebSocket sessions and gRPC calls report there too
    if jobs is not None:
        jobs.runner.observers = tuple(observers)  # job segments too
    app.state.keys = keys
    app.state.authenticator = authenticator  # None: authentication is off
    api_errors.install(app)
    # Starlette runs the last-added middleware outermost. Order, outside in:
    # RequestContext, then authentication (it sets the principal), then limits.
    app.add_middleware(RateLimits, limits=limits)
    app.add_middleware(
        Authentication, authenticator=authenticator, open_metrics=not settings.auth_metrics
    )
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        observers=observers,
        max_job_bytes=settings.max_job_body_bytes,
    )
    if settings.playground:  # before health: its / (a redirect to /docs) is the fallback
        app.include_router(web.router)
    app.include_router(health.router)
    app.include_router(openai_routes.router)
    app.include_router(stream_routes.router)
    app.include_router(native_routes.router)
    app.include_router(voice_routes.router)
    app.include_router(job_routes.router)
    app.include_router(cosyvoice_routes.router)
    app.include_router(catalog.router)
    app.include_router(admin.router)
    app.include_router(engines_admin.router)
    if settings.metrics_enabled:
        app.include_router(metrics_routes.router)
    app.include_router(key_routes.admin_router)
    app.include_router(key_routes.router)
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
