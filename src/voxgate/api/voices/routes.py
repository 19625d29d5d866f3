"""Voice library routes. Thin (DESIGN rule 1): parse the wire format, call the
:class:`~voxgate.voices.library.VoiceLibrary`, render its records."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import Response

from voxgate import errors
from voxgate.api import deps
from voxgate.api.errors import error_responses
from voxgate.api.voices.protocol import (
    AuditList,
    AuditObject,
    ConsentDeleted,
    ConsentList,
    ConsentObject,
    VoiceDeleted,
    VoiceList,
    VoiceObject,
    VoicePatch,
)
from voxgate.errors import RequestError
from voxgate.pipeline import Pipeline
from voxgate.voices.library import VoiceLibrary, VoiceNotFound
from voxgate.voices.model import Actor, is_voice_id

router = APIRouter(tags=["Voices"], responses=error_responses(400, 404))

VoiceId = Path(min_length=1, max_length=256, description="A registered voice id or a speaker id.")


def _tags(values: list[str]) -> list[str]:
    """Tags as repeated fields, or comma-separated in one."""
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


@router.post(
    "/v1/audio/voices",
    response_model=VoiceObject,
    responses=error_responses(400, 404, 413),
    summary="Register a voice from a prompt recording",
)
async def create_voice(
    audio_sample: UploadFile = File(
        description="3-15 s of the voice: wav, mp3, ogg, flac, m4a, webm."
    ),
    name: str = Form("", max_length=256),
    consent: str = Form("", max_length=4000, description="The speaker's consent, or a cons_ id."),
    type: str = Form("audio_sample", description="OpenAI's field; only audio_sample."),
    prompt_text: str | None = Form(None, max_length=2000, description="What the prompt says."),
    language: str | None = Form(None, max_length=16),
    engine: str | None = Form(None, max_length=256, description="The engine it is meant for."),
    tags: list[str] = Form([], description="Repeated, or comma-separated."),
    actor: Actor = Depends(deps.actor),
    library: VoiceLibrary = Depends(deps.library),
) -> VoiceObject:
    """Registers a voice once; its id then works wherever a voice is accepted.
    The answer carries the intake report and notes (for example, that the
    transcript came from speech recognition and should be checked)."""
    if type != "audio_sample":
        raise RequestError(
            f"type {type!r} is not supported",
            code=errors.INVALID_REQUEST,
            hint="Register voices from recordings: type audio_sample.",
            param="type",
        )
    data = await audio_sample.read()
    result = await library.register(
        data,
        actor=actor,
        name=name,
        consent=consent,
        prompt_text=prompt_text,
        language=language,
        engine=engine,
        tags=_tags(tags),
    )
    voice = VoiceObject.registered(result.voice)
    voice.intake = result.report.to_dict()
    voice.notes = list(result.notes)
    return voice


@router.get("/v1/audio/voices", response_model=VoiceList)
async def list_voices(
    engine: str | None = Query(None, description="Only this engine's built-in speakers."),
    language: str | None = Query(None, description="Only voices whose language starts with this."),
    type: str | None = Query(
        None, pattern="^(builtin|audio_sample)$", description="builtin or audio_sample."
    ),
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, description="Cursor: the last id of the previous page."),
    tenant: str = Depends(deps.tenant),
    pipeline: Pipeline = Depends(deps.pipeline),
    library: VoiceLibrary = Depends(deps.library),
) -> VoiceList:
    """Built-in speakers of every engine, then registered voices (oldest first)."""
    builtins: list[VoiceObject] = []
    if type in (None, "builtin"):
        engines = [pipeline.registry.get(engine)] if engine else list(pipeline.registry)
        builtins = [
            VoiceObject.builtin(s, e.name)
            for e in engines
            for s in e.speakers()
            if language is None or s.language.lower().startswith(language.lower())
        ]
    cursor = None
    if after is not None:
        ids = [v.id for v in builtins]
        if after in ids:
            builtins = builtins[ids.index(after) + 1 :]
        elif is_voice_id(after) and (cursor := await library.find(after, tenant)):
            builtins = []
        else:
            raise RequestError(
                f"cursor {after!r} is not a voice id in this listing",
                code=errors.INVALID_REQUEST,
                hint="Pass the last_id of the previous page.",
                param="after",
            )
    page = builtins[:limit]
    more = len(builtins) > limit
    if type in (None, "audio_sample") and not more:
        voices, more = await library.page(tenant, limit=limit - len(page), after=cursor)
        page += [
            VoiceObject.registered(v)
            for v in voices
            if language is None or (v.language or "").lower().startswith(language.lower())
        ]
    return VoiceList(
        data=page,
        has_more=more,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )


async def _registered(voice_id: str, tenant: str, library: VoiceLibrary) -> VoiceObject | None:
    if not is_voice_id(voice_id):
        return None
    return VoiceObject.registered(await library.get(voice_id, tenant))


@router.get("/v1/audio/voices/{voice_id}", response_model=VoiceObject)
async def get_voice(
    voice_id: str = VoiceId,
    tenant: str = Depends(deps.tenant),
    pipeline: Pipeline = Depends(deps.pipeline),
    library: VoiceLibrary = Depends(deps.library),
) -> VoiceObject:
    """A registered voice, or a built-in speaker by id."""
    found = await _registered(voice_id, tenant, library)
    if found is not None:
        return found
    for engine in pipeline.registry:
        for speaker in engine.speakers():
            if speaker.id == voice_id:
                return VoiceObject.builtin(speaker, engine.name)
    raise VoiceNotFound(f"no voice {voice_id!r}", hint="GET /v1/audio/voices lists them.")


@router.get(
    "/v1/audio/voices/{voice_id}/sample",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def get_voice_sample(
    voice_id: str = VoiceId,
    tenant: str = Depends(deps.tenant),
    library: VoiceLibrary = Depends(deps.library),
) -> Response:
    """The normalized prompt (trimmed, mono, peak normalized), as stored."""
    if not is_voice_id(voice_id):
        raise VoiceNotFound(
            f"no registered voice {voice_id!r}", hint="Only registered voices have samples."
        )
    voice = await library.get(voice_id, tenant)
    return Response(await library.sample(voice), media_type="audio/wav")


@router.patch("/v1/audio/voices/{voice_id}", response_model=VoiceObject)
async def update_voice(
    body: VoicePatch,
    voice_id: str = VoiceId,
    actor: Actor = Depends(deps.actor),
    library: VoiceLibrary = Depends(deps.library),
) -> VoiceObject:
    """Change the name, transcript, language or tags. A new transcript drops
    the features engines kept for the old one."""
    if not is_voice_id(voice_id):
        raise VoiceNotFound(
            f"no registered voice {voice_id!r}", hint="Built-in speakers cannot change."
        )
    voice = await library.update(
        voice_id,
        actor,
        name=body.name,
        prompt_text=body.prompt_text,
        language=body.language,
        tags=body.tags,
    )
    return VoiceObject.registered(voice)


@router.delete("/v1/audio/voices/{voice_id}", response_model=VoiceDeleted)
async def delete_voice(
    voice_id: str = VoiceId,
    actor: Actor = Depends(deps.actor),
    library: VoiceLibrary = Depends(deps.library),
) -> VoiceDeleted:
    """Deletes the voice, its prompt audio (unless another voice has the same)
    and every feature an engine kept for it."""
    if not is_voice_id(voice_id):
        raise VoiceNotFound(
            f"no registered voice {voice_id!r}", hint="Built-in speakers cannot be deleted."
        )
    await library.delete(voice_id, actor)
    return VoiceDeleted(id=voice_id)


# -- consent recordings ---------------------------------------------------------


@router.post(
    "/v1/audio/voice_consents",
    response_model=ConsentObject,
    responses=error_responses(400, 413),
    summary="Store a recording of the speaker consenting",
)
async def create_consent(
    recording: UploadFile = File(description="The speaker reading a consent statement."),
    name: str = Form("", max_length=256),
    language: str = Form("", max_length=16),
    actor: Actor = Depends(deps.actor),
    library: VoiceLibrary = Depends(deps.library),
) -> ConsentObject:
    consent = await library.create_consent(
        await recording.read(), actor=actor, name=name, language=language
    )
    return ConsentObject.of(consent)


@router.get("/v1/audio/voice_consents", response_model=ConsentList)
async def list_consents(
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, max_length=64),
    tenant: str = Depends(deps.tenant),
    library: VoiceLibrary = Depends(deps.library),
) -> ConsentList:
    found = await library.consents(tenant, limit=limit + 1, after=after)
    return ConsentList(
        data=[ConsentObject.of(c) for c in found[:limit]], has_more=len(found) > limit
    )


@router.get("/v1/audio/voice_consents/{consent_id}", response_model=ConsentObject)
async def get_consent(
    consent_id: str = Path(min_length=1, max_length=64),
    tenant: str = Depends(deps.tenant),
    library: VoiceLibrary = Depends(deps.library),
) -> ConsentObject:
    return ConsentObject.of(await library.consent(consent_id, tenant))


@router.delete(
    "/v1/audio/voice_consents/{consent_id}",
    response_model=ConsentDeleted,
    responses=error_responses(404, 409),
)
async def delete_consent(
    consent_id: str = Path(min_length=1, max_length=64),
    actor: Actor = Depends(deps.actor),
    library: VoiceLibrary = Depends(deps.library),
) -> ConsentDeleted:
    await library.delete_consent(consent_id, actor)
    return ConsentDeleted(id=consent_id)


# -- audit log --------------------------------------------------------------------


@router.get("/v1/audit", response_model=AuditList, tags=["Audit"])
async def audit_log(
    subject_id: str | None = Query(None, max_length=64, description="A voice or consent id."),
    action: str | None = Query(None, max_length=64, description="voice.created, voice.used..."),
    limit: int = Query(100, ge=1, le=1000),
    after: int | None = Query(None, ge=0, description="Cursor: the last id of the previous page."),
    tenant: str = Depends(deps.tenant),
    library: VoiceLibrary = Depends(deps.library),
) -> AuditList:
    """Who created, changed, used (counted per few seconds) and deleted which
    voice or consent recording, oldest first."""
    events = await library.audit(
        tenant, subject_id=subject_id, action=action, limit=limit + 1, after=after
    )
    page = events[:limit]
    return AuditList(
        data=[AuditObject.of(e) for e in page],
        has_more=len(events) > limit,
        last_id=page[-1].id if page else None,
    )
