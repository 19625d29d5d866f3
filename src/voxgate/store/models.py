"""The database schema (SQLAlchemy 2). Changed only through a migration in
``store/migrations`` (Alembic), so SQLite and PostgreSQL keep one schema.

Every row belongs to a tenant: voices, consents and audit events are only
ever read within one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

DEFAULT_TENANT = "default"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware column that reads back aware on every database.

    PostgreSQL returns aware datetimes; SQLite stores no zone and returns
    naive ones. Everything voxgate writes is UTC, so a naive value read back
    is UTC: saying so here, once, keeps ``.timestamp()`` and ISO strings
    right for every table instead of in each reader."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON,
    }


class ConsentRow(Base):
    """A recording of the speaker consenting (OpenAI's voice consents)."""

    __tablename__ = "voice_consents"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(256))
    language: Mapped[str] = mapped_column(String(16))
    recording_key: Mapped[str] = mapped_column(String(200))
    recording_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VoiceRow(Base):
    __tablename__ = "voices"
    __table_args__ = (Index("ix_voices_tenant_created", "tenant", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Consent: the statement as given, or a consent recording.
    consent: Mapped[str] = mapped_column(Text)
    consent_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("voice_consents.id", ondelete="RESTRICT")
    )
    prompt_text: Mapped[str | None] = mapped_column(Text)
    transcript_source: Mapped[str] = mapped_column(String(64))  # given | asr:<kind> | edited | none
    language: Mapped[str | None] = mapped_column(String(16))
    engine: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    sample_digest: Mapped[str] = mapped_column(String(64), index=True)
    sample_key: Mapped[str] = mapped_column(String(200))
    sample_rate: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    intake: Mapped[dict[str, Any]] = mapped_column(JSON)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column()


class AuditRow(Base):
    """Who did what to which voice or consent, and when. Append-only."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_tenant_id", "tenant", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    tenant: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TenantRow(Base):
    """A tenant and its limits (``None``: the gateway's configured default)."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    characters_per_day: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKeyRow(Base):
    """An API key. Only a hash of the secret is stored; the secret is shown once.

    ``prefix`` is the key's public id part (``vg_<prefix>_<secret>``), so a
    key can be found by an index lookup and named in logs without its secret.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant_created", "tenant", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    characters_per_day: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class EngineRow(Base):
    """An engine added at run time through the admin API.

    Engines from configuration are not stored; these are, so that every
    gateway sharing the database builds the same registry. ``config`` is the
    engine's whole configuration but its kind (options, endpoints, timeouts)."""

    __tablename__ = "engines"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | draining
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRow(Base):
    """A long synthesis run in the background, segment by segment.

    The text itself is a blob (up to a million characters); ``spec`` holds
    the synthesis fields. ``lease_owner``/``lease_expires_at`` say which
    runner holds the job; a lease that runs out means that runner died, and
    the job goes back to the queue, to resume after its last finished segment.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
        Index("ix_jobs_state_priority", "state", "priority", "created_at"),
        Index("ix_jobs_tenant_idempotency", "tenant", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    state: Mapped[str] = mapped_column(String(16))  # queued|running|succeeded|failed|cancelled
    priority: Mapped[int] = mapped_column(Integer, default=1)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    characters: Mapped[int] = mapped_column(Integer)
    segments_total: Mapped[int] = mapped_column(Integer)
    segments_done: Mapped[int] = mapped_column(Integer, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    callback_url: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    result_bytes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    webhook_state: Mapped[str | None] = mapped_column(String(16))  # pending|delivered|failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column()
    webhook_last_error: Mapped[str | None] = mapped_column(Text)


class JobSegmentRow(Base):
    """One finished segment of a job: its audio is a blob, its length exact.

    Written once, after the audio blob is in place; the primary key makes a
    second write of the same segment impossible, which is what "resumes
    after its last finished segment, no segment twice" rests on."""

    __tablename__ = "job_segments"

    job_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    samples: Mapped[int] = mapped_column(Integer)
    sample_rate: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
