"""``voxgate keys ...`` and ``voxgate tenants ...``: tenants and API keys,
straight against the configured database.

They work without a running server on purpose: the operator creates the
first (admin) key before starting a gateway that, with authentication on,
refuses to start while nobody could call it. The schema is migrated first, as
the server would, so this also works on a fresh data directory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from voxgate.cli_errors import fail
from voxgate.config import load_settings
from voxgate.errors import VoxgateError
from voxgate.serving.keys import ApiKey, KeyStore, Tenant, TenantChanges
from voxgate.serving.principal import Limits
from voxgate.store.db import Database

keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
tenants_app = typer.Typer(no_args_is_help=True, help="Tenants: create, list, change limits.")
err = Console(stderr=True)
out = Console()

T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", exists=True)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RpmOpt = Annotated[
    int | None,
    typer.Option("--rpm", min=1, max=2**31 - 1, help="Requests per minute (default: unlimited)."),
]
CharsOpt = Annotated[
    int | None,
    typer.Option(
        "--chars-per-day", min=1, max=2**31 - 1, help="Characters per day (default: unlimited)."
    ),
]


def _run(config: Path | None, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    """Run ``work`` against the configured database, migrated to the newest schema."""

    async def main() -> T:
        settings = load_settings(config)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        try:
            await db.migrate()
            keys = KeyStore(db)
            return await work(keys)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except VoxgateError as exc:
        fail(exc.code, exc.message, exc.hint, exc.status)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _limit(value: int | None) -> str:
    return "" if value is None else str(value)


def _key_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "admin": key.admin,
        "requests_per_minute": key.limits.requests_per_minute,
        "characters_per_day": key.limits.characters_per_day,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _tenant_dict(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "requests_per_minute": tenant.limits.requests_per_minute,
        "characters_per_day": tenant.limits.characters_per_day,
        "created_at": tenant.created_at.isoformat(),
    }


# -- keys ------------------------------------------------------------------------------


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="The tenant (created if missing).")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    admin: Annotated[bool, typer.Option("--admin", help="May use the admin API.")] = False,
    rpm: RpmOpt = None,
    chars_per_day: CharsOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API key. Prints the key (only now, never again) on standard
    output, so KEY=$(voxgate keys create ...) captures it."""
    limits = Limits(rpm, chars_per_day)
    issued = _run(
        config,
        lambda keys: keys.create_key(tenant, name, admin=admin, limits=limits, create_tenant=True),
    )
    kind = "admin key" if admin else "key"
    err.print(
        f"created {kind} {escape(issued.key.id)} for tenant {escape(tenant)}; "
        "store it now, it is not shown again:",
        soft_wrap=True,
    )
    print(issued.secret)


@keys_app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List keys (never their secrets), newest first."""
    found = _run(config, lambda keys: keys.keys(tenant))
    if as_json:
        out.print_json(json.dumps([_key_dict(k) for k in found]))
        return
    table = Table("id", "tenant", "name", "admin", "rpm", "chars/day", "created", "last used")
    table.add_column("revoked")
    for k in found:
        table.add_row(
            k.id,
            escape(k.tenant),
            escape(k.name),
            "yes" if k.admin else "",
            _limit(k.limits.requests_per_minute),
            _limit(k.limits.characters_per_day),
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
    out.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key; the next request with it is refused, on every gateway."""
    key = _run(config, lambda keys: keys.revoke(key_id))
    out.print(f"revoked {escape(key.id)} (tenant {escape(key.tenant)}, {escape(key.name)})")


# -- tenants ---------------------------------------------------------------------------


@tenants_app.command("create")
def create_tenant(
    tenant_id: Annotated[str, typer.Argument(help="The tenant's id.")],
    name: Annotated[str | None, typer.Option(help="A display name.")] = None,
    rpm: RpmOpt = None,
    chars_per_day: CharsOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create a tenant with its limits."""
    limits = Limits(rpm, chars_per_day)
    tenant = _run(config, lambda keys: keys.create_tenant(tenant_id, name=name, limits=limits))
    out.print(f"created tenant {escape(tenant.id)}")


@tenants_app.command("update")
def update_tenant(
    tenant_id: Annotated[str, typer.Argument(help="The tenant's id.")],
    name: Annotated[str | None, typer.Option(help="A display name.")] = None,
    rpm: Annotated[
        int | None,
        typer.Option("--rpm", min=0, max=2**31 - 1, help="Requests per minute; 0: the default."),
    ] = None,
    chars_per_day: Annotated[
        int | None,
        typer.Option(
            "--chars-per-day", min=0, max=2**31 - 1, help="Characters per day; 0: the default."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Change a tenant's name or limits (only the options given change)."""
    changes: TenantChanges = {}
    if name is not None:
        changes["name"] = name
    if rpm is not None:
        changes["requests_per_minute"] = rpm or None
    if chars_per_day is not None:
        changes["characters_per_day"] = chars_per_day or None
    tenant = _run(config, lambda keys: keys.update_tenant(tenant_id, changes))
    out.print_json(json.dumps(_tenant_dict(tenant)))


@tenants_app.command("list")
def list_tenants(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List tenants and their limits."""
    found = _run(config, lambda keys: keys.tenants())
    if as_json:
        out.print_json(json.dumps([_tenant_dict(t) for t in found]))
        return
    table = Table("id", "name", "rpm", "chars/day", "created")
    for t in found:
        table.add_row(
            escape(t.id),
            escape(t.name),
            _limit(t.limits.requests_per_minute),
            _limit(t.limits.characters_per_day),
            _when(t.created_at),
        )
    out.print(table)
