"""Who is calling: one bearer credential in, a :class:`Principal` out.

Every surface (HTTP middleware, the gRPC service) asks the same
:class:`Authenticator`, so a key revoked or a token refused is refused
everywhere. Three credentials are accepted, tried in this order:

* the bootstrap admin token (``VOXGATE_ADMIN_TOKEN``), compared in constant
  time;
* API keys (``vg_...``), looked up in the database on every request;
* JWTs from the operator's identity provider (:mod:`voxgate.serving.tokens`).

Whether authentication is on at all is decided once, at start
(:func:`auth_enabled`): ``VOXGATE_AUTH=auto`` turns it on as soon as any
listener is reachable from another machine, and :func:`startup_problem`
refuses to start a gateway that would be open to the network or that nobody
could ever call.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging

from voxgate import errors
from voxgate.config import Settings
from voxgate.serving.auth_errors import Forbidden, Unauthenticated, admin_only
from voxgate.serving.keys import KeyStore, looks_like_key
from voxgate.serving.principal import Limits, Principal
from voxgate.serving.tokens import JwtVerifier
from voxgate.store.models import DEFAULT_TENANT

__all__ = [
    "Authenticator",
    "Forbidden",
    "StartupRefused",
    "Unauthenticated",
    "admin_only",
    "auth_enabled",
    "exposure_problem",
    "startup_problem",
]

log = logging.getLogger(__name__)


class StartupRefused(RuntimeError):
    """The configuration would expose the gateway or lock everyone out."""


class Authenticator:
    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self.keys = keys
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._admin_digest = hashlib.sha256(token.encode()).digest() if token else None
        self.jwt = JwtVerifier.from_settings(settings)

    @property
    def has_configured_credentials(self) -> bool:
        """Whether anyone can authenticate without a key in the database."""
        return self._admin_digest is not None or self.jwt is not None

    async def authenticate(self, authorization: str | None, client: str = "") -> Principal:
        """The principal an ``Authorization`` header value proves, or a 401."""
        if not authorization:
            raise Unauthenticated(
                "this route needs an API key or a bearer token",
                hint="Send Authorization: Bearer vg_... (see docs/auth.md).",
            )
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated(
                "the Authorization header must be 'Bearer <API key or token>'",
                hint="Send Authorization: Bearer vg_... (see docs/auth.md).",
            )
        if self._is_admin_token(credential):
            return Principal(
                tenant=DEFAULT_TENANT,
                subject="admin-token",
                method="admin_token",
                admin=True,
                client=client,
            )
        if looks_like_key(credential):
            return await self._api_key(credential, client)
        if self.jwt is not None:
            return await self._jwt(credential, client)
        raise Unauthenticated(
            "the bearer credential is not a voxgate API key",
            code=errors.INVALID_API_KEY,
            hint="API keys start with vg_; ask an administrator for one (voxgate keys create).",
        )

    def _is_admin_token(self, credential: str) -> bool:
        if self._admin_digest is None:
            return False
        # Digests have one length, so the comparison's time says nothing about the token.
        presented = hashlib.sha256(credential.encode()).digest()
        return hmac.compare_digest(presented, self._admin_digest)

    async def _api_key(self, credential: str, client: str) -> Principal:
        match = await self.keys.verify(credential)
        if match is None:
            raise Unauthenticated(
                "the API key is not valid",
                code=errors.INVALID_API_KEY,
                hint="Check that the whole key was sent; ask an administrator for a new one.",
            )
        key = match.key
        if not key.active:
            raise Unauthenticated(
                f"the API key {key.id} has been revoked",
                code=errors.INVALID_API_KEY,
                hint="Ask an administrator for a new key.",
            )
        return Principal(
            tenant=key.tenant,
            subject=f"key:{key.id}",
            key_id=key.id,
            method="api_key",
            admin=key.admin,
            limits=key.limits,
            tenant_limits=match.tenant.limits,
            client=client,
        )

    async def _jwt(self, credential: str, client: str) -> Principal:
        assert self.jwt is not None
        claims = self.jwt.verify(credential)
        tenant_id = self.jwt.tenant(claims)
        tenant = await self.keys.tenant(tenant_id)
        return Principal(
            tenant=tenant_id,
            subject=str(claims.get("sub") or "jwt"),
            method="jwt",
            admin=self.jwt.is_admin(claims),
            tenant_limits=tenant.limits if tenant is not None else Limits(),
            client=client,
        )


# -- the mode, decided at start --------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``. An empty host binds
    every address; a host name other than localhost may resolve anywhere."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_hosts(settings: Settings) -> list[str]:
    """Every address the gateway listens on: HTTP, and gRPC when it is on."""
    hosts = [settings.host]
    if settings.grpc_port is not None:
        hosts.append(settings.grpc_host or settings.host)
    return hosts


def _exposed(settings: Settings) -> list[str]:
    return [h or "(all addresses)" for h in listen_hosts(settings) if not is_loopback(h)]


def auth_enabled(settings: Settings) -> bool:
    """``on``/``off`` as set; ``auto``: on unless every listener is loopback."""
    if settings.auth == "auto":
        return bool(_exposed(settings))
    return settings.auth == "on"


def exposure_problem(settings: Settings) -> str | None:
    """Why the gateway must not start with authentication off, or None."""
    exposed = _exposed(settings)
    if auth_enabled(settings) or not exposed or settings.allow_unauthenticated:
        return None
    return (
        f"authentication is off (VOXGATE_AUTH=off) but the gateway would listen on "
        f"{', '.join(exposed)}, which other machines can reach: anyone there could use "
        "every voice and the admin API. Turn authentication on (VOXGATE_AUTH=auto or on), "
        "bind 127.0.0.1, or set VOXGATE_ALLOW_UNAUTHENTICATED=true if a proxy in front "
        "authenticates callers."
    )


async def startup_problem(settings: Settings, authenticator: Authenticator | None) -> str | None:
    """Why the gateway must not start, or None: it would be open to the network,
    or authentication is on and no credential could ever pass it."""
    problem = exposure_problem(settings)
    if problem or authenticator is None or authenticator.has_configured_credentials:
        return problem
    if await authenticator.keys.active_key_count() > 0:
        return None
    return (
        "authentication is on but nobody could authenticate: there is no API key in the "
        "database, and neither a JWT key (VOXGATE_JWT_SECRET or VOXGATE_JWT_PUBLIC_KEY) nor "
        "VOXGATE_ADMIN_TOKEN is set. Create a key first with "
        "`voxgate keys create --tenant default --name admin --admin` (same configuration as "
        "the server), or set VOXGATE_JWT_SECRET / VOXGATE_JWT_PUBLIC_KEY or "
        "VOXGATE_ADMIN_TOKEN."
    )


def describe(settings: Settings) -> str:
    """One line for the start-up log: which mode, and why."""
    exposed = _exposed(settings)
    if settings.auth == "off" and exposed:
        return (
            f"authentication OFF while listening on {', '.join(exposed)} "
            "(VOXGATE_ALLOW_UNAUTHENTICATED=true: a proxy in front must authenticate callers)"
        )
    if settings.auth != "auto":
        return f"authentication {settings.auth} (VOXGATE_AUTH={settings.auth})"
    if exposed:
        return f"authentication on (VOXGATE_AUTH=auto; listening on {', '.join(exposed)})"
    return "authentication off (VOXGATE_AUTH=auto; loopback only)"
