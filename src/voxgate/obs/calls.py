"""Requests that are not HTTP requests (WebSocket sessions, gRPC calls),
reported like one: an access log line and the same observers (metrics,
tracing) that :class:`~voxgate.api.middleware.RequestContext` tells about
HTTP requests, so dashboards see every surface in one set of series.

The route label says which surface it was: the WebSocket's path, or
``grpc:/voxgate.v1.Speech/Synthesize``; the status is the HTTP status of the
outcome (101 for a WebSocket that ran, 200 for a gRPC call that succeeded,
the error's status otherwise, as it would be on HTTP).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from voxgate.obs.observer import FinishedRequest, RequestObserver, notify

if TYPE_CHECKING:
    from voxgate.pipeline import Usage

log = logging.getLogger("voxgate.access")


class Call:
    """One call, from its start (observers count it in flight) to :meth:`finish`."""

    def __init__(
        self,
        observers: Sequence[RequestObserver],
        *,
        route: str,
        method: str,
        request_id: str,
        trace_context: Mapping[str, str] | None = None,
    ) -> None:
        self.observers = tuple(observers)
        self.route = route
        self.method = method
        self.trace_context = dict(trace_context or {})
        self.started = time.perf_counter()
        self.fields: dict[str, Any] = {"request_id": request_id, "route": route, "method": method}
        self._finished = False
        for observer in self.observers:
            observer.request_started()

    def finish(self, status: int, usage: Usage | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        duration = time.perf_counter() - self.started
        self.fields.update(status=status, duration_ms=round(duration * 1000, 1))
        log.info("request", extra=self.fields)
        finished = FinishedRequest(
            route=self.route,
            method=self.method,
            status=status,
            started=self.started,
            duration_s=duration,
            fields=self.fields,
            trace_context=self.trace_context,
            usage=usage,
        )
        notify(self.observers, finished)
