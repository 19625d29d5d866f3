"""The failures of authentication and authorization, apart from the code that
raises them so that the JWT verifier, the authenticator and the routes share
them without importing one another.

A 401 carries ``WWW-Authenticate: Bearer`` (RFC 6750) on every surface that
renders :meth:`VoxgateError.headers`.
"""

from __future__ import annotations

from voxgate import errors
from voxgate.errors import VoxgateError

REALM = "voxgate"


class Unauthenticated(VoxgateError):
    """No usable credential (401)."""

    default_code = errors.AUTH_REQUIRED

    def headers(self) -> dict[str, str]:
        challenge = f'Bearer realm="{REALM}"'
        if self.code != errors.AUTH_REQUIRED:  # RFC 6750 3.1: a credential was sent
            challenge += ', error="invalid_token"'
        return {**super().headers(), "WWW-Authenticate": challenge}


class TokenRejected(Unauthenticated):
    """A bearer JWT failed verification (401)."""

    default_code = errors.INVALID_TOKEN


class Forbidden(VoxgateError):
    default_code = errors.FORBIDDEN


def admin_only(what: str) -> Forbidden:
    return Forbidden(
        f"{what} is for administrators",
        hint="Use an admin API key (voxgate keys create --admin), VOXGATE_ADMIN_TOKEN, "
        "or a JWT with the admin claim (VOXGATE_JWT_ADMIN_CLAIM).",
    )
