"""Job callbacks: signed, retried, and never aimed at the inside of the network.

**Signature.** ``X-Voxgate-Signature: t=<unix seconds>,v1=<hex>`` where the
hex is HMAC-SHA256 over ``"<t>.<body>"`` with the webhook secret, as Stripe
and others do: the receiver recomputes it, compares in constant time, and
rejects old timestamps (replays). :func:`verify` is the receiver's side.

**SSRF.** A callback URL is a request the gateway makes on a caller's behalf,
from inside the network. URLs whose host resolves to loopback, private,
link-local (which includes the cloud metadata address 169.254.169.254),
multicast, reserved or unspecified addresses are refused when the job is
submitted, and again at delivery, against the address actually connected to
(DNS may have changed in between), unless the host or network is
allow-listed (``VOXGATE_WEBHOOK_ALLOW``).

**Delivery** is at least once: the state lives in the job row, retries back
off exponentially (1 s, 2 s, 4 s ... capped), and any process running the
dispatcher may deliver a due callback (claimed with a conditional update).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from voxgate import errors
from voxgate.errors import RequestError
from voxgate.jobs.model import Job
from voxgate.jobs.store import JobStore
from voxgate.store.models import utcnow

log = logging.getLogger("voxgate.webhooks")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300) -> bool:
    """The receiving side: a valid signature, made recently."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True, slots=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AllowList:
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower())
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: Address) -> bool:
        return host.lower() in self.hosts or any(address in n for n in self.networks)


def forbidden(address: Address) -> bool:
    """Addresses a callback must not reach."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED_NAT)
    )


_SHARED_NAT = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT


async def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def check_callback_url(url: str, allow: AllowList) -> None:
    """Refuse a callback URL that is malformed or points inside the network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestError(
            "callback_url must be an http or https URL",
            code=errors.CALLBACK_URL_INVALID,
            hint="Send an absolute URL such as https://example.com/hooks/voxgate.",
            param="callback_url",
        )
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except (OSError, UnicodeError):
        raise RequestError(
            f"callback_url host {host!r} does not resolve",
            code=errors.CALLBACK_URL_INVALID,
            hint="Check the host name.",
            param="callback_url",
        ) from None
    for address in addresses:
        if forbidden(address) and not allow.allows(host, address):
            raise RequestError(
                f"callback_url resolves to {address}, an internal address",
                code=errors.CALLBACK_URL_FORBIDDEN,
                hint="Callbacks go to public addresses only; an operator can allow-list "
                "hosts or networks with VOXGATE_WEBHOOK_ALLOW.",
                param="callback_url",
            )


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that pass the SSRF check, and to exactly the
    address that was checked (no second DNS lookup for rebinding to use). TLS
    still verifies the certificate against the host name."""

    def __init__(self, allow: AllowList) -> None:
        self._allow = allow
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        for address in addresses:
            if forbidden(address) and not self._allow.allows(host, address):
                raise httpcore.ConnectError(f"{host} resolves to {address}, an internal address")
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("callbacks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over a connection pool that uses the guarded backend.
    Responses are read whole (a callback's answer is small and only its
    status matters)."""

    def __init__(self, allow: AllowList, *, max_response_bytes: int = 65536) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_GuardedBackend(allow)
        )
        self._max = max_response_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=body,
            extensions=request.extensions,
        )
        try:
            async with self._pool.stream(
                core.method,
                core.url,
                headers=core.headers,
                content=body,
                extensions=core.extensions,
            ) as response:
                content = b""
                async for chunk in response.aiter_stream():
                    content += chunk
                    if len(content) > self._max:
                        break
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc), request=request) from exc
        except httpcore.NetworkError as exc:
            raise httpx.NetworkError(str(exc), request=request) from exc
        return httpx.Response(
            response.status, headers=response.headers, content=content, request=request
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def payload(job: Job, base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"job.{job.state.value}",
        "id": job.id,
        "object": "job",
        "state": job.state.value,
        "segments_total": job.segments_total,
        "segments_done": job.segments_done,
        "audio_seconds": round(job.audio_seconds, 3),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    if job.error_code:
        body["error"] = {"code": job.error_code, "message": job.error_message}
    if job.state.value == "succeeded":
        body["audio_url"] = f"{base_url}/v1/jobs/{job.id}/audio"
    return body


class WebhookDispatcher:
    """Delivers due callbacks; run in every process that runs jobs."""

    def __init__(
        self,
        store: JobStore,
        *,
        secret: str,
        allow: AllowList,
        base_url: str,
        max_attempts: int = 8,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 600.0,
        timeout_s: float = 10.0,
        poll_s: float = 1.0,
    ) -> None:
        self.store = store
        self.secret = secret
        self.allow = allow
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, transport=GuardedTransport(allow)
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="webhooks")

    def poke(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                for job in await self.store.webhooks_due():
                    await self.deliver(job)
            except Exception:
                log.exception("webhook dispatch failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def deliver(self, job: Job) -> bool:
        if not await self.store.claim_webhook(job.id, lease_s=self.timeout_s * 3):
            return False  # another process is delivering it
        body = json.dumps(payload(job, self.base_url), ensure_ascii=False).encode()
        error: str | None = None
        try:
            assert job.callback_url is not None
            await check_callback_url(job.callback_url, self.allow)
            timestamp = int(time.time())
            response = await self._client.post(
                job.callback_url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "voxgate-webhooks",
                    "X-Voxgate-Event": f"job.{job.state.value}",
                    "X-Voxgate-Delivery": f"{job.id}:{job.webhook_attempts + 1}",
                    "X-Voxgate-Signature": sign(self.secret, timestamp, body),
                },
            )
            if 200 <= response.status_code < 300:
                await self.store.webhook_result(job.id, delivered=True, error=None, next_at=None)
                return True
            error = f"HTTP {response.status_code}"
        except RequestError as exc:  # the URL became forbidden: no point retrying
            await self.store.webhook_result(
                job.id, delivered=False, error=exc.message, next_at=None
            )
            return False
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = job.webhook_attempts + 1
        next_at = None
        if attempt < self.max_attempts:
            delay = min(self.max_backoff_s, self.first_backoff_s * 2 ** (attempt - 1))
            next_at = utcnow() + timedelta(seconds=delay)
        log.warning(
            "webhook delivery failed",
            extra={"job_id": job.id, "attempt": attempt, "error": error, "retry": bool(next_at)},
        )
        await self.store.webhook_result(job.id, delivered=False, error=error, next_at=next_at)
        return False
