"""``voxgate worker``: one engine in its own process, served to gateways.

The process builds the engine configured under a name (the same
``VOXGATE_ENGINES`` entry a gateway would run in-process), starts it, and
serves the worker protocol (:mod:`voxgate.worker.protocol`) on a TCP port or
a Unix socket. With ``VOXGATE_REDIS_URL`` set it registers itself with
heartbeats (:mod:`voxgate.worker.registry`) so gateways find it.

Stopping: on SIGTERM or SIGINT the worker first deletes its registration (no
gateway sends it new work), answers new syntheses with 503
``engine_unavailable`` (a gateway retries those elsewhere before any audio),
lets the syntheses under way finish for up to ``VOXGATE_WORKER_DRAIN_S``,
then closes the engine and exits 0. A worker started by a gateway
(``--parent-pid``) also exits when that gateway is gone, so a gateway killed
outright leaves no orphan holding a GPU.

The app is plain ASGI rather than FastAPI: five routes, and the per-request
cost is what a worker hop adds to every request's first audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import resource
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType as StackFrame
from typing import Any

import uvicorn

from voxgate import errors
from voxgate.asgi import DisconnectWatch
from voxgate.audio.prompt import PromptAudio
from voxgate.config import EngineConfig, Settings
from voxgate.engines.base import Engine, EngineRequest, Notice
from voxgate.errors import EngineError, EngineUnavailable, RequestError, VoxgateError
from voxgate.heap import freeze_startup_heap
from voxgate.worker import protocol, tls
from voxgate.worker.protocol import FrameDecoder, FrameType, ProtocolError
from voxgate.worker.registry import Heartbeat, WorkerRecord, WorkerRegistry

log = logging.getLogger("voxgate.worker")

# The engine configuration a supervising gateway hands its child (JSON of an
# EngineConfig), so the child runs exactly what the gateway was configured
# with, wherever that came from (environment, TOML file, the database).
ENGINE_CONFIG_ENV = "VOXGATE_WORKER_ENGINE_CONFIG"
# Set in the worker's own environment: engines can tell they run in a worker.
WORKER_ID_ENV = "VOXGATE_WORKER_ID"
MAX_BODY = protocol.MAX_PAYLOAD + 1024 * 1024
_TEXT_QUEUE = 256
_UNCLAIMED_TEXT_S = 60.0

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class WorkerSetupError(Exception):
    """The worker cannot start as asked (unknown engine, bad configuration)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint or "Configure the engine in VOXGATE_ENGINES."


def rss_bytes() -> int:
    """Resident memory of this process now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _TextChannel:
    """Text of a streamed request, between its text route and its synthesis."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(_TEXT_QUEUE)
        self.created = time.monotonic()
        self.claimed = False

    async def pieces(self) -> AsyncIterator[str]:
        while (piece := await self.queue.get()) is not None:
            yield piece


class WorkerService:
    """What the routes share: the engine, its counters, the drain state."""

    def __init__(self, engine: Engine, worker_id: str, token: str | None = None) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.token = token
        self.started_at = time.time()
        self.ready = False
        self.draining = False
        self.in_flight = 0
        self.served = 0
        self.failed = 0
        self.cancelled = 0
        self._text: dict[str, _TextChannel] = {}

    # -- documents -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        engine = self.engine
        default = engine.default_speaker()
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "worker_id": self.worker_id,
            "engine": engine.name,
            "kind": engine.kind,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "capabilities": protocol.capabilities_to_wire(engine.capabilities),
            "speakers": [protocol.speaker_to_wire(s) for s in engine.speakers()],
            "default_speaker": default.id if default else None,
            "describe": dict(engine.describe()),
        }

    def health(self) -> dict[str, Any]:
        return {
            "ready": self.ready and self.engine.ready,
            "draining": self.draining,
            "in_flight": self.in_flight,
            "capacity": self.engine.capabilities.max_concurrency,
            "served": self.served,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rss_bytes": rss_bytes(),
            "pid": os.getpid(),
            "worker_id": self.worker_id,
            "uptime_s": round(time.time() - self.started_at, 3),
            "healthy": self.engine.healthy,
        }

    def record(self, url: str, seq: int) -> WorkerRecord:
        return WorkerRecord(
            id=self.worker_id,
            engine=self.engine.name,
            url=url,
            kind=self.engine.kind,
            capacity=self.engine.capabilities.max_concurrency,
            in_flight=self.in_flight,
            served=self.served,
            started_at=self.started_at,
            heartbeat_at=time.time(),
            seq=seq,
            pid=os.getpid(),
            host=socket.gethostname(),
            rss_bytes=rss_bytes(),
        )

    # -- streamed text ---------------------------------------------------------

    def text_channel(self, stream_id: str) -> _TextChannel:
        channel = self._text.get(stream_id)
        if channel is None:
            now = time.monotonic()
            for key, old in list(self._text.items()):  # a gateway that died in between
                if not old.claimed and now - old.created > _UNCLAIMED_TEXT_S:
                    del self._text[key]
            channel = self._text[stream_id] = _TextChannel()
        return channel

    def drop_text(self, stream_id: str) -> None:
        self._text.pop(stream_id, None)


class WorkerApp:
    """The worker protocol's routes, as an ASGI application."""

    def __init__(self, service: WorkerService) -> None:
        self.service = service
        p = protocol.PREFIX
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("GET", f"{p}/info"): self._info,
            ("GET", f"{p}/health"): self._health,
            ("POST", f"{p}/synthesize"): self._synthesize,
            ("POST", f"{p}/voices/prepare"): self._prepare_voice,
            ("POST", f"{p}/voices/forget"): self._forget_voice,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if not self._authorized(scope):
            code = (
                errors.INVALID_TOKEN if _header(scope, b"authorization") else errors.AUTH_REQUIRED
            )
            await _error(send, RequestError("this worker needs its token", code=code))
            return
        route = self._routes.get((method, path))
        if route is None and method == "POST" and path.startswith(f"{protocol.PREFIX}/text/"):
            await self._text(scope, receive, send, path.rsplit("/", 1)[1])
            return
        if route is None:
            await _error(send, RequestError(f"no route {method} {path}", code=errors.NOT_FOUND))
            return
        try:
            await route(scope, receive, send)
        except ProtocolError as exc:
            await _error(send, RequestError(f"not the worker protocol: {exc}"))
        except _BodyTooLarge:
            await _error(send, RequestError("body too large", code=errors.REQUEST_TOO_LARGE))
        except _Gone:
            pass  # the caller left before its request was read

    def _authorized(self, scope: Scope) -> bool:
        token = self.service.token
        if not token:
            return True
        given = _header(scope, b"authorization") or ""
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    # -- routes ----------------------------------------------------------------

    async def _info(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _json(send, 200, self.service.info())

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        health = self.service.health()
        ok = health["ready"] and not health["draining"]
        await _json(send, 200 if ok else 503, health)

    async def _synthesize(self, scope: Scope, receive: Receive, send: Send) -> None:
        service, engine = self.service, self.service.engine
        document, samples = protocol.split_request(protocol.decode_all(await _body(receive)))
        if service.draining or not (service.ready and engine.ready):
            state = "draining" if service.draining else "not ready"
            await _error(
                send,
                EngineUnavailable(
                    f"worker {service.worker_id} is {state}",
                    hint="Another worker can take the request.",
                    retry_after=1,
                ),
            )
            return
        stream_id = document.get("text_stream")
        channel = service.text_channel(str(stream_id)) if stream_id else None
        try:
            if channel is not None:
                channel.claimed = True
            text = channel.pieces() if channel is not None else None
            request = protocol.request_from_wire(document, samples, engine.speakers(), text)
            try:
                notices = engine.check(request)
            except VoxgateError as exc:
                await _error(send, exc)
                return
            await self._stream(request, notices, receive, send)
        finally:
            if stream_id:
                service.drop_text(str(stream_id))

    async def _stream(
        self, request: EngineRequest, notices: list[Notice], receive: Receive, send: Send
    ) -> None:
        """Frames as the engine produces them; a disconnect cancels the engine."""
        service = self.service
        watch = DisconnectWatch(receive)
        service.in_flight += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _FRAMES})
            head = b"".join(
                protocol.json_frame(
                    FrameType.EVENT, {"type": "notice", "code": n.code, "message": n.message}
                )
                for n in notices
            )
            if head:
                await send({"type": "http.response.body", "body": head, "more_body": True})
            watch.start()
            tail = await self._pump(request, send)
            watch.finish()
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except asyncio.CancelledError:
            if not watch.claim_cancellation():
                raise  # the worker is shutting down
            service.cancelled += 1
            log.info("synthesis cancelled: the gateway went away", extra=_ids(request))
        except OSError:
            service.cancelled += 1
        finally:
            watch.stop()
            service.in_flight -= 1

    async def _pump(self, request: EngineRequest, send: Send) -> bytes:
        """Send the engine's chunks; return the terminal frame."""
        service = self.service
        chunks = samples = 0
        try:
            async with contextlib.aclosing(service.engine.synthesize(request)) as stream:
                async for chunk in stream:
                    body = protocol.audio_frame(chunk.segment, chunk.samples)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    chunks += 1
                    samples += len(chunk.samples)
        except VoxgateError as exc:
            service.failed += 1
            log.warning("synthesis failed: %s: %s", exc.code, exc.message, extra=_ids(request))
            return protocol.json_frame(FrameType.ERROR, protocol.error_to_wire(exc))
        except Exception as exc:
            service.failed += 1
            log.exception("engine failed", extra=_ids(request))
            fault = EngineError(
                f"engine {service.engine.name!r} failed on worker {service.worker_id}: {exc!r}",
                hint="See the worker's log.",
            )
            return protocol.json_frame(FrameType.ERROR, protocol.error_to_wire(fault))
        service.served += 1
        return protocol.json_frame(FrameType.END, {"chunks": chunks, "samples": samples})

    async def _text(self, scope: Scope, receive: Receive, send: Send, stream_id: str) -> None:
        channel = self.service.text_channel(stream_id)
        decoder = FrameDecoder()
        ended = False
        try:
            while not ended:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                for item in decoder.feed(message.get("body", b"")):
                    if item.type == FrameType.TEXT:
                        await channel.queue.put(item.payload.decode("utf-8", "replace"))
                    elif item.type == FrameType.END:
                        ended = True
                if not message.get("more_body", False):
                    break
        finally:
            await channel.queue.put(None)  # whatever happened, the text is over
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _prepare_voice(self, scope: Scope, receive: Receive, send: Send) -> None:
        document, samples = protocol.split_request(protocol.decode_all(await _body(receive)))
        if samples is None or not document.get("voice_id"):
            raise ProtocolError("prepare needs voice_id and a PROMPT frame")
        prompt = PromptAudio(
            samples,
            int(document["sample_rate"]),
            document.get("text"),
            str(document["voice_id"]),
        )
        prepared = await self.service.engine.prepare_voice(prompt)
        await _json(send, 200, {"prepared": prepared})

    async def _forget_voice(self, scope: Scope, receive: Receive, send: Send) -> None:
        document = protocol.parse_json(await _body(receive))
        if not document.get("voice_id"):
            raise ProtocolError("forget needs voice_id")
        await self.service.engine.forget_voice(str(document["voice_id"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


_FRAMES = [(b"content-type", protocol.MEDIA_TYPE.encode()), (b"cache-control", b"no-store")]


class _BodyTooLarge(Exception):
    pass


class _Gone(Exception):
    """The client disconnected while its body was being read."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _ids(request: EngineRequest) -> dict[str, str]:
    return {"request_id": request.request_id}


async def _body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _json(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document, ensure_ascii=False, default=str).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error(send: Send, exc: VoxgateError) -> None:
    await _json(send, exc.status, {"error": protocol.error_to_wire(exc)})


# -- the process ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    engine: str
    uds: Path | None = None  # a Unix socket instead of host:port
    register: bool = True  # in Redis, when VOXGATE_REDIS_URL is set
    parent_pid: int | None = None  # exit when this process is gone


def engine_config(settings: Settings, name: str) -> EngineConfig:
    """The configuration to run: the one a supervising gateway handed over,
    else ``VOXGATE_ENGINES[name]``. Always in-process here (no isolation)."""
    raw = os.environ.get(ENGINE_CONFIG_ENV)
    if raw:
        config = EngineConfig.model_validate_json(raw)
    elif name in settings.engines:
        config = settings.engines[name]
    else:
        known = ", ".join(settings.engines) or "none"
        raise WorkerSetupError(f"no engine named {name!r} in VOXGATE_ENGINES (configured: {known})")
    return config.model_copy(update={"isolate": False})


class _Server(uvicorn.Server):
    """uvicorn, with the worker told about the signal before draining starts,
    and without re-raising the signal afterwards (the worker exits 0)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: StackFrame | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True
        self._on_exit()


def _tls_files(settings: Settings, options: WorkerOptions) -> tuple[Path, Path] | None:
    """The certificate and key to serve with; none on a Unix socket (a
    supervised child inherits the gateway's settings but is private to it)."""
    if options.uds is not None:
        return None
    try:
        return tls.server_files(settings)
    except tls.TlsSetupError as exc:
        raise WorkerSetupError(
            str(exc),
            hint="Set VOXGATE_WORKER_TLS_CERT and VOXGATE_WORKER_TLS_KEY to PEM files, or neither.",
        ) from None


def advertised_url(settings: Settings, options: WorkerOptions, port: int) -> str:
    if options.uds is not None:
        return f"unix:{options.uds}"
    if settings.worker_url:
        return settings.worker_url.rstrip("/")
    host = settings.worker_host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if _tls_files(settings, options) else "http"
    return f"{scheme}://{host}:{port}"


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Serve until stopped; the process's exit status."""
    from voxgate.obs.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    config = engine_config(settings, options.engine)
    uv = _uvicorn_config(settings, options)
    with asyncio.Runner(loop_factory=uv.get_loop_factory()) as runner:
        return runner.run(_serve(settings, options, config, uv))


def _uvicorn_config(settings: Settings, options: WorkerOptions) -> uvicorn.Config:
    placeholder: Any = None  # the app is set once the engine exists
    tls = _tls_files(settings, options)
    return uvicorn.Config(
        placeholder,
        host=settings.worker_host,
        port=settings.worker_port,
        uds=str(options.uds) if options.uds else None,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        lifespan="off",
        log_config=None,
        access_log=False,
        ws="none",
        # Gateways keep pooled connections; uvicorn's 5 s would close them
        # between two quiet moments and cost a reconnect.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=int(settings.worker_drain_s),
    )


async def _serve(
    settings: Settings, options: WorkerOptions, config: EngineConfig, uv: uvicorn.Config
) -> int:
    from voxgate.engines.registry import build_engine
    from voxgate.store.blobs import LocalBlobStore
    from voxgate.voices.features import BlobFeatureStore

    worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    os.environ[WORKER_ID_ENV] = worker_id
    timeout = config.timeout_s if config.timeout_s is not None else settings.engine_timeout_s
    engine = build_engine(options.engine, config, timeout_s=timeout)
    # Features of registered voices land where the gateways' blob store is
    # (the same data directory for a supervised child).
    engine.features = BlobFeatureStore(LocalBlobStore(settings.data_dir / "blobs"))
    token = settings.worker_token.get_secret_value() if settings.worker_token else None
    service = WorkerService(engine, worker_id, token)
    uv.app = WorkerApp(service)
    loop = asyncio.get_running_loop()
    heartbeat: Heartbeat | None = None
    redis = None

    def begin_drain() -> None:
        if service.draining:
            return
        service.draining = True
        log.info("worker %s stopping: deregistering, then draining", worker_id)
        registered = heartbeat
        if registered is not None:
            loop.call_soon_threadsafe(lambda: loop.create_task(registered.stop()))

    server = _Server(uv, begin_drain)
    serving = asyncio.create_task(server.serve(), name="worker-http")
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.02)
    if serving.done():
        await serving
        return 1
    try:
        await engine.start()
    except Exception:
        log.exception("engine %s failed to start", options.engine)
        server.should_exit = True
        await serving
        return 1
    if settings.gc_freeze:
        freeze_startup_heap()
    service.ready = True
    url = advertised_url(settings, options, _bound_port(server))
    if options.register and settings.redis_url:
        from voxgate.serving.redis import RedisConnection

        redis = RedisConnection(settings.redis_url, settings.redis_prefix)
        heartbeat = Heartbeat(
            WorkerRegistry(redis),
            lambda seq: service.record(url, seq),
            settings.worker_heartbeat_s,
        )
        await heartbeat.start()
        if service.draining:  # stopped while registering
            await heartbeat.stop()
    watcher = None
    if options.parent_pid is not None:
        watcher = asyncio.create_task(_watch_parent(options.parent_pid, server))
    log.info(
        "worker %s ready: engine %s (%s) at %s%s",
        worker_id,
        engine.name,
        engine.kind,
        url,
        " (registered in Redis)" if heartbeat is not None else "",
    )
    try:
        await serving
    finally:
        # The watcher ends by itself only when the gateway is gone.
        orphaned = watcher is not None and watcher.done() and not watcher.cancelled()
        if watcher is not None:
            watcher.cancel()
        if heartbeat is not None:
            await heartbeat.stop()
        await engine.close()
        if redis is not None:
            await redis.close()
        if options.uds is not None:
            _remove_socket(options.uds, orphaned)
    log.info("worker %s stopped (served %d, failed %d)", worker_id, service.served, service.failed)
    return 0


def _remove_socket(path: Path, orphaned: bool) -> None:
    """No socket file left behind; a supervised child whose gateway died
    without cleaning up also removes the gateway's (then empty) directory."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    if orphaned:
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def _bound_port(server: uvicorn.Server) -> int:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            address = sock.getsockname()
            if isinstance(address, tuple):
                return int(address[1])
    return 0


async def _watch_parent(parent_pid: int, server: uvicorn.Server) -> None:
    """A supervised child outlives its gateway only by a second."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent_pid:
            log.warning("the gateway (pid %d) is gone; stopping", parent_pid)
            server.handle_exit(signal.SIGTERM, None)
            return
