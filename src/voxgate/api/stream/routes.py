"""``/v1/audio/speech/stream``: a WebSocket that takes text while it is
written (an LLM's tokens) and sends audio as soon as a sentence is complete.

Authentication and rate limits happen before the handshake completes
(api/auth.py, api/limits.py, api/handshake.py); a connection counts as one
request against the rate limits, and its characters against the quota as
they arrive. The session itself is :class:`~voxgate.serving.session.TextSession`;
this module only translates messages, in two tasks:

* this one reads client messages (text, done, cancel) and watches for an
  idle client;
* a writer sends ``audio.start`` and the audio. It sends a frame only once
  the previous one was taken by the transport, and the session pulls audio
  from the engine only as the writer asks for it, so a client that reads
  slowly pauses the engine (bounded memory, DESIGN rule 4).

Every ending is explicit: ``audio.done`` then close 1000; ``cancelled`` then
1000; ``error`` then 1008 (the client's fault) or 1011 (the server's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from voxgate import errors
from voxgate.api import handshake
from voxgate.api.limits import caller
from voxgate.api.stream import protocol
from voxgate.audio.formats import AudioFormat
from voxgate.config import Settings
from voxgate.errors import RequestError, VoxgateError
from voxgate.obs.calls import Call
from voxgate.obs.observer import trace_context
from voxgate.pipeline import Pipeline, SynthesisRequest
from voxgate.serving.session import TextSession, idle_error, stop_task

_IDLE_HINT = "Send input.done when the text is complete"
log = logging.getLogger("voxgate.api")

router = APIRouter(tags=["Streaming"])
PATH = "/v1/audio/speech/stream"
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_ERROR = 1000, 1008, 1011
_LAST_WORDS_S = 5.0  # how long a final error/close may wait for a client that does not read


class _Ended(Exception):
    """The session ended as the client asked (``cancel``)."""


@router.websocket(PATH)
async def speech_stream(websocket: WebSocket) -> None:
    """Text in as it is written, audio out as soon as a sentence is complete
    (docs/api.md, "Streaming text in: WebSocket")."""
    await _Connection(websocket).run()


class _Connection:
    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        state = websocket.app.state
        self.settings: Settings = state.settings
        self.pipeline: Pipeline = state.pipeline
        self.principal = caller(websocket.scope)
        self.request_id = uuid.uuid4().hex
        self.session: TextSession | None = None
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in websocket.scope["headers"]
        }
        self.call = Call(
            getattr(state, "observers", ()),
            route=PATH,
            method="GET",
            request_id=self.request_id,
            trace_context=trace_context(headers),
        )
        self.call.fields.update(
            surface="websocket",
            path=PATH,
            tenant=self.principal.tenant,
            client=self.principal.client,
        )
        self.call.fields.update(websocket.scope.get("state", {}).get("log", {}))  # auth's

    async def run(self) -> None:
        await self.ws.accept(subprotocol=handshake.chosen_subprotocol(self.ws.scope))
        status, outcome = 101, "disconnected"
        try:
            outcome = await self._serve()
        except (WebSocketDisconnect, OSError):
            outcome = "disconnected"
        except VoxgateError as exc:
            status, outcome = exc.status, "failed"
            self.call.fields.update(error=exc.code, error_message=exc.message)
            await self._fail(exc)
        except Exception:
            log.exception("WebSocket session failed", extra={"request_id": self.request_id})
            error = VoxgateError(
                "unexpected server error",
                hint=f"Report it with request id {self.request_id}; the server log has details.",
            )
            status, outcome = error.status, "failed"
            self.call.fields["error"] = error.code
            await self._fail(error)
        finally:
            await self._finish(status, outcome)

    async def _finish(self, status: int, outcome: str) -> None:
        self.call.fields["outcome"] = outcome
        session = self.session
        if session is None:
            self.call.finish(status)
            return
        await session.aclose()
        summary = session.summary()
        self.call.fields.update(
            engine=session.engine.name if session.engine else None,
            voice=session.voice.label if session.voice else None,
            format=session.format.value,
            characters=summary["usage"]["characters"],
            audio_s=summary["usage"]["audio_seconds"],
            ttfa_ms=summary["timings"]["first_audio_ms"],
            last_text_ttfa_ms=summary["timings"]["last_text_to_first_audio_ms"],
        )
        self.call.finish(status, session.usage())

    # -- the session -----------------------------------------------------------------

    async def _serve(self) -> str:
        config = await self._first_config()
        template = SynthesisRequest(
            text="",
            voice=config.voice,
            engine=config.engine or config.model,
            mode=config.mode,
            instruct=config.instruct,
            language=config.language,
            speed=config.speed,
            format=AudioFormat(config.format),
            sample_rate=config.sample_rate,
            request_id=self.request_id,
            tenant=self.principal.tenant,
            principal=self.principal,
        )
        session = TextSession(self.pipeline, template, max_chars=self.settings.ws_max_text_chars)
        self.session = session
        await session.open()
        await self.ws.send_json(protocol.ready(self.request_id))
        writer = asyncio.create_task(self._write(session))
        try:
            return await self._read(session, writer)
        except _Ended:
            return "cancelled"
        finally:
            await stop_task(writer)

    async def _first_config(self) -> protocol.SessionConfig:
        try:
            async with asyncio.timeout(self.settings.ws_idle_timeout_s):
                message = await self._receive()
        except TimeoutError:
            raise idle_error(self.settings.ws_idle_timeout_s, _IDLE_HINT) from None
        if message["type"] != protocol.CONFIG:
            raise protocol.unexpected(
                f"the first message must be {protocol.CONFIG}, not {message['type']!r}",
                'Start with {"type": "session.config", ...}.',
            )
        return protocol.config(message)

    async def _read(self, session: TextSession, writer: asyncio.Task[None]) -> str:
        """Client messages until the audio is complete; raises what ends it otherwise."""
        limit = self.settings.ws_idle_timeout_s
        receiving: asyncio.Task[dict[str, Any]] | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.create_task(self._receive())
                done, _ = await asyncio.wait(
                    {receiving, writer},
                    timeout=max(0.01, limit - session.idle_s()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if writer in done:
                    writer.result()  # the synthesis's failure, if it failed
                    await self.ws.send_json(protocol.audio_done(session.summary()))
                    await self.ws.close(CLOSE_NORMAL)
                    return "completed"
                if receiving in done:
                    message, receiving = receiving.result(), None
                    await self._handle(session, message, writer)
                elif session.idle_s() >= limit:
                    raise idle_error(limit, _IDLE_HINT)
        finally:
            if receiving is not None:
                await stop_task(receiving)

    async def _handle(
        self, session: TextSession, message: dict[str, Any], writer: asyncio.Task[None]
    ) -> None:
        kind = message["type"]
        if kind == protocol.TEXT:
            await session.feed(protocol.text(message))
        elif kind == protocol.DONE:
            if session.finished:
                raise protocol.unexpected("input.done was already sent", "Send it once.")
            session.finish()
        elif kind == protocol.CANCEL:
            await stop_task(writer)  # the engine stops and its slot is free before we answer
            await self.ws.send_json(protocol.CANCELLED)
            await self.ws.close(CLOSE_NORMAL)
            raise _Ended
        elif kind == protocol.CONFIG:
            raise protocol.unexpected(
                "session.config may be sent only once", "Open a new session to change it."
            )
        else:
            raise protocol.unexpected(
                f"unknown message type {kind!r}",
                "Client messages are session.config, input.text, input.done and cancel.",
            )

    async def _receive(self) -> dict[str, Any]:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text, data = message.get("text"), message.get("bytes")
        size = len(text.encode()) if text is not None else len(data or b"")
        limit = self.settings.ws_max_message_bytes
        if size > limit:
            raise RequestError(
                f"message of {size} bytes exceeds {limit}",
                code=errors.REQUEST_TOO_LARGE,
                hint="Send text in smaller pieces, or raise VOXGATE_WS_MAX_MESSAGE_BYTES.",
            )
        if text is None:
            raise protocol.unexpected(
                "binary frames carry audio and are sent only by the server",
                "Send JSON text frames.",
            )
        return protocol.parse(text)

    async def _write(self, session: TextSession) -> None:
        assert session.engine is not None
        assert session.voice is not None
        started = False
        async with contextlib.aclosing(session.audio()) as chunks:
            async for data in chunks:
                if not started:
                    started = True
                    await self.ws.send_json(
                        protocol.audio_start(
                            session.format.value,
                            session.sample_rate,
                            session.engine.name,
                            session.voice.label,
                        )
                    )
                await self.ws.send_bytes(data)
                session.touch()

    async def _fail(self, error: VoxgateError) -> None:
        """Tell the client why, and close; a client that does not read gets
        the close after a few seconds' wait, or nothing."""
        code = CLOSE_POLICY if error.status < 500 else CLOSE_ERROR
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_LAST_WORDS_S):
                await self.ws.send_json(protocol.error(error))
                await self.ws.close(code, error.code)
