"""``openai-upstream``: any server that speaks OpenAI's speech API as an engine.

Many speech servers answer ``POST /v1/audio/speech`` (OpenAI itself, another
voxgate, Kokoro-FastAPI, LocalAI, vllm-omni...). Putting one behind voxgate
gives it what voxgate adds around every engine (auth, limits, admission,
formats and streaming surfaces, failover) without a dedicated adapter.

How the engine talks to the upstream, and why:

* ``url`` is the API *base*, exactly what the OpenAI SDK calls ``base_url``
  (``https://api.openai.com/v1``, ``http://other-voxgate:8080/v1``): speech is
  ``{url}/audio/speech``, the health probe ``{url}/models``. Taking the base
  rather than the full route lets one setting work for every route and keeps
  the value copy-pasteable between the SDK and voxgate.
* It always asks for ``response_format: "pcm"``, headerless s16le mono at
  24 kHz, streamed as it is produced: nothing to decode, first audio as early
  as the upstream sends it, and voxgate encodes whatever the caller wanted.
* It always sends ``speed: 1.0`` and declares no speed range, so voxgate's
  pipeline stretches tempo itself: OpenAI's newer models ignore ``speed`` and
  peers implement it differently (or not at all), while voxgate's
  pitch-preserving stretch sounds the same whatever engine is behind it.
* It makes one upstream call per voxgate segment, so long text streams
  segment by segment, the first segment is short (fast first audio), and the
  retry logic of :mod:`voxgate.engines.remote` applies per segment: retried
  only before its first byte, never after.
* ``instructions`` is sent when the upstream honours it (option
  ``instructions``; by default only for ``gpt-*`` models such as
  gpt-4o-mini-tts, since tts-1 and most peers do not). Only then is mode
  ``instruct`` offered. voxgate's own OpenAI route passes ``instructions``
  with mode ``sft``; it is forwarded then too, or reported as
  ``instructions_ignored`` when the upstream would not honour it.

Errors: OpenAI error bodies (``{"error": {"message", "type", "code"}}``, which
voxgate itself also sends) become the failure message, so the caller sees the
upstream's reason. What the caller gets:

* 429 and 5xx: retried before the first byte (``retries``), honouring
  ``Retry-After`` (and OpenAI's ``retry-after-ms``), then ``upstream_error``
  (502). Not ``engine_failed``: voxgate did not fail, the server behind it did;
* 4xx: not retried, ``upstream_error`` with the upstream's message; 401 and
  403 with a hint to check the key;
* a 200 that is not raw PCM (the upstream ignored ``response_format``):
  ``upstream_error``, not retried;
* nobody listening: ``engine_unavailable`` (503); no answer within
  ``read_timeout_s``: ``engine_timeout`` (504), also when the stream stalls
  after some audio (what the pipeline's watchdog says of a local engine that
  stalls); any other failure after audio: ``upstream_error``, never retried.

The API key comes from ``api_key`` or, better, ``api_key_env`` (the name of an
environment variable), so that keys stay out of configuration files. It is
only ever put in the ``Authorization`` header: never logged, never shown in
``GET /v1/engines``, never in an error message (upstream error messages are
cleaned of anything shaped like a key: OpenAI's 401 quotes the key it got).
Redirects are not followed, so the key is never sent to a host other than
``url``'s.

    [engines.openai]
    kind = "openai-upstream"
    options = { url = "https://api.openai.com/v1", api_key_env = "OPENAI_API_KEY",
                model = "gpt-4o-mini-tts" }
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import httpx

from voxgate import __version__, errors
from voxgate.audio.pcm import Samples, from_s16le
from voxgate.engines.base import Capabilities, EngineRequest, Mode, Notice, Speaker
from voxgate.engines.remote import (
    Health,
    PcmReassembler,
    PooledHttp,
    RemoteEngine,
    RemoteFailure,
    RemoteOptions,
    classify_httpx,
    classify_status,
)
from voxgate.errors import EngineError, RequestError, UpstreamError
from voxgate.text.split import Segment

# OpenAI's voices (https://platform.openai.com/docs/guides/text-to-speech).
# tts-1 and tts-1-hd know only the first nine.
TTS1_VOICES = ("alloy", "ash", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer")
OPENAI_VOICES = (*TTS1_VOICES, "ballad", "verse", "marin", "cedar")
# The languages OpenAI's speech models speak (those of Whisper that they
# document as supported), as primary language subtags.
OPENAI_LANGUAGES = (
    "en", "af", "ar", "hy", "az", "be", "bs", "bg", "ca", "zh", "hr", "cs", "da", "nl",
    "et", "fi", "fr", "gl", "de", "el", "he", "hi", "hu", "is", "id", "it", "ja", "kn",
    "kk", "ko", "lv", "lt", "mk", "ms", "mr", "mi", "ne", "no", "fa", "pl", "pt", "ro",
    "ru", "sr", "sk", "sl", "es", "sw", "sv", "tl", "ta", "th", "tr", "uk", "ur", "vi",
    "cy",
)  # fmt: skip
# Media types that mean the upstream did not send raw PCM (it ignored
# response_format, or sent an error with status 200).
_NOT_PCM = ("audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave", "audio/ogg",
            "audio/opus", "audio/aac", "audio/flac", "application/json")  # fmt: skip
_KEY_HINT = (
    "The upstream refused the API key: check the engine's api_key_env (or api_key) "
    "option and the key's permissions for this model."
)
_OPTION_NAMES = (
    "api_key", "api_key_env", "model", "voices", "languages", "sample_rate",
    "instructions", "extra_body", "headers",
)  # fmt: skip


# OpenAI's 401 body quotes the key it was given (partly masked); peers may quote
# it whole. Messages from upstream reach voxgate's callers and logs, so
# anything shaped like a key is cut out of them.
_KEY_LIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}")


def redact(text: str, key: str | None = None) -> str:
    """``text`` without the configured key or anything shaped like an API key."""
    if key:
        text = text.replace(key, "***")
    return _KEY_LIKE.sub(r"\1-***", text)


class _KeyRejected(RemoteFailure):
    """401 or 403 from the upstream: the key is missing, wrong or not allowed."""


def error_message(body: str) -> str:
    """The reason in an error body: OpenAI's ``{"error": {"message", "type",
    "code"}}`` (voxgate adds ``hint``), FastAPI's ``{"detail": ...}``, or the
    body's text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        label = err.get("code") or err.get("type")
        text = str(err.get("message") or "").strip() or body
        if err.get("hint"):
            text = f"{text} ({err['hint']})"
        return f"{label}: {text}" if label else text
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    if isinstance(data, dict) and "detail" in data:
        return json.dumps(data["detail"], ensure_ascii=False)
    return body


def failure_for(
    status: int, body: str, headers: httpx.Headers | None = None, key: str | None = None
) -> RemoteFailure:
    """An error answer as a retry decision, with the upstream's own reason
    (redacted of anything like a key)."""
    failure = classify_status(status, redact(error_message(body), key), headers)
    if status in (401, 403):
        return _KeyRejected(
            f"{failure} (the API key was {'refused' if status == 401 else 'not allowed'})",
            kind="rejected",
            retryable=False,
        )
    return failure


def _resolve_key(name: str, api_key: str | None, api_key_env: str | None) -> str | None:
    if api_key and api_key_env:
        raise ValueError(f"engine {name!r}: give api_key or api_key_env, not both")
    if api_key_env:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ValueError(
                f"engine {name!r}: environment variable {api_key_env} (api_key_env) is "
                "not set or empty"
            )
        return key
    return api_key or None


class OpenAIUpstreamEngine(RemoteEngine):
    kind = "openai-upstream"
    probe_name = "OpenAI-compatible server"

    def __init__(
        self,
        name: str = "openai-upstream",
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        model: str = "tts-1",
        voices: Iterable[str] | None = None,
        languages: Iterable[str] | None = None,
        sample_rate: int = 24000,
        instructions: bool | None = None,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        remote = RemoteOptions.take(options)
        if options:
            raise TypeError(
                f"engine {name!r} ({self.kind}): unknown options {sorted(options)}; known: "
                f"url, {', '.join(_OPTION_NAMES)}, "
                f"{', '.join(f for f in RemoteOptions.__dataclass_fields__ if f != 'url')}"
            )
        super().__init__(name, remote)
        if not model:
            raise ValueError(f"engine {name!r}: model must not be empty")
        if sample_rate < 8000:
            raise ValueError(f"engine {name!r}: sample_rate {sample_rate} is too low")
        self.model = model
        self.sample_rate = sample_rate
        # None: decide by model. OpenAI honours instructions on gpt-* speech
        # models (gpt-4o-mini-tts) and not on tts-1/tts-1-hd; peers mostly ignore it.
        self.instructions = model.startswith("gpt-") if instructions is None else instructions
        self.extra_body = dict(extra_body or {})
        clash = {"model", "input", "voice", "response_format", "speed", "instructions"}
        if clash & set(self.extra_body):
            raise ValueError(
                f"engine {name!r}: extra_body may not set {sorted(clash & set(self.extra_body))}"
            )
        self._extra_headers = dict(headers or {})
        self._key = _resolve_key(name, api_key, api_key_env)
        names = list(voices) if voices is not None else self._default_voices(model)
        if not names:
            raise ValueError(f"engine {name!r}: voices must name at least one voice")
        langs = [lang.strip().lower() for lang in (languages or OPENAI_LANGUAGES)]
        self._languages = frozenset(_primary(lang) for lang in langs)
        self._speakers = tuple(
            Speaker(
                id=voice,
                name=voice,
                language=langs[0],
                description=f"{model} voice {voice!r} of the upstream server",
            )
            for voice in names
        )
        modes = {Mode.SFT, Mode.INSTRUCT} if self.instructions else {Mode.SFT}
        self._capabilities = Capabilities(
            modes=frozenset(modes),
            languages=frozenset(langs),
            sample_rate=sample_rate,
            streaming=True,
            max_concurrency=remote.concurrency,
            speed_range=None,  # voxgate stretches tempo itself (module docstring)
        )
        headers = {"User-Agent": f"voxgate/{__version__}", **self._extra_headers}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        # Redirects are not followed: the key must never reach another host.
        self.http = PooledHttp(self.options, headers=headers)
        self._probe_note: str | None = None

    @staticmethod
    def _default_voices(model: str) -> list[str]:
        return list(TTS1_VOICES if model.startswith("tts-1") else OPENAI_VOICES)

    # -- Engine ---------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def speakers(self) -> Sequence[Speaker]:
        return self._speakers

    def check(self, request: EngineRequest) -> list[Notice]:
        if request.language and _primary(request.language) not in self._languages:
            raise RequestError(
                f"engine {self.name!r} does not speak language {request.language!r}",
                code=errors.LANGUAGE_UNSUPPORTED,
                hint="Supported: " + ", ".join(sorted(self._languages)),
                param="language",
            )
        if request.instruct and request.instruct.strip() and not self.instructions:
            return [
                Notice(
                    "instructions_ignored",
                    f"the upstream model {self.model} of engine {self.name} does not take "
                    "instructions; they were not sent",
                )
            ]
        return []

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model": self.model,
            "instructions": self.instructions,
            "api_key": "set" if self._key else "none",  # never the key itself
        }

    # -- RemoteEngine ---------------------------------------------------------

    async def check_health(self) -> Health:
        self._probe_note = None
        health = await super().check_health()
        if health.ok and self._probe_note:
            health.error = self._probe_note  # up, but with something to fix
        return health

    async def _probe(self) -> None:
        # Any answer below 500 means a server is there and serving. 401/403 is
        # worth telling the operator: every synthesis would be refused too.
        response = await self.http_client.get("/models")
        status = response.status_code
        if status >= 500:
            reason = redact(error_message(response.text), self._key)[:300]
            raise RuntimeError(f"HTTP {status}: {reason}")
        if status in (401, 403):
            self._probe_note = f"HTTP {status} from /models: the API key is refused or missing"
        elif status == 404 and not self.options.url.rstrip("/").endswith("/v1"):
            self._probe_note = (
                "HTTP 404 from /models: url should be the API base, usually ending in /v1"
            )

    def body(self, request: EngineRequest, segment: Segment) -> dict[str, Any]:
        """The JSON body of the upstream call for one segment."""
        speaker = request.speaker or self._speakers[0]
        body: dict[str, Any] = {
            **self.extra_body,
            "model": self.model,
            "input": segment.plain,
            "voice": speaker.id,
            "response_format": "pcm",
            "speed": 1.0,
        }
        if self.instructions and request.instruct and request.instruct.strip():
            body["instructions"] = request.instruct.strip()
        return body

    async def _call(self, request: EngineRequest, segment: Segment) -> AsyncIterator[Samples]:
        body = self.body(request, segment)
        if not body["input"].strip():
            return  # nothing to speak in this segment (markup only)
        pcm = PcmReassembler()
        try:
            async with self.http_client.stream("POST", "/audio/speech", json=body) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    raise failure_for(response.status_code, text, response.headers, self._key)
                media = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if media in _NOT_PCM or media.startswith("text/"):
                    text = (await response.aread()).decode("utf-8", "replace")[:200]
                    raise RemoteFailure(
                        f"expected raw PCM (response_format pcm), got {media}: "
                        f"{redact(error_message(text), self._key)}",
                        kind="protocol",
                        retryable=False,
                    )
                async for data in response.aiter_raw():
                    whole = pcm.feed(data)
                    if whole:
                        yield from_s16le(whole)
        except httpx.HTTPError as exc:
            raise classify_httpx(exc) from None
        if pcm.leftover():
            raise RemoteFailure(
                "the stream ended in the middle of a sample", kind="protocol", retryable=True
            )

    def _engine_error(self, failure: RemoteFailure, attempts: int, received: bool) -> EngineError:
        error = super()._engine_error(failure, attempts, received)
        if isinstance(failure, _KeyRejected):
            return UpstreamError(error.message, hint=_KEY_HINT)
        return error


def _primary(language: str) -> str:
    """``en-GB`` -> ``en``, ``zh_Hans`` -> ``zh``."""
    return language.strip().lower().replace("_", "-").split("-")[0]
