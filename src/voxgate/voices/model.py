"""The voice library's records, as the rest of voxgate sees them (plain
frozen dataclasses, never ORM rows: no lazy loading outside a session)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voxgate.store.models import AuditRow, ConsentRow, VoiceRow

VOICE_ID = re.compile(r"^voice_[0-9a-f]{24}$")
CONSENT_ID = re.compile(r"^cons_[0-9a-f]{24}$")


def new_voice_id() -> str:
    return "voice_" + secrets.token_hex(12)


def new_consent_id() -> str:
    return "cons_" + secrets.token_hex(12)


def is_voice_id(value: str | None) -> bool:
    """Registered voices have ids of this shape; speakers never do."""
    return bool(value) and VOICE_ID.match(value or "") is not None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: the tenant whose data it is, and a name for the audit log."""

    tenant: str
    name: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    tenant: str
    name: str
    created_at: datetime
    updated_at: datetime
    consent: str
    consent_id: str | None
    prompt_text: str | None
    transcript_source: str
    language: str | None
    engine: str | None
    tags: tuple[str, ...]
    sample_digest: str
    sample_key: str
    sample_rate: int
    duration_s: float
    intake: dict[str, Any] = field(default_factory=dict)
    use_count: int = 0
    last_used_at: datetime | None = None

    @classmethod
    def from_row(cls, row: VoiceRow) -> Voice:
        return cls(
            id=row.id,
            tenant=row.tenant,
            name=row.name,
            created_at=row.created_at,
            updated_at=row.updated_at,
            consent=row.consent,
            consent_id=row.consent_id,
            prompt_text=row.prompt_text,
            transcript_source=row.transcript_source,
            language=row.language,
            engine=row.engine,
            tags=tuple(row.tags or ()),
            sample_digest=row.sample_digest,
            sample_key=row.sample_key,
            sample_rate=row.sample_rate,
            duration_s=row.duration_s,
            intake=dict(row.intake or {}),
            use_count=row.use_count,
            last_used_at=row.last_used_at,
        )


@dataclass(frozen=True, slots=True)
class Consent:
    id: str
    tenant: str
    name: str
    language: str
    created_at: datetime
    recording_key: str

    @classmethod
    def from_row(cls, row: ConsentRow) -> Consent:
        return cls(row.id, row.tenant, row.name, row.language, row.created_at, row.recording_key)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    request_id: str | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEvent:
        return cls(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            request_id=row.request_id,
            detail=dict(row.detail or {}),
        )
