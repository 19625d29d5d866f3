"""Tenants and API keys, kept in the database every gateway shares.

A key reads ``vg_<prefix>_<secret>``. The prefix is a public, unique id part:
authentication finds the key with one indexed lookup by it, and logs and
listings can name the key (as ``key_<prefix>``) without its secret. Only a
SHA-256 digest of the secret is stored. The secret is 32 random bytes, so
a digest needs no salt or slow hash: nobody can guess 256 bits from it, and a
fast hash keeps the per-request check cheap.

There is no cache between a key and its row: every request looks the key up,
so a revocation written by any gateway (or the CLI) holds for the very next
request everywhere. ``last_used_at`` is written in the background, at most
once per key and ``touch_interval_s``, so a busy key does not turn every
request into a database write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from voxgate import errors
from voxgate.errors import VoxgateError
from voxgate.serving.principal import Limits
from voxgate.store.db import Database
from voxgate.store.models import ApiKeyRow, AuditRow, TenantRow, utcnow
from voxgate.voices.model import Actor

log = logging.getLogger(__name__)

KEY_MARK = "vg_"
PREFIX_CHARS = 12
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_BYTES = 32
_HASH_SCHEME = "sha256$"
TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY_SHAPE = re.compile(rf"^{KEY_MARK}([a-z0-9]{{{PREFIX_CHARS}}})_([A-Za-z0-9_-]{{32,128}})$")


class TenantNotFound(VoxgateError):
    default_code = errors.NOT_FOUND


class TenantExists(VoxgateError):
    default_code = errors.TENANT_EXISTS


class KeyNotFound(VoxgateError):
    default_code = errors.NOT_FOUND


# -- the key format ------------------------------------------------------------------


def new_key() -> tuple[str, str]:
    """A fresh ``(prefix, secret)``; the key is ``format_key(prefix, secret)``."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_CHARS))
    return prefix, secrets.token_urlsafe(_SECRET_BYTES)


def format_key(prefix: str, secret: str) -> str:
    return f"{KEY_MARK}{prefix}_{secret}"


def parse_key(token: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else None. The secret may hold
    ``_`` (URL-safe base64); the prefix never does, so the split is unambiguous."""
    match = _KEY_SHAPE.match(token)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str) -> str:
    return _HASH_SCHEME + hashlib.sha256(secret.encode()).hexdigest()


def key_id(prefix: str) -> str:
    """The key's id in the API, logs and CLI: derived from the public prefix,
    so an operator holding a key can tell which id it has."""
    return f"key_{prefix}"


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_MARK)


# -- records -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    limits: Limits
    created_at: datetime

    @classmethod
    def of(cls, row: TenantRow) -> Tenant:
        limits = Limits(row.requests_per_minute, row.characters_per_day)
        return cls(row.id, row.name, limits, row.created_at)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    name: str
    prefix: str
    admin: bool
    limits: Limits
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def of(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            id=row.id,
            tenant=row.tenant,
            name=row.name,
            prefix=row.prefix,
            admin=row.admin,
            limits=Limits(row.requests_per_minute, row.characters_per_day),
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: the only time its secret exists outside the caller."""

    key: ApiKey
    secret: str  # the whole ``vg_<prefix>_<secret>``


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """A presented key whose secret matched (it may still be revoked)."""

    key: ApiKey
    tenant: Tenant


class TenantChanges(TypedDict, total=False):
    """A partial update: only the fields present change; None lifts a limit."""

    name: str
    requests_per_minute: int | None
    characters_per_day: int | None


# -- the store -----------------------------------------------------------------------


class KeyStore:
    def __init__(self, db: Database, *, touch_interval_s: float = 60.0) -> None:
        self.db = db
        self.touch_interval_s = touch_interval_s
        self._touched: dict[str, datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # tenants

    async def create_tenant(
        self,
        tenant_id: str,
        *,
        name: str | None = None,
        limits: Limits | None = None,
        actor: Actor | None = None,
    ) -> Tenant:
        _check_tenant_id(tenant_id)
        limits = limits or Limits()
        row = TenantRow(
            id=tenant_id,
            name=name or tenant_id,
            requests_per_minute=limits.requests_per_minute,
            characters_per_day=limits.characters_per_day,
            created_at=utcnow(),
        )
        try:
            async with self.db.session() as session, session.begin():
                session.add(row)
                await session.flush()
                session.add(_audit(actor, tenant_id, "tenant.created", "tenant", tenant_id))
        except IntegrityError:
            raise TenantExists(
                f"tenant {tenant_id!r} already exists",
                hint="Change its limits with PATCH /v1/admin/tenants/{id}.",
            ) from None
        return Tenant.of(row)

    async def update_tenant(
        self, tenant_id: str, changes: TenantChanges, *, actor: Actor | None = None
    ) -> Tenant:
        async with self.db.session() as session, session.begin():
            row = await session.get(TenantRow, tenant_id)
            if row is None:
                raise _no_tenant(tenant_id)
            if "name" in changes:
                row.name = changes["name"]
            if "requests_per_minute" in changes:
                row.requests_per_minute = changes["requests_per_minute"]
            if "characters_per_day" in changes:
                row.characters_per_day = changes["characters_per_day"]
            detail = dict(changes)
            session.add(_audit(actor, tenant_id, "tenant.updated", "tenant", tenant_id, detail))
        return Tenant.of(row)

    async def tenant(self, tenant_id: str) -> Tenant | None:
        async with self.db.session() as session:
            row = await session.get(TenantRow, tenant_id)
            return Tenant.of(row) if row is not None else None

    async def tenants(self) -> list[Tenant]:
        async with self.db.session() as session:
            rows = await session.scalars(select(TenantRow).order_by(TenantRow.id))
            return [Tenant.of(r) for r in rows.all()]

    # keys

    async def create_key(
        self,
        tenant: str,
        name: str,
        *,
        admin: bool = False,
        limits: Limits | None = None,
        actor: Actor | None = None,
        create_tenant: bool = False,
    ) -> IssuedKey:
        """A new key for ``tenant``. ``create_tenant``: make the tenant if it is
        missing (the CLI's bootstrap), instead of answering 404."""
        limits = limits or Limits()
        if await self.tenant(tenant) is None:
            if not create_tenant:
                raise _no_tenant(tenant)
            with contextlib.suppress(TenantExists):  # created concurrently: just as good
                await self.create_tenant(tenant, actor=actor)
        for _ in range(3):  # a prefix collision is astronomically rare; retry anyway
            prefix, secret = new_key()
            row = ApiKeyRow(
                id=key_id(prefix),
                tenant=tenant,
                name=name,
                prefix=prefix,
                secret_hash=hash_secret(secret),
                admin=admin,
                requests_per_minute=limits.requests_per_minute,
                characters_per_day=limits.characters_per_day,
                created_at=utcnow(),
            )
            try:
                async with self.db.session() as session, session.begin():
                    session.add(row)
                    await session.flush()
                    detail = {"name": name, "admin": admin}
                    session.add(_audit(actor, tenant, "key.created", "api_key", row.id, detail))
            except IntegrityError:
                continue
            return IssuedKey(ApiKey.of(row), format_key(prefix, secret))
        raise VoxgateError("could not allocate a unique key prefix", hint="Try again.")

    async def keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Keys, newest first: one tenant's, or every tenant's."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id)
        if tenant is not None:
            query = query.where(ApiKeyRow.tenant == tenant)
        async with self.db.session() as session:
            return [ApiKey.of(r) for r in (await session.scalars(query)).all()]

    async def revoke(
        self, key: str, *, tenant: str | None = None, actor: Actor | None = None
    ) -> ApiKey:
        """Revoke a key by id. With ``tenant``, only that tenant's keys exist:
        another tenant's id answers exactly as an unknown one does."""
        async with self.db.session() as session, session.begin():
            row = await session.get(ApiKeyRow, key)
            if row is None or (tenant is not None and row.tenant != tenant):
                raise KeyNotFound(
                    f"no API key {key!r}",
                    hint="GET /v1/keys (or GET /v1/admin/keys) lists them.",
                )
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(_audit(actor, row.tenant, "key.revoked", "api_key", row.id))
        return ApiKey.of(row)

    async def active_key_count(self) -> int:
        query = select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))
        async with self.db.session() as session:
            return int((await session.execute(query)).scalar_one())

    async def verify(self, token: str) -> KeyMatch | None:
        """The key ``token`` proves, or None when it is malformed, unknown or its
        secret is wrong. Revoked keys match (so the caller can say so)."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        prefix, secret = parsed
        query = (
            select(ApiKeyRow, TenantRow)
            .join(TenantRow, TenantRow.id == ApiKeyRow.tenant)
            .where(ApiKeyRow.prefix == prefix)
        )
        async with self.db.session() as session:
            found = (await session.execute(query)).first()
        if found is None:
            return None
        row, tenant_row = found
        if not hmac.compare_digest(row.secret_hash.encode(), hash_secret(secret).encode()):
            return None
        match = KeyMatch(ApiKey.of(row), Tenant.of(tenant_row))
        if match.key.active:
            self._touch_later(match.key)
        return match

    def _touch_later(self, key: ApiKey) -> None:
        now = utcnow()
        last = self._touched.get(key.id) or key.last_used_at
        if last is not None and (now - last).total_seconds() < self.touch_interval_s:
            return
        self._touched[key.id] = now
        task = asyncio.create_task(self._touch(key.id, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, key: str, when: datetime) -> None:
        try:
            async with self.db.session() as session, session.begin():
                await session.execute(
                    update(ApiKeyRow).where(ApiKeyRow.id == key).values(last_used_at=when)
                )
        except Exception:  # bookkeeping only: never fail a request over it
            log.warning("could not record last use of %s", key, exc_info=True)

    async def close(self) -> None:
        """Let pending ``last_used_at`` writes finish (they are quick)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _check_tenant_id(tenant_id: str) -> None:
    if not TENANT_ID.match(tenant_id):
        raise VoxgateError(
            f"invalid tenant id {tenant_id!r}",
            code=errors.INVALID_REQUEST,
            hint="1-64 characters: letters, digits, '.', '_', '-', starting with a letter "
            "or digit.",
            param="id",
        )


def _no_tenant(tenant_id: str) -> TenantNotFound:
    return TenantNotFound(
        f"no tenant {tenant_id!r}",
        hint="Create it first: POST /v1/admin/tenants or `voxgate tenants create`.",
    )


def _audit(
    actor: Actor | None,
    tenant: str,
    action: str,
    subject_type: str,
    subject_id: str,
    detail: dict[str, object] | None = None,
) -> AuditRow:
    """An audit event in the tenant's own log (``GET /v1/audit``)."""
    return AuditRow(
        at=utcnow(),
        tenant=tenant,
        actor=actor.name if actor else "cli",
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        request_id=actor.request_id if actor else None,
        detail=detail or {},
    )
