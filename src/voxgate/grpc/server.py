"""The gRPC server inside voxgate's process (``VOXGATE_GRPC_PORT``).

It runs on the same event loop as the HTTP server and shares its pipeline, so
gRPC and HTTP callers share engines, admission and limits: there is one
capacity to protect, not one per surface. It serves:

* ``cosyvoice.CosyVoice`` (:mod:`voxgate.grpc.cosyvoice_service`), for
  clients of CosyVoice's official gRPC server;
* ``voxgate.v1.Speech`` (:mod:`voxgate.grpc.speech_service`), voxgate's own
  API: whole, streamed, and text streamed in; with the HTTP surfaces' rate
  limits and metrics;
* server reflection (``grpc.reflection.v1alpha``), so grpcurl and Postman
  list and call the services without the .proto files;
* the standard ``grpc.health.v1.Health`` service, SERVING while voxgate runs
  and NOT_SERVING from the moment it starts shutting down, so load balancers
  and Kubernetes gRPC probes stop sending work before the port closes.

The port is bound without ``SO_REUSEPORT`` (gRPC's default on Linux sets it):
a second voxgate started on a port already in use must fail loudly, not
silently share the port with the first.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from voxgate.config import Settings
from voxgate.grpc.cosyvoice_service import SERVICE_NAME, CosyVoiceService
from voxgate.grpc.protos import cosyvoice_pb2_grpc, speech_pb2_grpc
from voxgate.grpc.speech_service import SERVICE_NAME as SPEECH_SERVICE
from voxgate.grpc.speech_service import SpeechService
from voxgate.obs.observer import RequestObserver
from voxgate.pipeline import Pipeline
from voxgate.serving.auth import Authenticator
from voxgate.serving.limits import RequestLimits

log = logging.getLogger("voxgate.grpc")

# A 30 s prompt is 960 kB of 16 kHz int16; gRPC's default 4 MB limit leaves room.
_SERVER_OPTIONS: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{port}"


class GrpcServer:
    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        authenticator: Authenticator | None = None,
        *,
        limits: RequestLimits | None = None,
        observers: tuple[RequestObserver, ...] = (),
    ) -> None:
        if settings.grpc_port is None:
            raise ValueError("the gRPC server needs VOXGATE_GRPC_PORT")
        self._pipeline = pipeline
        self._settings = settings
        self._authenticator = authenticator  # None: authentication is off
        self._limits = limits
        self._observers = observers
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self.address = _address(settings.grpc_host or settings.host, settings.grpc_port)
        self.port: int | None = None  # the bound port (differs from the setting if that is 0)

    async def start(self) -> None:
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        cosyvoice_pb2_grpc.add_CosyVoiceServicer_to_server(
            CosyVoiceService(
                self._pipeline, self._settings, self._authenticator, self._limits, self._observers
            ),
            server,
        )
        speech_pb2_grpc.add_SpeechServicer_to_server(
            SpeechService(
                self._pipeline, self._settings, self._authenticator, self._limits, self._observers
            ),
            server,
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        served = (SERVICE_NAME, SPEECH_SERVICE, health_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(served, server)
        try:
            port = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise RuntimeError(
                f"cannot listen for gRPC on {self.address} ({exc}); "
                "free the port or change VOXGATE_GRPC_PORT / VOXGATE_GRPC_HOST"
            ) from None
        if not port:  # older grpcio reports a failed bind as port 0
            raise RuntimeError(
                f"cannot listen for gRPC on {self.address}; "
                "free the port or change VOXGATE_GRPC_PORT / VOXGATE_GRPC_HOST"
            )
        await server.start()
        for service in ("", SERVICE_NAME, SPEECH_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self.port = port
        host = self.address.rsplit(":", 1)[0]
        log.info("gRPC on %s:%d (services: %s)", host, port, ", ".join(served))

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, give running ones ``grace`` seconds, cancel the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await server.stop(grace)
        log.info("gRPC server stopped")
