"""``GET /metrics`` for Prometheus (mounted when ``VOXGATE_METRICS_ENABLED``).

Left out of the OpenAPI document: it is for the scraper, not for API clients,
and its body is Prometheus' text format, not JSON.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from voxgate.obs.metrics import Metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # On the event loop, not in a thread: the collectors read live component
    # state that only the loop mutates, and a scrape takes about a millisecond.
    source: Metrics = request.app.state.metrics
    body, content_type = source.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
