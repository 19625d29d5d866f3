"""Alembic environment: migrations run on the connection voxgate hands over
(``Database.migrate``), or, from the ``alembic`` command line, on
``VOXGATE_DATABASE_URL`` with a synchronous driver."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

from voxgate.store.models import Base

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = os.environ.get("VOXGATE_DATABASE_URL", "")
    url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    if not url:
        raise SystemExit("set VOXGATE_DATABASE_URL to run migrations from the command line")
    with create_engine(url).connect() as sync_connection:
        run(sync_connection)
        sync_connection.commit()
