"""Text-in, audio-out WebSocket sessions (``/v1/audio/speech/stream``).

A session speaks text that arrives a piece at a time (an LLM's tokens): send
``input.text`` messages as the text comes, ``input.done`` at the end, and read
audio frames while sending. The wire protocol:

client -> server  ``{"type": "session.config", "format": "pcm"|"opus", "voice"?, ...}``,
                  then ``{"type": "input.text", "text"}``..., then ``{"type": "input.done"}``
                  (or ``{"type": "cancel"}`` at any time)
server -> client  ``session.ready`` (request id), ``audio.start`` (format, rate, ...),
                  binary audio frames, then ``audio.done`` (usage, timings) and close
                  1000; or ``error`` (code, message, hint) and close; or ``cancelled``.

:class:`Session` (threads) and :class:`AsyncSession` (asyncio) share the
message handling below. Opening a session (connect, send the config, wait for
``session.ready``) is retried like any request; nothing after that is, since
the text sent so far would be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from voxgate.client._core import USER_AGENT, RetryPolicy, log, parse_retry_after
from voxgate.client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    IncompleteStreamError,
    VoxgateError,
    error_class,
    from_body,
    status_of_code,
)
from voxgate.client.types import AudioStart, Timings, Usage

__all__ = ["AsyncSession", "Session"]

_MAX_FRAME = 16 * 1024 * 1024
# The server bounds one client message (VOXGATE_WS_MAX_MESSAGE_BYTES, 64 KiB by
# default); longer text is sent in pieces that fit even at 6 bytes a character.
_TEXT_PIECE_CHARS = 8000
# websockets >= 17.1 warns unless a directly used connection says so
_SYNC_LEGACY = "legacy" in inspect.signature(sync_connect).parameters


@dataclass(frozen=True)
class SessionSettings:
    url: str
    headers: Mapping[str, str]
    policy: RetryPolicy
    open_timeout: float


class _Protocol:
    """What a session knows, updated from the server's JSON messages."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.request_id: str | None = None
        self.audio: AudioStart | None = None
        self.usage: Usage | None = None
        self.timings: Timings | None = None
        self.cancelled = False
        self.cancel_sent = False
        self.finished = False
        self.bytes_received = 0

    def handle(self, raw: str) -> Literal["ready", "end", "more"]:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            return "more"  # not ours to judge; the protocol has only JSON text frames
        if not isinstance(message, dict):
            return "more"
        kind = message.get("type")
        if kind == "session.ready":
            self.request_id = message.get("request_id") or self.request_id
            return "ready"
        if kind == "audio.start":
            self.audio = AudioStart.from_json(message)
        elif kind == "audio.done":
            self.usage = Usage.from_json(message.get("usage"))
            self.timings = Timings.from_json(message.get("timings"))
            self.finished = True
            return "end"
        elif kind == "cancelled":
            self.cancelled = True
            self.finished = True
            return "end"
        elif kind == "error":
            self.finished = True
            raise self.error(message)
        return "more"

    def receive(self, message: str | bytes) -> bytes | None:
        """A message read after ``session.ready``: the audio frame to hand to
        the caller, or ``None`` (a JSON message, now handled, or audio that
        arrived after a cancel, dropped). ``finished`` says when to stop
        reading; an ``error`` message raises its typed error."""
        if isinstance(message, bytes):
            if self.cancel_sent:
                return None
            self.bytes_received += len(message)
            return message
        self.handle(message)
        return None

    def error(self, message: Mapping[str, Any]) -> APIStatusError:
        inner = message.get("error") if isinstance(message.get("error"), Mapping) else message
        code = inner.get("code") if isinstance(inner, Mapping) else None
        return from_body(
            status_of_code(code if isinstance(code, str) else None),
            {"error": inner},
            request_id=self.request_id,
            retry_after=parse_retry_after(str(inner.get("retry_after") or ""))
            if isinstance(inner, Mapping)
            else None,
            fallback_message="the session failed",
        )

    def closed(self, exc: ConnectionClosed) -> VoxgateError:
        """The error for a connection that closed before the session ended."""
        frame = exc.rcvd
        if frame is not None and 4000 <= frame.code < 5000:
            # voxgate closes refused sessions with 4000 + HTTP status, the
            # reason being the error code (4401 auth_required, 4403 forbidden).
            status = frame.code - 4000
            code = frame.reason or None
            return error_class(status, code)(
                f"the server closed the session: {frame.reason or frame.code}",
                status=status,
                code=code,
                request_id=self.request_id,
            )
        detail = f"code {frame.code} {frame.reason}".strip() if frame else "no close frame"
        cls = IncompleteStreamError if self.bytes_received else APIConnectionError
        return cls(
            f"the session closed before it ended ({detail}) after "
            f"{self.bytes_received} bytes of audio",
            request_id=self.request_id,
        )

    @staticmethod
    def texts(text: str) -> list[str]:
        return [
            json.dumps(
                {"type": "input.text", "text": text[i : i + _TEXT_PIECE_CHARS]}, ensure_ascii=False
            )
            for i in range(0, len(text), _TEXT_PIECE_CHARS)
        ]

    DONE = json.dumps({"type": "input.done"})
    CANCEL = json.dumps({"type": "cancel"})


def _handshake_error(exc: BaseException) -> VoxgateError:
    if isinstance(exc, InvalidStatus):
        response = exc.response
        body: Any = None
        raw = response.body or b""
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = raw[:500].decode(errors="replace")
        return from_body(
            response.status_code,
            body,
            request_id=response.headers.get("x-request-id"),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            fallback_message=f"the WebSocket handshake was refused: HTTP {response.status_code}",
        )
    if isinstance(exc, TimeoutError):
        return APITimeoutError("the WebSocket handshake timed out")
    return APIConnectionError(f"could not open the WebSocket session: {exc!r}")


def _retry_delay(policy: RetryPolicy, attempt: int, error: VoxgateError) -> float | None:
    """The wait before opening the session again after ``error`` (``None``:
    raise it); a retry is logged here so that both sessions report it alike."""
    if isinstance(error, APIStatusError):
        if error.status not in (429, 502, 503, 504):
            return None
    elif not isinstance(error, APIConnectionError):
        return None
    delay = policy.delay(attempt, error.retry_after)
    if delay is not None:
        log.info(
            "retrying the WebSocket session in %.2f s (retry %d): %s",
            delay,
            attempt + 1,
            error,
            extra={"retry_delay": delay, "retry_after": error.retry_after},
        )
    return delay


class _Base:
    def __init__(self, settings: SessionSettings, config: Mapping[str, Any]) -> None:
        self._settings = settings
        self._p = _Protocol(config)

    @property
    def request_id(self) -> str | None:
        """From ``session.ready``: the id to quote when reporting a problem."""
        return self._p.request_id

    @property
    def audio(self) -> AudioStart | None:
        """From ``audio.start``: format, sample rate, channels, engine and voice
        of the binary frames (``None`` before the first audio)."""
        return self._p.audio

    @property
    def usage(self) -> Usage | None:
        """From ``audio.done``: characters spoken and seconds of audio."""
        return self._p.usage

    @property
    def timings(self) -> Timings | None:
        """From ``audio.done``: first_audio_ms, total_ms, last_text_to_first_audio_ms."""
        return self._p.timings

    @property
    def cancelled(self) -> bool:
        """The server confirmed a cancel."""
        return self._p.cancelled

    @property
    def finished(self) -> bool:
        return self._p.finished

    @property
    def bytes_received(self) -> int:
        return self._p.bytes_received

    def _ws_kwargs(self) -> dict[str, Any]:
        return {
            "additional_headers": dict(self._settings.headers),
            "user_agent_header": USER_AGENT,
            "open_timeout": self._settings.open_timeout,
            "max_size": _MAX_FRAME,
        }


class Session(_Base):
    """A WebSocket speech session for threaded code.

    Sending and receiving are independent: ``send_text``, ``done`` and
    ``cancel`` may be called from any thread (they are serialized), while one
    thread iterates over the audio. Three ways to use it:

    * send everything, then read: ``send_text(...)``, ``done()``, ``for chunk in session``
      (audio frames wait in a buffer while you send);
    * ``feed(tokens)`` sends an iterable from a background thread (then
      ``done()``), while this thread plays the audio as it arrives;
    * your own thread calls ``send_text`` while another iterates.
    """

    def __init__(self, settings: SessionSettings, config: Mapping[str, Any]) -> None:
        super().__init__(settings, config)
        self._ws: SyncConnection | None = None
        self._send_lock = threading.Lock()
        self._feeder: threading.Thread | None = None
        self._feed_error: BaseException | None = None

    # -- opening --------------------------------------------------------------------------

    def open(self) -> Session:
        """Connect, send the config, wait for ``session.ready`` (retried on
        connection failures and 429/503 refusals, honouring Retry-After)."""
        if self._ws is not None:
            return self
        attempt = 0
        while True:
            try:
                self._ws = self._connect_once()
                return self
            except VoxgateError as error:
                delay = _retry_delay(self._settings.policy, attempt, error)
                if delay is None:
                    raise
                time.sleep(delay)
                attempt += 1

    def _connect_once(self) -> SyncConnection:
        try:
            kwargs = self._ws_kwargs()
            if _SYNC_LEGACY:
                kwargs["legacy"] = True
            ws: SyncConnection = sync_connect(self._settings.url, **kwargs)
        except (InvalidHandshake, InvalidURI, OSError, TimeoutError) as exc:
            raise _handshake_error(exc) from exc
        try:
            ws.send(json.dumps(self._p.config, ensure_ascii=False))
            while True:
                message = ws.recv(timeout=self._settings.open_timeout)
                if isinstance(message, str) and self._p.handle(message) == "ready":
                    return ws
        except ConnectionClosed as exc:
            ws.close()
            raise self._p.closed(exc) from exc
        except TimeoutError as exc:
            ws.close()
            raise APITimeoutError("no session.ready from the server in time") from exc
        except BaseException:
            ws.close()
            raise

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not self._p.finished:
            with contextlib.suppress(Exception):
                self.cancel()
        self.close()

    # -- sending --------------------------------------------------------------------------

    def _send(self, message: str) -> None:
        ws = self.open()._ws
        assert ws is not None
        try:
            with self._send_lock:
                ws.send(message)
        except ConnectionClosed as exc:
            raise APIConnectionError(
                "the session is closed (iterate it to read why)", request_id=self.request_id
            ) from exc

    def send_text(self, text: str) -> None:
        """Queue more text to speak (any size: a token, a sentence)."""
        for message in _Protocol.texts(text):
            self._send(message)

    def done(self) -> None:
        """No more text: the server speaks what is left, then ``audio.done``."""
        self._send(_Protocol.DONE)

    def cancel(self) -> None:
        """Stop now. Audio that arrives afterwards is dropped; iteration ends at
        the server's ``cancelled``."""
        if self._p.cancel_sent:
            return
        self._p.cancel_sent = True
        if self._ws is not None and not self._p.finished:
            self._send(_Protocol.CANCEL)

    def feed(self, texts: Iterable[str], *, done: bool = True) -> threading.Thread:
        """Send ``texts`` from a background thread (then ``done()``), so that
        this thread can read audio meanwhile. If ``texts`` raises, the session
        is cancelled and the error is raised by the iteration."""
        self.open()

        def run() -> None:
            try:
                for text in texts:
                    self.send_text(text)
                if done:
                    self.done()
            except BaseException as exc:  # surfaced by the reader
                self._feed_error = exc
                with contextlib.suppress(Exception):
                    self.cancel()

        self._feeder = threading.Thread(target=run, name="voxgate-session-feed", daemon=True)
        self._feeder.start()
        return self._feeder

    # -- receiving ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_audio()

    def iter_audio(self) -> Iterator[bytes]:
        """Audio frames as they arrive, until ``audio.done`` (or ``cancelled``).
        Raises the session's error event as a typed error."""
        ws = self.open()._ws
        assert ws is not None
        try:
            while not self._p.finished:
                try:
                    message = ws.recv()
                except ConnectionClosed as exc:
                    raise self._p.closed(exc) from exc
                audio = self._p.receive(message)
                if audio is not None:
                    yield audio
        finally:
            if self._p.usage is not None:
                self._join_feeder()  # it sent input.done: it is finishing
            if self._p.finished:
                self.close()
        if self._feed_error is not None and not isinstance(self._feed_error, VoxgateError):
            raise self._feed_error

    def read(self) -> bytes:
        """All the audio (after you sent the text and ``done()``)."""
        return b"".join(self.iter_audio())

    def _join_feeder(self) -> None:
        if self._feeder is not None and self._feeder is not threading.current_thread():
            self._feeder.join(timeout=5)

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()


class AsyncSession(_Base):
    """A WebSocket speech session for asyncio; see :class:`Session`.

    ``send_text`` may be awaited from one task while another iterates (``async
    for chunk in session``), or ``feed(llm_stream)`` does the sending in a task.
    """

    def __init__(self, settings: SessionSettings, config: Mapping[str, Any]) -> None:
        super().__init__(settings, config)
        self._ws: AsyncConnection | None = None
        self._send_lock = asyncio.Lock()
        self._feeder: asyncio.Task[None] | None = None
        self._feed_error: BaseException | None = None

    async def open(self) -> AsyncSession:
        """Connect, send the config, wait for ``session.ready`` (retried on
        connection failures and 429/503 refusals, honouring Retry-After)."""
        if self._ws is not None:
            return self
        attempt = 0
        while True:
            try:
                self._ws = await self._connect_once()
                return self
            except VoxgateError as error:
                delay = _retry_delay(self._settings.policy, attempt, error)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                attempt += 1

    async def _connect_once(self) -> AsyncConnection:
        try:
            ws: AsyncConnection = await async_connect(self._settings.url, **self._ws_kwargs())
        except (InvalidHandshake, InvalidURI, OSError, TimeoutError) as exc:
            raise _handshake_error(exc) from exc
        try:
            await ws.send(json.dumps(self._p.config, ensure_ascii=False))
            async with asyncio.timeout(self._settings.open_timeout):
                while True:
                    message = await ws.recv()
                    if isinstance(message, str) and self._p.handle(message) == "ready":
                        return ws
        except ConnectionClosed as exc:
            await ws.close()
            raise self._p.closed(exc) from exc
        except TimeoutError as exc:
            await ws.close()
            raise APITimeoutError("no session.ready from the server in time") from exc
        except BaseException:
            await ws.close()
            raise

    async def __aenter__(self) -> AsyncSession:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not self._p.finished:
            with contextlib.suppress(Exception):
                await self.cancel()
        if self._feeder is not None and not self._feeder.done():
            self._feeder.cancel()
            with contextlib.suppress(BaseException):
                await self._feeder
        await self.close()

    async def _send(self, message: str) -> None:
        ws = (await self.open())._ws
        assert ws is not None
        try:
            async with self._send_lock:
                await ws.send(message)
        except ConnectionClosed as exc:
            raise APIConnectionError(
                "the session is closed (iterate it to read why)", request_id=self.request_id
            ) from exc

    async def send_text(self, text: str) -> None:
        """Queue more text to speak (any size: a token, a sentence)."""
        for message in _Protocol.texts(text):
            await self._send(message)

    async def done(self) -> None:
        """No more text: the server speaks what is left, then ``audio.done``."""
        await self._send(_Protocol.DONE)

    async def cancel(self) -> None:
        """Stop now. Audio that arrives afterwards is dropped; iteration ends at
        the server's ``cancelled``."""
        if self._p.cancel_sent:
            return
        self._p.cancel_sent = True
        if self._ws is not None and not self._p.finished:
            await self._send(_Protocol.CANCEL)

    def feed(
        self, texts: AsyncIterable[str] | Iterable[str], *, done: bool = True
    ) -> asyncio.Task[None]:
        """Send ``texts`` (an async iterable, or a plain one that does not
        block) from a task, then ``done()``. If ``texts`` raises, the session
        is cancelled and the error is raised by the iteration."""

        async def run() -> None:
            try:
                await self.open()
                if isinstance(texts, AsyncIterable):
                    async for text in texts:
                        await self.send_text(text)
                else:
                    for text in texts:
                        await self.send_text(text)
                if done:
                    await self.done()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._feed_error = exc
                with contextlib.suppress(Exception):
                    await self.cancel()

        self._feeder = asyncio.get_running_loop().create_task(run())
        return self._feeder

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_audio()

    async def iter_audio(self) -> AsyncIterator[bytes]:
        """Audio frames as they arrive, until ``audio.done`` (or ``cancelled``)."""
        ws = (await self.open())._ws
        assert ws is not None
        try:
            while not self._p.finished:
                try:
                    message = await ws.recv()
                except ConnectionClosed as exc:
                    raise self._p.closed(exc) from exc
                audio = self._p.receive(message)
                if audio is not None:
                    yield audio
        finally:
            if self._feeder is not None and self._p.finished and not self._feeder.done():
                # after audio.done it has nothing left to send; after an error
                # or a cancel, nothing it sends would be spoken
                self._feeder.cancel()
                with contextlib.suppress(BaseException):
                    await self._feeder
            if self._p.finished:
                await self.close()
        if self._feed_error is not None and not isinstance(self._feed_error, VoxgateError):
            raise self._feed_error

    async def read(self) -> bytes:
        """All the audio (after you sent the text and ``done()``)."""
        return b"".join([chunk async for chunk in self.iter_audio()])

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
