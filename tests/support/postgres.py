"""The machine's real PostgreSQL for tests of the distributed mode: a fresh
database per test, dropped afterwards (scripts/ensure-test-deps.sh starts the
server when it is down)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

PG_HOST = os.environ.get("VOXGATE_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("VOXGATE_TEST_PG_USER", "postgres")


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty database."""
    name = f"voxgate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
