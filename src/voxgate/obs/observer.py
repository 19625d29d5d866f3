"""The one point where a finished HTTP request is reported to whoever watches
(metrics, tracing), next to its access log line.

Observing at the end of the request, from what the request already recorded
(its log fields and the synthesis's :class:`~voxgate.pipeline.Usage`), keeps
the hot path free of bookkeeping: nothing is measured per chunk, and a
gateway with no observers pays nothing at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from starlette.types import Scope

    from voxgate.pipeline import Usage

OTHER_ROUTE = "other"


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """What is known about one HTTP request once its response is complete."""

    route: str  # the route template ("/v1/audio/voices/{voice_id}"), or "other"
    method: str
    status: int  # 0 when the client left before a response started
    started: float  # time.perf_counter() when the request arrived
    duration_s: float
    fields: Mapping[str, Any]  # the access log line
    trace_context: Mapping[str, str]  # W3C traceparent, tracestate, baggage (if sent)
    usage: Usage | None  # set when the request ran a synthesis


class RequestObserver(Protocol):
    def request_started(self) -> None: ...

    def request_finished(self, request: FinishedRequest) -> None: ...


def notify(observers: Iterable[RequestObserver], finished: FinishedRequest) -> None:
    """Tell every observer; a failing one costs a log line, never the request
    (whose response is already complete) nor the other observers."""
    for observer in observers:
        try:
            observer.request_finished(finished)
        except Exception:
            logging.getLogger("voxgate.obs").exception("observer %r failed", observer)


# Only these request headers reach observers: never credentials or cookies.
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


def trace_context(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in TRACE_HEADERS if name in headers}


def route_template(scope: Scope) -> str:
    """The matched route's template, so labels and log fields never carry ids
    (bounded cardinality); ``other`` when no route matched."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else OTHER_ROUTE
