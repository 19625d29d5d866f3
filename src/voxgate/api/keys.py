"""Tenants and API keys over HTTP. Thin (DESIGN rule 1): parse, call the
:class:`~voxgate.serving.keys.KeyStore`, render.

``/v1/admin/...`` is for administrators and acts on any tenant. ``/v1/keys``
is a tenant's own view: its keys, and revoking one of them (say, a key that
leaked). Another tenant's key id answers 404 there, exactly like an unknown
id, so ids cannot be probed across tenants.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, status

from voxgate.api import deps
from voxgate.api.errors import error_responses
from voxgate.api.keys_protocol import (
    TENANT_PATTERN,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyObject,
    TenantCreate,
    TenantList,
    TenantObject,
    TenantPatch,
)
from voxgate.serving.keys import KeyStore, TenantChanges
from voxgate.serving.principal import Limits, Principal
from voxgate.voices.model import Actor

admin_router = APIRouter(
    tags=["Admin"],
    dependencies=[Depends(deps.admin)],
    responses=error_responses(400, 401, 403, 404),
)
router = APIRouter(tags=["Keys"], responses=error_responses(400, 401, 404))

KeyId = Path(min_length=1, max_length=40, description="The key's id (key_...).")
TenantId = Path(pattern=TENANT_PATTERN)


# -- tenants (admin) ------------------------------------------------------------------


@admin_router.post(
    "/v1/admin/tenants",
    response_model=TenantObject,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
async def create_tenant(
    body: TenantCreate,
    actor: Actor = Depends(deps.actor),
    keys: KeyStore = Depends(deps.keys),
) -> TenantObject:
    """A tenant with its own voices, keys and limits."""
    limits = Limits(body.requests_per_minute, body.characters_per_day)
    tenant = await keys.create_tenant(body.id, name=body.name, limits=limits, actor=actor)
    return TenantObject.of(tenant)


@admin_router.get("/v1/admin/tenants", response_model=TenantList)
async def list_tenants(keys: KeyStore = Depends(deps.keys)) -> TenantList:
    return TenantList(data=[TenantObject.of(t) for t in await keys.tenants()])


@admin_router.patch("/v1/admin/tenants/{tenant_id}", response_model=TenantObject)
async def update_tenant(
    body: TenantPatch,
    tenant_id: str = TenantId,
    actor: Actor = Depends(deps.actor),
    keys: KeyStore = Depends(deps.keys),
) -> TenantObject:
    """Change a tenant's name or limits; the next request already sees them."""
    changes: TenantChanges = {}
    sent = body.model_fields_set
    if "name" in sent and body.name is not None:
        changes["name"] = body.name
    if "requests_per_minute" in sent:
        changes["requests_per_minute"] = body.requests_per_minute
    if "characters_per_day" in sent:
        changes["characters_per_day"] = body.characters_per_day
    return TenantObject.of(await keys.update_tenant(tenant_id, changes, actor=actor))


# -- keys (admin) ---------------------------------------------------------------------


@admin_router.post(
    "/v1/admin/keys",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (the answer is the only time its secret is shown)",
)
async def create_key(
    body: KeyCreate,
    actor: Actor = Depends(deps.actor),
    keys: KeyStore = Depends(deps.keys),
) -> KeyCreated:
    limits = Limits(body.requests_per_minute, body.characters_per_day)
    issued = await keys.create_key(
        body.tenant, body.name, admin=body.admin, limits=limits, actor=actor
    )
    return KeyCreated.issued(issued)


@admin_router.get("/v1/admin/keys", response_model=KeyList)
async def list_keys(
    tenant: str | None = Query(None, pattern=TENANT_PATTERN, description="Only this tenant's."),
    keys: KeyStore = Depends(deps.keys),
) -> KeyList:
    """Keys, newest first, revoked ones included; never their secrets."""
    return KeyList(data=[KeyObject.of(k) for k in await keys.keys(tenant)])


@admin_router.delete("/v1/admin/keys/{key_id}", response_model=KeyObject)
async def revoke_key(
    key_id: str = KeyId,
    actor: Actor = Depends(deps.actor),
    keys: KeyStore = Depends(deps.keys),
) -> KeyObject:
    """Revoke a key: the very next request with it gets 401, on every gateway."""
    return KeyObject.of(await keys.revoke(key_id, actor=actor))


# -- a tenant's own keys --------------------------------------------------------------


@router.get("/v1/keys", response_model=KeyList)
async def list_own_keys(
    who: Principal = Depends(deps.principal),
    keys: KeyStore = Depends(deps.keys),
) -> KeyList:
    """The caller's tenant's keys, newest first; never their secrets."""
    return KeyList(data=[KeyObject.of(k) for k in await keys.keys(who.tenant)])


@router.delete("/v1/keys/{key_id}", response_model=KeyObject)
async def revoke_own_key(
    key_id: str = KeyId,
    actor: Actor = Depends(deps.actor),
    keys: KeyStore = Depends(deps.keys),
) -> KeyObject:
    """Revoke one of the caller's tenant's keys (another tenant's: 404)."""
    return KeyObject.of(await keys.revoke(key_id, tenant=actor.tenant, actor=actor))
