"""Every API operation as a pure function: arguments in, a :class:`RequestSpec`
out (and parsers for what comes back). The sync and async clients call these,
so both send exactly the same requests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from voxgate.client._core import FileInput, RequestSpec, _NotGiven, compact, read_file
from voxgate.client.types import Job, Page, Voice

T = TypeVar("T")

SPEECH_PATH = "/v1/audio/speech"
SESSION_PATH = "/v1/audio/speech/stream"


def _id(value: str) -> str:
    if not value:
        raise ValueError("an id is required")
    return quote(value, safe="")


def _headers(extra: Mapping[str, str] | None, **more: str | None) -> dict[str, str]:
    out = {k: v for k, v in more.items() if v is not None}
    out.update(extra or {})
    return out


Files = dict[str, tuple[str, bytes, str]]


def _upload(field: str, value: FileInput, default_name: str, content_type: str) -> Files:
    """One multipart file field, read whole (see :func:`read_file`)."""
    name, data = read_file(value, default_name)
    return {field: (name, data, content_type)}


def _json_or_form(
    path: str, fields: dict[str, Any], files: Files | None, headers: dict[str, str]
) -> RequestSpec:
    """A POST of ``fields`` as JSON, or as multipart form fields beside
    ``files``. Routes that take an upload take the same fields either way; a
    file goes as multipart (no base64 overhead, and the upload limit, 20 MiB,
    applies rather than the JSON body limit, 1 MiB)."""
    if files is None:
        return RequestSpec("POST", path, json=fields, headers=headers)
    return RequestSpec("POST", path, data=fields, files=files, headers=headers)


# -- any route ------------------------------------------------------------------------------


def request(
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None,
    json: Any,
    headers: Mapping[str, str] | None,
    idempotent: bool | None,
) -> RequestSpec:
    """A route the SDK does not wrap (``Client.request``). Without an explicit
    ``idempotent``, the methods HTTP defines as idempotent may be retried once
    the request may have arrived."""
    method = method.upper()
    if idempotent is None:
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
    return RequestSpec(
        method,
        path if path.startswith("/") else "/" + path,
        params=params,
        json=json,
        headers=dict(headers or {}),
        idempotent=idempotent,
    )


# -- speech ---------------------------------------------------------------------------------


def speech(
    *,
    input: str,
    voice: str | None,
    model: str | None,
    response_format: str,
    speed: float | None,
    instructions: str | None,
    sample_rate: int | None,
    language: str | None,
    priority: str | None,
    extra_body: Mapping[str, Any] | None,
    extra_headers: Mapping[str, str] | None,
) -> RequestSpec:
    body = compact(
        input=input,
        voice=voice,
        model=model,
        response_format=response_format,
        speed=speed,
        instructions=instructions,
        sample_rate=sample_rate,
        language=language,
        priority=priority,
    )
    body.update(extra_body or {})
    return RequestSpec("POST", SPEECH_PATH, json=body, headers=_headers(extra_headers))


def tts(
    *,
    text: str,
    mode: str | None,
    speaker: str | None,
    instruct: str | None,
    reference_audio: FileInput | None,
    reference_text: str | None,
    engine: str | None,
    language: str | None,
    speed: float | None,
    pitch: float | None,
    volume: float | None,
    format: str,
    sample_rate: int | None,
    seed: int | None,
    stream: bool,
    priority: str | None,
    extra_body: Mapping[str, Any] | None,
    extra_headers: Mapping[str, str] | None,
) -> RequestSpec:
    fields = compact(
        text=text,
        mode=mode,
        speaker_id=speaker,
        instruct=instruct,
        reference_text=reference_text,
        engine=engine,
        language=language,
        speed=speed,
        pitch=pitch,
        volume=volume,
        format=format,
        sample_rate=sample_rate,
        seed=seed,
        stream=stream,
        priority=priority,
    )
    fields.update(extra_body or {})
    files: Files | None = None
    if reference_audio is not None:
        files = _upload(
            "reference_audio", reference_audio, "reference.wav", "application/octet-stream"
        )
    return _json_or_form("/v1/tts", fields, files, _headers(extra_headers))


def session_config(
    *,
    voice: str | None,
    model: str | None,
    engine: str | None,
    mode: str | None,
    instruct: str | None,
    language: str | None,
    speed: float | None,
    format: str,
    sample_rate: int | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    config: dict[str, Any] = {"type": "session.config"}
    config.update(
        compact(
            voice=voice,
            model=model,
            engine=engine,
            mode=mode,
            instruct=instruct,
            language=language,
            speed=speed,
            format=format,
            sample_rate=sample_rate,
        )
    )
    config.update(extra or {})
    return config


def websocket_url(base_url: str, path: str = SESSION_PATH) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :] + path
    return "ws://" + base_url[len("http://") :] + path


# -- voices ---------------------------------------------------------------------------------


def voice_register(
    *,
    audio_sample: FileInput,
    name: str,
    consent: str,
    prompt_text: str | None,
    language: str | None,
    engine: str | None,
    tags: Sequence[str] | None,
) -> RequestSpec:
    files = _upload("audio_sample", audio_sample, "prompt.wav", "application/octet-stream")
    fields = compact(
        name=name,
        consent=consent,
        prompt_text=prompt_text,
        language=language,
        engine=engine,
        tags=list(tags) if tags else None,
    )
    return RequestSpec(
        "POST",
        "/v1/audio/voices",
        data=fields,
        files=files,
        # A retry after the request may have arrived could register the voice
        # twice; only refusals (429/503) and failed connections are retried.
        idempotent=False,
    )


def voice_list(
    *,
    limit: int,
    after: str | None,
    type: str | None,
    engine: str | None,
    language: str | None,
) -> RequestSpec:
    params = compact(limit=limit, after=after, type=type, engine=engine, language=language)
    return RequestSpec("GET", "/v1/audio/voices", params=params)


def voice_get(voice_id: str) -> RequestSpec:
    return RequestSpec("GET", f"/v1/audio/voices/{_id(voice_id)}")


def voice_update(
    voice_id: str,
    *,
    name: str | _NotGiven,
    prompt_text: str | _NotGiven,
    language: str | _NotGiven,
    tags: Sequence[str] | _NotGiven,
) -> RequestSpec:
    body: dict[str, Any] = {}
    if not isinstance(name, _NotGiven):
        body["name"] = name
    if not isinstance(prompt_text, _NotGiven):
        body["prompt_text"] = prompt_text  # "" clears the transcript
    if not isinstance(language, _NotGiven):
        body["language"] = language
    if not isinstance(tags, _NotGiven):
        body["tags"] = list(tags)
    return RequestSpec("PATCH", f"/v1/audio/voices/{_id(voice_id)}", json=body)


def voice_delete(voice_id: str) -> RequestSpec:
    return RequestSpec("DELETE", f"/v1/audio/voices/{_id(voice_id)}")


def voice_sample(voice_id: str) -> RequestSpec:
    return RequestSpec("GET", f"/v1/audio/voices/{_id(voice_id)}/sample")


def voice(response: httpx.Response) -> Voice:
    return Voice.from_json(response.json())


def voice_page(response: httpx.Response) -> Page[Voice]:
    return page(response, Voice.from_json)


def voice_deleted(response: httpx.Response) -> bool:
    return bool(response.json().get("deleted"))


# -- jobs -----------------------------------------------------------------------------------


def job_submit(
    *,
    text: str | None,
    file: FileInput | None,
    voice: str | None,
    engine: str | None,
    mode: str | None,
    instruct: str | None,
    language: str | None,
    speed: float | None,
    pitch: float | None,
    volume: float | None,
    format: str,
    sample_rate: int | None,
    seed: int | None,
    subtitles: Sequence[str] | str | None,
    priority: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
    extra_body: Mapping[str, Any] | None,
) -> RequestSpec:
    if (text is None) == (file is None):
        raise ValueError("submit text or file (one of them)")
    # Generated when absent, and the same for every retry of this call: the
    # server answers a repeated key with the first job, so a submit retried
    # after a lost answer never starts a second job.
    key = idempotency_key or f"vxsdk-{uuid.uuid4().hex}"
    subs = [subtitles] if isinstance(subtitles, str) else (list(subtitles) if subtitles else None)
    fields = compact(
        voice=voice,
        engine=engine,
        mode=mode,
        instruct=instruct,
        language=language,
        speed=speed,
        pitch=pitch,
        volume=volume,
        format=format,
        sample_rate=sample_rate,
        seed=seed,
        subtitles=subs,
        priority=priority,
        callback_url=callback_url,
        idempotency_key=key,
    )
    fields.update(extra_body or {})
    headers = {"Idempotency-Key": key}
    if file is None:
        return _json_or_form("/v1/jobs", {"text": text, **fields}, None, headers)
    files = _upload("file", file, "text.txt", "text/plain")
    return _json_or_form("/v1/jobs", fields, files, headers)


def job_get(job_id: str) -> RequestSpec:
    return RequestSpec("GET", f"/v1/jobs/{_id(job_id)}")


def job_list(*, limit: int, after: str | None, state: str | None) -> RequestSpec:
    return RequestSpec("GET", "/v1/jobs", params=compact(limit=limit, after=after, state=state))


def job_cancel(job_id: str) -> RequestSpec:
    return RequestSpec("DELETE", f"/v1/jobs/{_id(job_id)}")


def job_events(job_id: str, timeout: httpx.Timeout) -> RequestSpec:
    return RequestSpec(
        "GET",
        f"/v1/jobs/{_id(job_id)}/events",
        headers={"Accept": "text/event-stream"},
        timeout=timeout,
    )


def job_audio(job_id: str, offset: int, etag: str | None) -> RequestSpec:
    headers: dict[str, str] = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if etag:
            headers["If-Range"] = etag
    return RequestSpec(
        "GET", f"/v1/jobs/{_id(job_id)}/audio", headers=headers, ok_statuses=frozenset({416})
    )


def job_subtitles(job_id: str, kind: str) -> RequestSpec:
    if kind not in ("srt", "vtt"):
        raise ValueError("subtitles are 'srt' or 'vtt'")
    return RequestSpec("GET", f"/v1/jobs/{_id(job_id)}/subtitles.{kind}")


def job_page(response: httpx.Response) -> Page[Job]:
    return page(response, Job.from_json)


def job(response: httpx.Response) -> Job:
    return Job.from_json(response.json())


# -- health ---------------------------------------------------------------------------------


def healthz() -> RequestSpec:
    return RequestSpec("GET", "/healthz", retry=False)


def readyz() -> RequestSpec:
    return RequestSpec("GET", "/readyz", retry=False, ok_statuses=frozenset({503}))


def health(response: httpx.Response) -> dict[str, Any]:
    return dict(response.json())


# -- parsing --------------------------------------------------------------------------------


def page(response: httpx.Response, make: Callable[[Mapping[str, Any]], T]) -> Page[T]:
    body = response.json()
    return Page(
        data=[make(item) for item in body.get("data", [])],
        has_more=bool(body.get("has_more")),
        first_id=body.get("first_id"),
        last_id=body.get("last_id"),
    )


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of ``bytes a-b/n`` or ``bytes */n``."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes ") :].partition("/")
    first = int(span.split("-", 1)[0]) if span and span != "*" else None
    return first, (int(total) if total.isdigit() else None)
