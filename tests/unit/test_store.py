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
