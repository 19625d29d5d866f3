"""The voice library: voices registered once from a prompt, reused everywhere.

Registering takes a 3-15 s recording and the speaker's consent, runs the
prompt intake (:mod:`voxgate.audio.intake`), transcribes the prompt when no
transcript was given (:mod:`voxgate.asr`), stores the normalized prompt once
per content (identical prompts share one file) and the voice's record, and
asks the engines that can to prepare its features in the background, so the
first request with the voice does not pay for them.

Use counts are kept in memory and written every few seconds (one update and
one ``voice.used`` audit event per voice and interval): a database write per
synthesis would cost more than the bookkeeping is worth. Creation, changes and
deletion are written to the audit log in the same transaction as the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import and_, delete, func, or_, select, update

from voxgate import errors
from voxgate.audio.intake import Intake, IntakeReport, intake
from voxgate.audio.intake import digest as sample_digest
from voxgate.audio.prompt import PromptAudio, decode_audio
from voxgate.config import Settings
from voxgate.engines.base import Engine
from voxgate.engines.registry import EngineRegistry
from voxgate.errors import RequestError, VoxgateError
from voxgate.store.blobs import BlobStore
from voxgate.store.db import Database
from voxgate.store.models import AuditRow, ConsentRow, VoiceRow, utcnow
from voxgate.voices.model import (
    CONSENT_ID,
    Actor,
    AuditEvent,
    Consent,
    Voice,
    new_consent_id,
    new_voice_id,
)

if TYPE_CHECKING:
    from voxgate.asr.base import Transcriber

log = logging.getLogger(__name__)

PROMPT_CACHE = 64  # decoded prompts kept in memory (a 15 s prompt at 48 kHz: 2.9 MB)
MAX_NAME = 256
MAX_TAGS = 32


class VoiceNotFound(VoxgateError):
    default_code = errors.NOT_FOUND


@dataclass(frozen=True, slots=True)
class Registration:
    voice: Voice
    report: IntakeReport
    notes: tuple[str, ...]  # what the caller should know (no transcript, features...)


@dataclass(slots=True)
class _Usage:
    count: int = 0
    last: datetime = field(default_factory=utcnow)


class DerivedAudio(Protocol):
    """Audio made with registered voices and kept elsewhere (the result cache,
    serving/results.py): it must go when its voice changes or is deleted."""

    async def purge_voice(self, voice_id: str, *, deleted: bool = False) -> int: ...


def sample_key(digest: str) -> str:
    return f"voices/samples/{digest[:2]}/{digest}.wav"


class VoiceLibrary:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        settings: Settings,
        registry: EngineRegistry,
        transcriber: Transcriber | None = None,
        cache: DerivedAudio | None = None,
    ) -> None:
        self.db = db
        self.cache = cache
        self.blobs = blobs
        self.settings = settings
        self.registry = registry
        self.transcriber = transcriber
        self._usage: dict[tuple[str, str], _Usage] = {}
        self._prompts: OrderedDict[tuple[str, datetime], PromptAudio] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self.transcriber is not None:
            try:
                await self.transcriber.start()
            except VoxgateError as exc:  # voices register without transcripts meanwhile
                kind = self.transcriber.kind
                log.error("speech recognizer %s did not start: %s", kind, exc.message)
        self._flusher = asyncio.create_task(self._flush_loop(), name="voice-usage")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush_usage()
        if self.transcriber is not None:
            await self.transcriber.close()

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- registration ------------------------------------------------------------

    async def register(
        self,
        data: bytes,
        *,
        actor: Actor,
        name: str,
        consent: str | None,
        prompt_text: str | None = None,
        language: str | None = None,
        engine: str | None = None,
        tags: Iterable[str] = (),
    ) -> Registration:
        consent_text, consent_id = await self._consent_for(consent, actor)
        if engine:
            self.registry.get(engine)  # model_not_found now, not at first use
        name = (name or "").strip()[:MAX_NAME] or "voice"
        taken = await asyncio.to_thread(
            intake,
            data,
            min_seconds=self.settings.voice_min_seconds,
            max_seconds=self.settings.voice_max_seconds,
        )
        notes: list[str] = []
        text, source = (prompt_text or "").strip() or None, "given"
        if text is None:
            text, source, note = await self._transcribe(taken, language)
            if note:
                notes.append(note)
        key = sample_key(taken.digest)
        if not await asyncio.to_thread(self.blobs.exists, key):
            await asyncio.to_thread(self.blobs.put, key, taken.prompt.wav())
        now = utcnow()
        row = VoiceRow(
            id=new_voice_id(),
            tenant=actor.tenant,
            name=name,
            created_at=now,
            updated_at=now,
            consent=consent_text,
            consent_id=consent_id,
            prompt_text=text,
            transcript_source=source,
            language=language,
            engine=engine,
            tags=_clean_tags(tags),
            sample_digest=taken.digest,
            sample_key=key,
            sample_rate=taken.prompt.sample_rate,
            duration_s=round(taken.prompt.duration, 3),
            intake=taken.report.to_dict(),
            use_count=0,
        )
        detail = {
            "name": name,
            "consent": consent_text,
            "consent_id": consent_id,
            "sample_digest": taken.digest,
            "transcript_source": source,
        }
        async with self.db.session() as session, session.begin():
            session.add(row)
            session.add(_audit(actor, "voice.created", "voice", row.id, detail))
        voice = Voice.from_row(row)
        prompt = self._remember(voice, taken.prompt)
        prepared = self._engines_for(voice)
        for target in prepared:
            self._background(self._prepare(target, prompt))
        if prepared:
            notes.append(
                "features are being prepared for "
                + ", ".join(e.name for e in prepared)
                + " (the first request does not wait for an extraction)"
            )
        return Registration(voice, taken.report, tuple(notes))

    async def _consent_for(self, consent: str | None, actor: Actor) -> tuple[str, str | None]:
        statement = (consent or "").strip()
        if not statement:
            raise RequestError(
                "a voice needs the speaker's consent",
                code=errors.CONSENT_REQUIRED,
                hint="Send consent: the speaker's statement that they agree to this voice being "
                "made (who, for what), or the id of a consent recording (cons_...).",
                param="consent",
            )
        if not CONSENT_ID.match(statement):
            return statement, None
        async with self.db.session() as session:
            row = await session.get(ConsentRow, statement)
        if row is None or row.tenant != actor.tenant:
            raise RequestError(
                f"no consent recording {statement!r}",
                code=errors.CONSENT_NOT_FOUND,
                hint="Record one with POST /v1/audio/voice_consents; GET lists them.",
                param="consent",
            )
        return f"consent recording {row.id} ({row.name}, {row.language})", row.id

    async def _transcribe(
        self, taken: Intake, language: str | None
    ) -> tuple[str | None, str, str | None]:
        """The prompt's words from the recognizer, or why there are none."""
        from voxgate.asr.base import TranscriptionUnavailable

        if self.transcriber is None:
            return (
                None,
                "none",
                (
                    "no prompt_text and no speech recognizer configured: zero_shot needs a "
                    "transcript (PATCH the voice's prompt_text); cross_lingual works without"
                ),
            )
        try:
            result = await self.transcriber.transcribe(
                taken.prompt.samples, taken.prompt.sample_rate, language
            )
        except TranscriptionUnavailable as exc:
            return (
                None,
                "none",
                (
                    f"no transcript ({self.transcriber.kind}: {exc}); zero_shot needs one "
                    "(PATCH the voice's prompt_text); cross_lingual works without"
                ),
            )
        return (
            result.text,
            f"asr:{self.transcriber.kind}",
            (
                f"transcribed by {self.transcriber.kind}; check it (PATCH prompt_text): "
                "a wrong transcript makes zero_shot read the wrong words"
            ),
        )

    def _engines_for(self, voice: Voice) -> list[Engine]:
        if voice.engine:
            return [self.registry.get(voice.engine)]
        return [e for e in self.registry if e.capabilities.prompt_modes]

    async def _prepare(self, engine: Engine, prompt: PromptAudio) -> None:
        try:
            if await engine.prepare_voice(prompt):
                log.info("engine %s prepared voice %s", engine.name, prompt.voice_id)
        except Exception:  # the first request will prepare it instead
            log.warning(
                "engine %s could not prepare voice %s", engine.name, prompt.voice_id, exc_info=True
            )

    # -- reading -------------------------------------------------------------------

    async def find(self, voice_id: str, tenant: str) -> Voice | None:
        async with self.db.session() as session:
            row = await session.get(VoiceRow, voice_id)
        if row is None or row.tenant != tenant:
            return None  # another tenant's voice does not exist for this one
        return Voice.from_row(row)

    async def get(self, voice_id: str, tenant: str) -> Voice:
        voice = await self.find(voice_id, tenant)
        if voice is None:
            raise VoiceNotFound(
                f"no voice {voice_id!r}", hint="GET /v1/audio/voices lists the voices."
            )
        return voice

    async def page(
        self, tenant: str, *, limit: int, after: Voice | None = None
    ) -> tuple[list[Voice], bool]:
        """Voices oldest first, ``limit`` of them after ``after``; and whether more exist."""
        query = select(VoiceRow).where(VoiceRow.tenant == tenant)
        if after is not None:
            query = query.where(
                or_(
                    VoiceRow.created_at > after.created_at,
                    and_(VoiceRow.created_at == after.created_at, VoiceRow.id > after.id),
                )
            )
        query = query.order_by(VoiceRow.created_at, VoiceRow.id).limit(limit + 1)
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        return [Voice.from_row(r) for r in rows[:limit]], len(rows) > limit

    async def sample(self, voice: Voice) -> bytes:
        """The normalized prompt as stored (16-bit WAV)."""
        return await asyncio.to_thread(self.blobs.get, voice.sample_key)

    async def prompt(self, voice: Voice) -> PromptAudio:
        """The voice as an engine takes it: samples, transcript and id."""
        key = (voice.id, voice.updated_at)
        cached = self._prompts.get(key)
        if cached is not None:
            self._prompts.move_to_end(key)
            return cached
        data = await self.sample(voice)
        samples, rate = await asyncio.to_thread(decode_audio, data)
        return self._remember(voice, PromptAudio(samples, rate))

    def _remember(self, voice: Voice, audio: PromptAudio) -> PromptAudio:
        prompt = PromptAudio(audio.samples, audio.sample_rate, voice.prompt_text, voice.id)
        self._prompts[(voice.id, voice.updated_at)] = prompt
        while len(self._prompts) > PROMPT_CACHE:
            self._prompts.popitem(last=False)
        return prompt

    # -- changes ---------------------------------------------------------------------

    async def update(
        self,
        voice_id: str,
        actor: Actor,
        *,
        name: str | None = None,
        prompt_text: str | None = None,
        language: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> Voice:
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name.strip()[:MAX_NAME] or "voice"
        if prompt_text is not None:
            changes["prompt_text"] = prompt_text.strip() or None
            changes["transcript_source"] = "edited" if prompt_text.strip() else "none"
        if language is not None:
            changes["language"] = language or None
        if tags is not None:
            changes["tags"] = _clean_tags(tags)
        async with self.db.session() as session, session.begin():
            row = await session.get(VoiceRow, voice_id, with_for_update=True)
            if row is None or row.tenant != actor.tenant:
                raise VoiceNotFound(
                    f"no voice {voice_id!r}", hint="GET /v1/audio/voices lists them."
                )
            if not changes:
                return Voice.from_row(row)
            before = {k: getattr(row, k) for k in changes}
            for k, v in changes.items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            detail = {"before": before, "after": changes}
            session.add(_audit(actor, "voice.updated", "voice", voice_id, detail))
            voice = Voice.from_row(row)
        if "prompt_text" in changes:  # features condition on the transcript
            await self._forget_everywhere(voice_id)
        if self.cache is not None:  # results made with the voice as it was
            await self.cache.purge_voice(voice_id)
        return voice

    async def delete(self, voice_id: str, actor: Actor) -> None:
        async with self.db.session() as session, session.begin():
            row = await session.get(VoiceRow, voice_id, with_for_update=True)
            if row is None or row.tenant != actor.tenant:
                raise VoiceNotFound(
                    f"no voice {voice_id!r}", hint="GET /v1/audio/voices lists them."
                )
            digest, key, name = row.sample_digest, row.sample_key, row.name
            await session.delete(row)
            others = await session.scalar(
                select(func.count())
                .select_from(VoiceRow)
                .where(VoiceRow.sample_digest == digest, VoiceRow.id != voice_id)
            )
            session.add(_audit(actor, "voice.deleted", "voice", voice_id, {"name": name}))
        self._usage.pop((actor.tenant, voice_id), None)
        if not others:  # identical prompts share one file: the last voice removes it
            await asyncio.to_thread(self.blobs.delete, key)
        await self._forget_everywhere(voice_id)
        if self.cache is not None:  # no audio made with a deleted voice is served again
            await self.cache.purge_voice(voice_id, deleted=True)

    async def _forget_everywhere(self, voice_id: str) -> None:
        for key in [k for k in self._prompts if k[0] == voice_id]:
            del self._prompts[key]
        for engine in self.registry:
            try:
                await engine.forget_voice(voice_id)
            except Exception:
                log.warning("engine %s could not forget %s", engine.name, voice_id, exc_info=True)
            if engine.features is not None:
                await asyncio.to_thread(engine.features.delete_voice, voice_id)

    # -- use counts ------------------------------------------------------------------

    def record_use(self, voice: Voice) -> None:
        usage = self._usage.setdefault((voice.tenant, voice.id), _Usage())
        usage.count += 1
        usage.last = utcnow()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.voice_usage_flush_s)
            try:
                await self.flush_usage()
            except Exception:
                log.exception("could not record voice usage; will retry")

    async def flush_usage(self) -> None:
        """Write counted uses: one update and one audit event per voice."""
        if not self._usage:
            return
        pending, self._usage = self._usage, {}
        try:
            async with self.db.session() as session, session.begin():
                for (tenant, voice_id), usage in pending.items():
                    count = VoiceRow.use_count + usage.count
                    result = await session.execute(
                        update(VoiceRow)
                        .where(VoiceRow.id == voice_id)
                        .values(use_count=count, last_used_at=usage.last)
                    )
                    if result.rowcount:  # type: ignore[attr-defined]
                        detail = {"count": usage.count}
                        used = _audit(
                            Actor(tenant, "synthesis"), "voice.used", "voice", voice_id, detail
                        )
                        session.add(used)
        except Exception:
            for key, usage in pending.items():  # keep the counts for the next try
                self._usage.setdefault(key, _Usage()).count += usage.count
            raise

    # -- consent recordings --------------------------------------------------------

    async def create_consent(
        self, data: bytes, *, actor: Actor, name: str, language: str
    ) -> Consent:
        samples, rate = await asyncio.to_thread(decode_audio, data, param="recording")
        if len(samples) < rate:  # a consent statement takes seconds to say
            raise RequestError(
                f"the recording is {len(samples) / rate:.1f} s; a consent statement takes longer",
                code=errors.PROMPT_TOO_SHORT,
                hint="Record the speaker reading the consent statement in full.",
                param="recording",
            )
        prompt = PromptAudio(samples, rate)
        digest = await asyncio.to_thread(sample_digest, samples, rate)
        key = f"consents/{digest[:2]}/{digest}.wav"
        await asyncio.to_thread(self.blobs.put, key, prompt.wav())
        row = ConsentRow(
            id=new_consent_id(),
            tenant=actor.tenant,
            name=(name or "").strip()[:MAX_NAME] or "consent",
            language=(language or "").strip()[:16] or "und",
            recording_key=key,
            recording_digest=digest,
            created_at=utcnow(),
        )
        async with self.db.session() as session, session.begin():
            session.add(row)
            session.add(_audit(actor, "consent.created", "consent", row.id, {"name": row.name}))
        return Consent.from_row(row)

    async def consents(self, tenant: str, *, limit: int, after: str | None) -> list[Consent]:
        query = select(ConsentRow).where(ConsentRow.tenant == tenant)
        if after:
            query = query.where(ConsentRow.id > after)
        query = query.order_by(ConsentRow.id).limit(limit)
        async with self.db.session() as session:
            return [Consent.from_row(r) for r in (await session.scalars(query)).all()]

    async def consent(self, consent_id: str, tenant: str) -> Consent:
        async with self.db.session() as session:
            row = await session.get(ConsentRow, consent_id)
        if row is None or row.tenant != tenant:
            raise _no_consent(consent_id)
        return Consent.from_row(row)

    async def consent_recording(self, consent: Consent) -> bytes:
        return await asyncio.to_thread(self.blobs.get, consent.recording_key)

    async def delete_consent(self, consent_id: str, actor: Actor) -> None:
        async with self.db.session() as session, session.begin():
            row = await session.get(ConsentRow, consent_id, with_for_update=True)
            if row is None or row.tenant != actor.tenant:
                raise _no_consent(consent_id)
            query = select(VoiceRow.id).where(VoiceRow.consent_id == consent_id).limit(5)
            users = (await session.scalars(query)).all()
            if users:
                raise VoxgateError(
                    f"voices registered with consent {consent_id} still exist: {', '.join(users)}",
                    code=errors.CONSENT_IN_USE,
                    hint="Delete those voices first.",
                )
            key = row.recording_key
            await session.delete(row)
            session.add(_audit(actor, "consent.deleted", "consent", consent_id, {}))
        await asyncio.to_thread(self.blobs.delete, key)

    # -- audit -------------------------------------------------------------------------

    async def audit(
        self,
        tenant: str,
        *,
        subject_id: str | None = None,
        action: str | None = None,
        limit: int = 100,
        after: int | None = None,
    ) -> list[AuditEvent]:
        query = select(AuditRow).where(AuditRow.tenant == tenant)
        if subject_id:
            query = query.where(AuditRow.subject_id == subject_id)
        if action:
            query = query.where(AuditRow.action == action)
        if after is not None:
            query = query.where(AuditRow.id > after)
        query = query.order_by(AuditRow.id).limit(limit)
        async with self.db.session() as session:
            return [AuditEvent.from_row(r) for r in (await session.scalars(query)).all()]

    async def purge_audit_before(self, tenant: str, when: datetime) -> int:
        """Retention, for operators: drop audit events older than ``when``."""
        async with self.db.session() as session, session.begin():
            result = await session.execute(
                delete(AuditRow).where(AuditRow.tenant == tenant, AuditRow.at < when)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _audit(
    actor: Actor, action: str, subject_type: str, subject_id: str, detail: dict[str, Any]
) -> AuditRow:
    return AuditRow(
        at=utcnow(),
        tenant=actor.tenant,
        actor=actor.name,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        request_id=actor.request_id,
        detail=detail,
    )


def _no_consent(consent_id: str) -> VoiceNotFound:
    return VoiceNotFound(
        f"no consent recording {consent_id!r}", hint="GET /v1/audio/voice_consents lists them."
    )


def _clean_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        tag = str(tag).strip()[:64]
        if tag and tag not in out:
            out.append(tag)
    return out[:MAX_TAGS]
