"""Who is calling: the result of authentication, read by every later step
(limits, admission fair share, tenant scoping of voices, jobs and keys, logs).

It lives apart from the authenticators so that code which only needs to know
*who* (the pipeline, the voice library) never imports *how* they proved it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voxgate.store.models import DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Limits:
    """A tenant's or key's limits; ``None`` means unlimited (or: the
    configured default applies, see ``serving/limits.py``)."""

    requests_per_minute: int | None = None
    characters_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, or the anonymous one when auth is off.

    ``key_id`` is the public id of the API key (never the secret); ``subject``
    is a JWT's ``sub`` or ``key:<key_id>``; ``client`` is the peer address,
    used to limit unauthenticated callers."""

    tenant: str = DEFAULT_TENANT
    subject: str = "anonymous"
    key_id: str | None = None
    method: str = "none"  # none | api_key | jwt | admin_token
    admin: bool = False
    limits: Limits = field(default_factory=Limits)  # the key's own
    tenant_limits: Limits = field(default_factory=Limits)  # shared by the tenant's keys
    client: str = ""

    @property
    def authenticated(self) -> bool:
        return self.method != "none"

    @property
    def limit_key(self) -> str:
        """What rate limits count against: the key, else the subject, else the address."""
        if self.key_id:
            return f"key:{self.key_id}"
        if self.authenticated:
            return f"sub:{self.tenant}:{self.subject}"
        return f"ip:{self.client}"


def anonymous(client: str = "") -> Principal:
    return Principal(client=client)
