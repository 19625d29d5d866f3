"""Wire types of the voice library. A voice is OpenAI's ``audio.voice``
(``id``, ``object``, ``name``, ``created_at``, ``type``) plus voxgate's
fields; built-in speakers are listed in the same shape with ``type:
"builtin"``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from voxgate.engines.base import Speaker
from voxgate.voices.model import AuditEvent, Consent, Voice


class VoiceObject(BaseModel):
    id: str
    object: Literal["audio.voice"] = "audio.voice"
    name: str
    created_at: int = Field(description="Unix seconds (0 for built-in speakers).")
    type: Literal["builtin", "audio_sample"] = Field(
        description="builtin: an engine's own speaker; audio_sample: registered from a prompt."
    )
    engine: str | None = Field(None, description="The engine it belongs to, or is meant for.")
    language: str | None = None
    # built-in speakers
    gender: str | None = None
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    # registered voices
    updated_at: int | None = None
    consent: str | None = Field(None, description="The speaker's consent, as given.")
    prompt_text: str | None = Field(None, description="The prompt's transcript.")
    transcript_source: str | None = Field(None, description="given, asr:<engine>, edited, none.")
    tags: list[str] = Field(default_factory=list)
    duration_s: float | None = Field(None, description="Seconds of speech in the prompt.")
    sample_rate: int | None = None
    sample_url: str | None = Field(None, description="The normalized prompt, as 16-bit WAV.")
    use_count: int | None = None
    last_used_at: int | None = None
    intake: dict[str, Any] | None = Field(None, description="What the prompt intake found.")
    notes: list[str] | None = Field(None, description="On registration: what to know.")

    @classmethod
    def builtin(cls, speaker: Speaker, engine: str) -> VoiceObject:
        return cls(
            id=speaker.id,
            name=speaker.name,
            created_at=0,
            type="builtin",
            engine=engine,
            language=speaker.language,
            gender=speaker.gender,
            aliases=list(speaker.aliases),
            description=speaker.description,
        )

    @classmethod
    def registered(cls, voice: Voice) -> VoiceObject:
        return cls(
            id=voice.id,
            name=voice.name,
            created_at=int(voice.created_at.timestamp()),
            type="audio_sample",
            engine=voice.engine,
            language=voice.language,
            updated_at=int(voice.updated_at.timestamp()),
            consent=voice.consent,
            prompt_text=voice.prompt_text,
            transcript_source=voice.transcript_source,
            tags=list(voice.tags),
            duration_s=voice.duration_s,
            sample_rate=voice.sample_rate,
            sample_url=f"/v1/audio/voices/{voice.id}/sample",
            use_count=voice.use_count,
            last_used_at=int(voice.last_used_at.timestamp()) if voice.last_used_at else None,
            intake=voice.intake,
        )


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceObject]
    has_more: bool
    first_id: str | None
    last_id: str | None


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: bool = True


class VoicePatch(BaseModel):
    """Fields that may change after registration (the prompt audio may not:
    register a new voice instead)."""

    name: str | None = Field(None, max_length=256)
    prompt_text: str | None = Field(None, max_length=2000, description="An empty string clears it.")
    language: str | None = Field(None, max_length=16)
    tags: list[str] | None = Field(None, max_length=32)


class ConsentObject(BaseModel):
    id: str
    object: Literal["audio.voice_consent"] = "audio.voice_consent"
    name: str
    language: str
    created_at: int

    @classmethod
    def of(cls, consent: Consent) -> ConsentObject:
        return cls(
            id=consent.id,
            name=consent.name,
            language=consent.language,
            created_at=int(consent.created_at.timestamp()),
        )


class ConsentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConsentObject]
    has_more: bool


class ConsentDeleted(BaseModel):
    id: str
    object: Literal["audio.voice_consent"] = "audio.voice_consent"
    deleted: bool = True


class AuditObject(BaseModel):
    id: int
    object: Literal["audit.event"] = "audit.event"
    at: str = Field(description="ISO 8601, UTC.")
    actor: str
    action: str = Field(description="voice.created, voice.updated, voice.used, voice.deleted, ...")
    subject_type: str
    subject_id: str
    request_id: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditObject:
        return cls(
            id=event.id,
            at=event.at.isoformat(),
            actor=event.actor,
            action=event.action,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            request_id=event.request_id,
            detail=event.detail,
        )


class AuditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditObject]
    has_more: bool
    last_id: int | None
