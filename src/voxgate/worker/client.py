"""A gateway's connection to one worker (:mod:`voxgate.worker.protocol`).

One pooled HTTP/1.1 client per worker, over TCP or a Unix socket. The client
only translates: it turns a worker's answers into :class:`AudioChunk`\\ s and
into the same :class:`~voxgate.errors.VoxgateError` the engine raised on the
worker (code, message, hint), and anything that went wrong on the way into a
:class:`WorkerFailure`. Which worker to use, and whether to try again, is the
``worker`` engine's decision (:mod:`voxgate.engines.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from voxgate import __version__
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import AudioChunk, Capabilities, EngineRequest, Speaker
from voxgate.engines.remote import FailureKind, RemoteFailure, RemoteOptions, classify_httpx
from voxgate.errors import VoxgateError
from voxgate.worker import protocol
from voxgate.worker.http1 import BrokenResponse, Http1Pool
from voxgate.worker.protocol import FrameDecoder, FrameType, ProtocolError

log = logging.getLogger(__name__)

_P = protocol.PREFIX
# httpx needs a host in URLs even over a Unix socket; the socket decides.
_UDS_BASE = "http://worker"
# Exceptions after which the worker is presumed gone, not merely slow.
_LOST = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class WorkerFailure(RemoteFailure):
    """The worker could not be reached, or its answer broke off.

    ``lost`` says the connection itself failed (refused, reset, cut short):
    the worker is likely dead, and is taken out of routing at once."""

    def __init__(
        self, message: str, *, kind: FailureKind, retryable: bool, lost: bool = False
    ) -> None:
        super().__init__(message, kind=kind, retryable=retryable)
        self.lost = lost

    @classmethod
    def from_httpx(cls, exc: httpx.HTTPError, url: str, retryable: bool = True) -> WorkerFailure:
        failure = classify_httpx(exc)
        return cls(
            f"worker {url}: {failure}",
            kind=failure.kind,
            retryable=retryable and failure.retryable,
            lost=isinstance(exc, _LOST),
        )


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker says it serves (``GET /worker/v1/info``)."""

    worker_id: str
    engine: str
    kind: str
    pid: int
    started_at: float
    capabilities: Capabilities
    speakers: tuple[Speaker, ...]
    default_speaker: str | None
    describe: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> WorkerInfo:
        if doc.get("protocol") != protocol.PROTOCOL_VERSION:
            raise ProtocolError(
                f"the worker speaks protocol {doc.get('protocol')!r}, this gateway "
                f"{protocol.PROTOCOL_VERSION}"
            )
        try:
            return cls(
                worker_id=str(doc["worker_id"]),
                engine=str(doc["engine"]),
                kind=str(doc.get("kind", "")),
                pid=int(doc.get("pid", 0)),
                started_at=float(doc.get("started_at", 0.0)),
                capabilities=protocol.capabilities_from_wire(doc["capabilities"]),
                speakers=tuple(protocol.speaker_from_wire(s) for s in doc.get("speakers", ())),
                default_speaker=doc.get("default_speaker"),
                describe=dict(doc.get("describe") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed info: {exc!r}") from None


def base_url(url: str) -> tuple[str, str | None]:
    """(HTTP base URL, Unix socket path or None) for a worker URL."""
    if url.startswith("unix:"):
        return _UDS_BASE, url.removeprefix("unix:").removeprefix("//")
    return url.rstrip("/"), None


class WorkerClient:
    """The connection pool and the calls of one worker."""

    def __init__(
        self,
        url: str,
        options: RemoteOptions,
        *,
        token: str | None = None,
        connections: int = 64,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.options = options
        self._token = token
        self._tls = tls  # verifies https:// workers (None: the system's trust store)
        self._connections = connections
        self._client: httpx.AsyncClient | None = None
        self._fast: Http1Pool | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            base, uds = base_url(self.url)
            limits = httpx.Limits(
                max_connections=self._connections,
                max_keepalive_connections=self._connections,
            )
            headers = {"User-Agent": f"voxgate/{__version__}"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            transport = httpx.AsyncHTTPTransport(uds=uds, limits=limits) if uds else None
            self._client = httpx.AsyncClient(
                base_url=base,
                headers=headers,
                timeout=self.options.httpx_timeout(),
                limits=limits,
                transport=transport,
                verify=self._tls or True,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._fast is not None:
            await self._fast.aclose()
            self._fast = None

    # -- calls -------------------------------------------------------------------

    async def info(self) -> WorkerInfo:
        return WorkerInfo.from_wire(await self._get_json(f"{_P}/info"))

    async def health(self) -> dict[str, Any]:
        """The health document; raises :class:`WorkerFailure` if unreachable
        (a 503 still returns the document: it says why)."""
        return await self._get_json(f"{_P}/health", accept=(200, 503))

    async def _get_json(self, path: str, accept: Sequence[int] = (200,)) -> dict[str, Any]:
        try:
            response = await self.fast.get(path)
            raw = await response.read()
        except (OSError, TimeoutError, BrokenResponse) as exc:
            raise self._failure(exc, connecting=True, retryable=True) from None
        if response.status not in accept:
            raise self._refusal(response.status, raw, retryable=True)
        try:
            document = json.loads(raw)
        except ValueError:
            raise ProtocolError(f"worker {self.url} answered {path} with non-JSON") from None
        if not isinstance(document, dict):
            raise ProtocolError(f"worker {self.url} answered {path} with a non-object")
        return document

    @property
    def fast(self) -> Http1Pool:
        """The lean client for syntheses (:mod:`voxgate.worker.http1`)."""
        if self._fast is None:
            base, uds = base_url(self.url)
            headers = {"User-Agent": f"voxgate/{__version__}"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._fast = Http1Pool(
                base,
                uds=uds,
                connect_timeout=self.options.connect_timeout_s,
                read_timeout=self.options.read_timeout_s,
                headers=headers,
                max_idle=self._connections,
                tls=self._tls,
            )
        return self._fast

    async def synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        """The engine's chunks as the worker sends them. Raises the worker's
        error as it was raised there, or :class:`WorkerFailure`. Closing the
        iterator closes the connection, which cancels the work on the worker."""
        stream_id = uuid.uuid4().hex if request.text_stream is not None else None
        body = protocol.encode_request(request, stream_id)
        try:
            response = await self.fast.post(f"{_P}/synthesize", body, protocol.MEDIA_TYPE)
        except (OSError, TimeoutError, BrokenResponse) as exc:
            raise self._failure(exc, connecting=True, retryable=True) from None
        texting: asyncio.Task[None] | None = None
        try:
            if response.status != 200:
                raise self._refusal(response.status, await response.read(), True)
            if stream_id is not None and request.text_stream is not None:
                texting = asyncio.create_task(self._send_text(stream_id, request.text_stream))
            async for chunk in self._chunks(response.chunks(), retryable=texting is None):
                yield chunk
        except (OSError, TimeoutError, BrokenResponse) as exc:
            # Text already handed over cannot be sent again: no retry then.
            raise self._failure(exc, connecting=False, retryable=texting is None) from None
        finally:
            response.close()  # nothing if it was read to the end
            if texting is not None:
                texting.cancel()
                with contextlib.suppress(BaseException):
                    await texting

    def _failure(self, exc: BaseException, *, connecting: bool, retryable: bool) -> WorkerFailure:
        if isinstance(exc, TimeoutError):
            return WorkerFailure(
                f"worker {self.url}: no answer in time", kind="timeout", retryable=retryable
            )
        if connecting and not isinstance(exc, BrokenResponse):
            return WorkerFailure(
                f"worker {self.url}: cannot connect: {exc!r}",
                kind="unavailable",
                retryable=retryable,
                lost=True,
            )
        return WorkerFailure(
            f"worker {self.url}: connection broken: {exc!r}",
            kind="protocol",
            retryable=retryable,
            lost=True,
        )

    async def _chunks(
        self, body: AsyncIterator[bytes], retryable: bool
    ) -> AsyncIterator[AudioChunk]:
        decoder = FrameDecoder()
        ended = False
        error: VoxgateError | None = None
        async for data in body:
            # After the terminal frame the body is read to its end all the same:
            # only a fully read response leaves its connection for the next call.
            for item in decoder.feed(data):
                kind = item.type
                if ended:
                    continue
                if kind == FrameType.AUDIO:
                    segment, samples = protocol.parse_audio(item.payload)
                    yield AudioChunk(samples, segment)
                elif kind == FrameType.END:
                    ended = True
                elif kind == FrameType.ERROR:
                    ended = True
                    doc = protocol.parse_json(item.payload)
                    error = protocol.error_from_wire(doc, f"worker {self.url}")
                elif kind == FrameType.EVENT:
                    log.debug("worker %s: %s", self.url, protocol.parse_json(item.payload))
        if error is not None:
            raise error
        if not ended:
            raise WorkerFailure(
                f"worker {self.url} ended its stream without END or ERROR (it died?)",
                kind="protocol",
                retryable=retryable,
                lost=True,
            )

    async def _send_text(self, stream_id: str, text: AsyncIterator[str]) -> None:
        async def frames() -> AsyncIterator[bytes]:
            async for piece in text:
                if piece:
                    yield protocol.frame(FrameType.TEXT, piece.encode())
            yield protocol.frame(FrameType.END)

        try:
            await self.client.post(f"{_P}/text/{stream_id}", content=frames())
        except httpx.HTTPError as exc:  # the synthesis fails on its own connection
            log.warning("worker %s: streaming text failed: %r", self.url, exc)

    async def prepare_voice(self, prompt: PromptAudio) -> bool:
        meta = {"voice_id": prompt.voice_id, "sample_rate": prompt.sample_rate, "text": prompt.text}
        body = protocol.json_frame(FrameType.REQUEST, meta) + protocol.samples_frame(
            FrameType.PROMPT, prompt.samples
        )
        try:
            response = await self.client.post(f"{_P}/voices/prepare", content=body)
        except httpx.HTTPError as exc:
            raise WorkerFailure.from_httpx(exc, self.url) from None
        if response.status_code != 200:
            raise self._refusal(response.status_code, response.content, retryable=False)
        return bool(response.json().get("prepared"))

    async def forget_voice(self, voice_id: str) -> None:
        try:
            response = await self.client.post(f"{_P}/voices/forget", json={"voice_id": voice_id})
        except httpx.HTTPError as exc:
            raise WorkerFailure.from_httpx(exc, self.url) from None
        if response.status_code != 204:
            raise self._refusal(response.status_code, response.content, retryable=False)

    def _refusal(self, status: int, raw: bytes, retryable: bool) -> VoxgateError | WorkerFailure:
        """A non-200 answer: the worker's own error if it sent one, else a
        failure of the hop (a proxy's page, a server that is not a worker)."""
        with contextlib.suppress(ValueError, KeyError, AttributeError, TypeError):
            error = json.loads(raw)["error"]
            return protocol.error_from_wire(error, f"worker {self.url}")
        snippet = raw[:200].decode("utf-8", "replace")
        return WorkerFailure(
            f"worker {self.url} answered HTTP {status}: {snippet}",
            kind="protocol" if status >= 500 else "rejected",
            retryable=retryable and status >= 500,
        )
