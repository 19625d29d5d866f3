"""Wire types of the tenant and API key routes (``api/keys.py``).

Times are Unix seconds, as in the voice library. A key's secret appears in
exactly one answer, :class:`KeyCreated`; no other type has a field for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voxgate.serving.keys import ApiKey, IssuedKey, Tenant

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

MAX_LIMIT = 2**31 - 1  # the columns are 32-bit integers (PostgreSQL's INTEGER)
RequestsPerMinute = Field(
    None, ge=1, le=MAX_LIMIT, description="Requests per minute; null: the default."
)
CharactersPerDay = Field(
    None, ge=1, le=MAX_LIMIT, description="Characters per day; null: the default."
)


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(pattern=TENANT_PATTERN, description="The tenant's id, used in keys and JWTs.")
    name: str | None = Field(None, max_length=256)
    requests_per_minute: int | None = RequestsPerMinute
    characters_per_day: int | None = CharactersPerDay


class TenantPatch(BaseModel):
    """Only the fields sent change; ``null`` lifts a limit (the default applies)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, min_length=1, max_length=256)
    requests_per_minute: int | None = RequestsPerMinute
    characters_per_day: int | None = CharactersPerDay


class TenantObject(BaseModel):
    id: str
    object: Literal["tenant"] = "tenant"
    name: str
    requests_per_minute: int | None
    characters_per_day: int | None
    created_at: int

    @classmethod
    def of(cls, tenant: Tenant) -> TenantObject:
        return cls(
            id=tenant.id,
            name=tenant.name,
            requests_per_minute=tenant.limits.requests_per_minute,
            characters_per_day=tenant.limits.characters_per_day,
            created_at=int(tenant.created_at.timestamp()),
        )


class TenantList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TenantObject]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tenant: str = Field(pattern=TENANT_PATTERN)
    name: str = Field(min_length=1, max_length=256, description="What the key is for.")
    admin: bool = Field(False, description="Whether the key may use the admin API.")
    requests_per_minute: int | None = RequestsPerMinute
    characters_per_day: int | None = CharactersPerDay


class KeyObject(BaseModel):
    id: str = Field(description="key_<prefix>: the key itself reads vg_<prefix>_<secret>.")
    object: Literal["api_key"] = "api_key"
    tenant: str
    name: str
    admin: bool
    requests_per_minute: int | None
    characters_per_day: int | None
    created_at: int
    last_used_at: int | None = Field(description="Updated at most every VOXGATE_API_KEY_TOUCH_S.")
    revoked_at: int | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyObject:
        return cls(**_key_fields(key))


class KeyCreated(KeyObject):
    key: str = Field(description="The API key. Shown only in this answer: store it now.")

    @classmethod
    def issued(cls, issued: IssuedKey) -> KeyCreated:
        return cls(**_key_fields(issued.key), key=issued.secret)


def _key_fields(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "admin": key.admin,
        "requests_per_minute": key.limits.requests_per_minute,
        "characters_per_day": key.limits.characters_per_day,
        "created_at": int(key.created_at.timestamp()),
        "last_used_at": _unix(key.last_used_at),
        "revoked_at": _unix(key.revoked_at),
    }


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyObject]
