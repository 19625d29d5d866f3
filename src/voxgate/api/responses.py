"""Audio over HTTP: whole files, chunked streams and server-sent events.

Three rules from DESIGN.md meet here:

* A response starts only once the first audio exists. Until then any failure
  (overload, engine error) is answered with a proper status and error code;
  this costs nothing, as headers without audio are of no use to a player.
* A client that disconnects cancels the synthesis at once: the stream watches
  for ``http.disconnect`` instead of waiting for the next write to fail.
* A stream that fails midway must be detectable. Audio streams end without
  the terminating chunk (clients see a truncated chunked body); SSE streams
  send an ``error`` event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from voxgate.api.errors import error_payload
from voxgate.asgi import DisconnectWatch
from voxgate.errors import INTERNAL_ERROR, VoxgateError
from voxgate.pipeline import Synthesis

log = logging.getLogger("voxgate.api")

_STREAM_HEADERS = [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")]


class _Stream(Response):
    """Sends a prepared first chunk, then the rest, watching for disconnect."""

    def __init__(
        self,
        first: bytes,
        rest: AsyncIterator[bytes],
        *,
        media_type: str,
        headers: list[tuple[str, str]],
        on_close: Callable[[str, str | None], None],
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self._first = first
        self._rest = rest
        self._on_close = on_close
        self.raw_headers = [(b"content-type", media_type.encode("latin-1"))]
        self.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = "disconnected"
        error: str | None = None
        request_id = scope.get("state", {}).get("request_id")
        watch = DisconnectWatch(receive)
        try:
            # Head and first audio go out at once, in this task, before the
            # watch starts (see DisconnectWatch for why).
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if self._first:
                await send({"type": "http.response.body", "body": self._first, "more_body": True})
            watch.start()
            async for chunk in self._rest:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watch.finish()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            outcome = "completed"
        except asyncio.CancelledError:
            if not watch.claim_cancellation():
                raise  # the server is shutting down, not the client leaving
        except OSError:
            outcome = "disconnected"
        except VoxgateError as exc:
            outcome, error = "failed", exc.code
            log.warning(
                "stream failed midway: %s: %s",
                exc.code,
                exc.message,
                extra={"request_id": request_id},
            )
        except Exception:
            outcome, error = "failed", INTERNAL_ERROR
            log.exception("stream failed midway", extra={"request_id": request_id})
        finally:
            watch.stop()
            await self._rest.aclose()  # type: ignore[attr-defined]
            self._on_close(outcome, error)
        # On "failed" we return without the final empty body: the server then
        # closes the connection, and the client sees a truncated chunked body.


async def _first_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return b""
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _record(
    request_state: dict[str, Any], synthesis: Synthesis
) -> Callable[[str, str | None], None]:
    def done(outcome: str, error: str | None) -> None:
        usage = synthesis.usage
        fields = request_state.setdefault("log", {})
        if error:
            fields["error"] = error
        # hit | miss | shared when the result cache served it (serving/results.py)
        cache = getattr(synthesis, "cache_status", None)
        if cache:
            fields["cache"] = cache
        fields.update(
            outcome=outcome,
            audio_s=round(usage.audio_seconds, 3),
            ttfa_ms=_ms(usage.first_audio_s),
            queue_ms=_ms(usage.queued_s),
            engine_ttfc_ms=_ms(usage.engine_ttfc_s),
            total_ms=_ms(usage.total_s),
        )

    return done


def describe(state: dict[str, Any], synthesis: Synthesis) -> None:
    """Facts about the synthesis for the request's log line; the usage itself
    goes to metrics and tracing when the request ends (api/middleware.py)."""
    state.setdefault("log", {}).update(
        engine=synthesis.engine.name,
        voice=synthesis.voice.label,
        characters=synthesis.usage.characters,
        format=synthesis.format.value,
        priority=synthesis.usage.priority.name.lower(),
    )
    state["usage"] = synthesis.usage


async def whole(synthesis: Synthesis, state: dict[str, Any]) -> Response:
    describe(state, synthesis)
    try:
        unchanged = await synthesis.not_modified()  # If-None-Match: the client has it
        if unchanged is not None:
            _record(state, synthesis)("not_modified", None)
            return Response(status_code=304, headers=dict(unchanged))
        data = await synthesis.read_all()
    finally:
        await synthesis.aclose()
    _record(state, synthesis)("completed", None)
    return Response(
        content=data,
        media_type=synthesis.media_type,
        # the result cache says when a whole file may be kept (serving/results.py)
        headers={"Cache-Control": "no-store"} | dict(synthesis.headers()),
    )


async def audio_stream(synthesis: Synthesis, state: dict[str, Any]) -> Response:
    describe(state, synthesis)
    chunks = synthesis.stream()
    try:
        first = await _first_chunk(chunks)
    except BaseException:
        await synthesis.aclose()
        raise
    return _Stream(
        first,
        chunks,
        media_type=synthesis.media_type,
        headers=synthesis.headers() + _STREAM_HEADERS,
        on_close=_record(state, synthesis),
    )


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def openai_usage(synthesis: Synthesis) -> dict[str, int]:
    """OpenAI's usage block. voxgate counts characters as input tokens and one
    output token per 20 ms of audio (documented in docs/api.md)."""
    usage = synthesis.usage
    out_tokens = round(usage.audio_seconds * 50)
    return {
        "input_tokens": usage.characters,
        "output_tokens": out_tokens,
        "total_tokens": usage.characters + out_tokens,
    }


async def sse_stream(
    synthesis: Synthesis,
    state: dict[str, Any],
    done_extra: Callable[[Synthesis], dict[str, Any]] | None = None,
) -> Response:
    """``speech.audio.delta`` events with base64 audio, then ``speech.audio.done``."""
    describe(state, synthesis)
    audio = synthesis.stream()
    try:
        first_audio = await _first_chunk(audio)  # failures so far get an HTTP status
    except BaseException:
        await synthesis.aclose()
        raise

    def delta(chunk: bytes) -> bytes:
        return _sse({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})

    failure: list[str] = []  # the SSE response itself ends cleanly; remember why

    async def events() -> AsyncIterator[bytes]:
        try:
            if first_audio:
                yield delta(first_audio)
            async for chunk in audio:
                yield delta(chunk)
        except VoxgateError as exc:
            failure.append(exc.code)
            log.warning(
                "SSE stream failed midway: %s: %s",
                exc.code,
                exc.message,
                extra={"request_id": state.get("request_id")},
            )
            yield _sse(
                {"type": "error", **error_payload(exc.code, exc.message, exc.hint, exc.param)}
            )
            return
        except Exception:
            failure.append(INTERNAL_ERROR)
            log.exception("SSE stream failed midway", extra={"request_id": state.get("request_id")})
            yield _sse(
                {"type": "error", **error_payload(INTERNAL_ERROR, "synthesis failed midway")}
            )
            return
        finally:
            await audio.aclose()
        done: dict[str, Any] = {"type": "speech.audio.done", "usage": openai_usage(synthesis)}
        if done_extra is not None:
            done.update(done_extra(synthesis))
        yield _sse(done)

    record = _record(state, synthesis)

    def on_close(outcome: str, error: str | None) -> None:
        if failure:
            record("failed", failure[0])
        else:
            record(outcome, error)

    return _Stream(
        b"",
        events(),
        media_type="text/event-stream",
        headers=synthesis.headers() + _STREAM_HEADERS,
        on_close=on_close,
    )
