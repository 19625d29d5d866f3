"""State that outlives a request: the database (voices, consents, the audit
log) and blob storage (prompt audio, cached voice features).

Embedded: SQLite and a local folder under the data directory. Distributed:
PostgreSQL and a shared store. Same schema (Alembic migrations), same
interfaces (DESIGN rule 7)."""
