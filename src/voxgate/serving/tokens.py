"""Bearer JWTs from the operator's identity provider (PyJWT).

Two mistakes sink most JWT checks, and both are closed here by construction:

* trusting the token's own ``alg``: only the configured algorithms are
  accepted, never ``none``, and the key is chosen by the algorithm's family
  (HMAC algorithms use ``VOXGATE_JWT_SECRET``, the others the public key). An
  HS256 token "signed" with the RS256 public key is therefore checked against
  the secret, or refused when HS256 is not configured;
* optional expiry: ``exp`` is required.

The tenant comes from a claim (``VOXGATE_JWT_TENANT_CLAIM``), so one identity
provider can serve every tenant; a token without it is refused rather than
silently landing in a default tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from voxgate import errors
from voxgate.config import Settings
from voxgate.serving.auth_errors import TokenRejected

log = logging.getLogger(__name__)

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_MIN_SECRET_BYTES = 32  # RFC 7518 3.2: at least the hash size for HS256


class AuthConfigError(ValueError):
    """The authentication settings cannot work; raised at start, never per request."""


__all__ = ["AuthConfigError", "JwtVerifier", "TokenRejected", "load_public_key"]


def load_public_key(value: str) -> PublicKeyTypes:
    """A PEM public key (or certificate), given as its text or a file path."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        path = Path(text).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise AuthConfigError(
                f"VOXGATE_JWT_PUBLIC_KEY is neither PEM text nor a readable file: {exc}"
            ) from None
    data = text.encode()
    if b"PRIVATE KEY" in data:
        raise AuthConfigError(
            "VOXGATE_JWT_PUBLIC_KEY holds a private key; give the gateway only the public key "
            "(openssl pkey -in private.pem -pubout)"
        )
    try:
        if b"BEGIN CERTIFICATE" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AuthConfigError(f"VOXGATE_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None


class JwtVerifier:
    def __init__(
        self,
        *,
        secret: bytes | None = None,
        public_key: PublicKeyTypes | None = None,
        algorithms: Sequence[str] = (),
        issuer: str | None = None,
        audience: str | None = None,
        tenant_claim: str = "tenant",
        admin_claim: str | None = None,
        admin_value: str = "admin",
        leeway_s: float = 30.0,
    ) -> None:
        if secret is None and public_key is None:
            raise AuthConfigError("a JWT verifier needs a secret or a public key")
        algorithms = list(algorithms) or [
            *(["HS256"] if secret is not None else []),
            *(["RS256"] if public_key is not None else []),
        ]
        for alg in algorithms:
            if alg in HMAC_ALGORITHMS:
                if secret is None:
                    raise AuthConfigError(f"JWT algorithm {alg} needs VOXGATE_JWT_SECRET")
            elif alg in PUBLIC_KEY_ALGORITHMS:
                if public_key is None:
                    raise AuthConfigError(f"JWT algorithm {alg} needs VOXGATE_JWT_PUBLIC_KEY")
            else:
                known = ", ".join(sorted(HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS))
                raise AuthConfigError(
                    f"JWT algorithm {alg!r} is not accepted (VOXGATE_JWT_ALGORITHMS); use {known}"
                )
        if secret is not None and len(secret) < _MIN_SECRET_BYTES:
            log.warning(
                "VOXGATE_JWT_SECRET is shorter than %d bytes; HS256 wants at least that",
                _MIN_SECRET_BYTES,
            )
        self.algorithms = tuple(algorithms)
        self._secret = secret
        self._public_key = public_key
        self.issuer = issuer
        self.audience = audience
        self.tenant_claim = tenant_claim
        self.admin_claim = admin_claim
        self.admin_value = admin_value
        self.leeway_s = leeway_s

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """None when no JWT is configured (no secret, no public key)."""
        secret = settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None
        public = load_public_key(settings.jwt_public_key) if settings.jwt_public_key else None
        if secret is None and public is None:
            if settings.jwt_algorithms:
                raise AuthConfigError(
                    "VOXGATE_JWT_ALGORITHMS is set but neither VOXGATE_JWT_SECRET nor "
                    "VOXGATE_JWT_PUBLIC_KEY is"
                )
            return None
        return cls(
            secret=secret,
            public_key=public,
            algorithms=settings.jwt_algorithms,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            tenant_claim=settings.jwt_tenant_claim,
            admin_claim=settings.jwt_admin_claim,
            admin_value=settings.jwt_admin_value,
            leeway_s=settings.jwt_leeway_s,
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or :class:`TokenRejected` (``token_expired`` when
        only the expiry is wrong)."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(
                f"the bearer token is neither a voxgate API key nor a JWT ({exc})",
                hint="Send Authorization: Bearer vg_... (an API key) or a JWT.",
            ) from None
        if alg not in self.algorithms:
            raise TokenRejected(
                f"JWT algorithm {alg!r} is not accepted",
                hint=f"This gateway accepts {', '.join(self.algorithms)}.",
            )
        key: Any = self._secret if alg in HMAC_ALGORITHMS else self._public_key
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_s,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected(
                "the bearer token has expired", code=errors.TOKEN_EXPIRED, hint="Get a fresh token."
            ) from None
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(
                f"the bearer token failed verification: {exc}",
                hint="Check the token's issuer, audience and signing key against the gateway's "
                "VOXGATE_JWT_* settings.",
            ) from None
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant or len(tenant) > 64:
            raise TokenRejected(
                f"the token has no {self.tenant_claim!r} claim naming a tenant",
                hint=f"Issue tokens with a {self.tenant_claim!r} claim, or set "
                "VOXGATE_JWT_TENANT_CLAIM to the claim that holds the tenant.",
            )
        return claims

    def tenant(self, claims: dict[str, Any]) -> str:
        return str(claims[self.tenant_claim])

    def is_admin(self, claims: dict[str, Any]) -> bool:
        """Whether the admin claim (a dotted path, e.g. ``realm_access.roles``)
        is ``true``, or holds the admin value (a list, or space-separated words
        as in OAuth's ``scope``)."""
        if not self.admin_claim:
            return False
        value: Any = claims
        for part in self.admin_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is True:
            return True
        if isinstance(value, str):
            return self.admin_value in value.split()
        if isinstance(value, list):
            return self.admin_value in value
        return False
