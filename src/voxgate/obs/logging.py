"""Structured logs: one JSON object per line, so log pipelines need no parsing
rules; plain lines when a person is watching a terminal (``auto``, the default,
picks by whether stderr is a terminal)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of msg
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {
            k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")
        }
        return base + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else "")


class _DropDeliberateTruncation(logging.Filter):
    """A stream that fails midway is ended without its last chunk on purpose
    (so clients detect it); uvicorn reports that as an error. voxgate has
    already logged the cause with the request id, so the line is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in _DELIBERATE


_DELIBERATE = frozenset(
    {
        "ASGI callable returned without completing response.",
        # A WebSocket refused with an HTTP status (api/handshake.py): uvicorn's
        # sans-I/O protocol sends the response, then reports the handshake as
        # never completed although it was answered.
        "ASGI callable returned without completing handshake.",
    }
)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    truncation = _DropDeliberateTruncation()
    logging.getLogger("uvicorn.error").filters[:] = [truncation]
    # voxgate writes its own access line (with request ids and synthesis facts)
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every outgoing request at INFO (remote engines' health probes,
    # callbacks); voxgate logs what matters about them itself
    logging.getLogger("httpx").setLevel(logging.WARNING)
