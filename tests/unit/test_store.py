"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from voxgate.store.db import Database
from voxgate.store.models import Base


def _diff(url: str) -> list[object]:
    async def run() -> list[object]:
        db = Database(url)
        try:
            await db.migrate()

            def compare(connection: Connection) -> list[object]:
                return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

            async with db.engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await db.close()

    return asyncio.run(run())


def test_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    assert _diff(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}") == []


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    assert _diff(url) == []
    assert _diff(url) == []


def test_postgresql_schema_matches_the_models(postgres_url: str) -> None:
    """The same migrations give PostgreSQL the same schema (the distributed mode)."""
    assert _diff(postgres_url) == []


def test_times_read_back_aware_in_utc_on_sqlite(tmp_path: Path) -> None:
    """SQLite keeps no zone; every table still reads back UTC-aware times, so
    ``.timestamp()`` is right whatever the host's zone."""
    from datetime import UTC, datetime

    from voxgate.store.models import TenantRow

    written = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    async def run() -> datetime:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}")
        try:
            await db.migrate()
            async with db.session() as session, session.begin():
                session.add(TenantRow(id="t1", name="t1", created_at=written))
            async with db.session() as session:
                row = await session.get(TenantRow, "t1")
                assert row is not None
                return row.created_at
        finally:
            await db.close()

    read = asyncio.run(run())
    assert read.tzinfo is not None
    assert read == written
