"""The one error model (DESIGN rule 6).

Every failure a caller can see is a :class:`VoxgateError` carrying a stable
``code`` string, an HTTP status, a message and a hint a person can act on.
Surfaces only render it (native ``{"error": {code, message, hint}}`` or the
OpenAI shape); they never invent codes. Codes are registered in
:data:`CODES` so that docs/errors.md can be checked against the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A stable, documented error code and the HTTP status it maps to."""

    code: str
    status: int
    summary: str


CODES: dict[str, ErrorCode] = {}


def _code(code: str, status: int, summary: str) -> str:
    CODES[code] = ErrorCode(code, status, summary)
    return code


# Request shape
INVALID_JSON = _code("invalid_json", 400, "The body is not valid JSON.")
UNSUPPORTED_MEDIA_TYPE = _code("unsupported_media_type", 415, "Wrong Content-Type.")
INVALID_REQUEST = _code("invalid_request", 400, "A field has the wrong type or value.")
MISSING_FIELD = _code("missing_field", 400, "A required field is absent.")
REQUEST_TOO_LARGE = _code("request_too_large", 413, "The body exceeds the size limit.")
NOT_FOUND = _code("not_found", 404, "No such route or resource.")
METHOD_NOT_ALLOWED = _code("method_not_allowed", 405, "The route exists with another method.")

# Text
TEXT_EMPTY = _code("text_empty", 400, "The text is empty or only whitespace.")
TEXT_TOO_LONG = _code("text_too_long", 400, "The text exceeds the configured limit.")

# Voice, model, mode, parameters
MODEL_NOT_FOUND = _code("model_not_found", 404, "No engine or model alias by that name.")
VOICE_NOT_FOUND = _code("voice_not_found", 400, "No speaker or voice by that id.")
MODE_UNSUPPORTED = _code("mode_unsupported", 400, "The engine lacks the requested mode.")
FORMAT_UNSUPPORTED = _code("format_unsupported", 400, "Unknown output format.")
SAMPLE_RATE_UNSUPPORTED = _code(
    "sample_rate_unsupported", 400, "The format cannot carry that sample rate."
)
SPEED_OUT_OF_RANGE = _code("speed_out_of_range", 400, "Speed outside 0.25-4.0.")
PITCH_OUT_OF_RANGE = _code("pitch_out_of_range", 400, "Pitch outside -12..12 semitones.")
VOLUME_OUT_OF_RANGE = _code("volume_out_of_range", 400, "Volume outside 0.0-2.0.")
INSTRUCT_REQUIRED = _code("instruct_required", 400, "Mode instruct needs an instruction.")
INSTRUCT_UNSUPPORTED = _code(
    "instruct_unsupported", 422, "The engine understood nothing in the instruction."
)
LANGUAGE_UNSUPPORTED = _code("language_unsupported", 400, "The engine does not speak it.")

# Voice prompts
PROMPT_REQUIRED = _code("prompt_required", 400, "The mode needs a voice prompt.")
PROMPT_INVALID = _code("prompt_invalid", 400, "The prompt is not decodable audio.")
PROMPT_SAMPLE_RATE = _code("prompt_sample_rate", 400, "The prompt is sampled below 16 kHz.")
PROMPT_TOO_LONG = _code("prompt_too_long", 400, "The prompt is longer than allowed.")
PROMPT_TOO_SHORT = _code("prompt_too_short", 400, "The prompt is too short to imitate.")
PROMPT_TEXT_REQUIRED = _code(
    "prompt_text_required", 400, "Zero-shot imitation needs the prompt's transcript."
)
PROMPT_CORRUPT = _code("prompt_corrupt", 400, "The prompt file is damaged or truncated.")
PROMPT_SILENT = _code("prompt_silent", 400, "The prompt holds no audible speech.")
PROMPT_CLIPPED = _code("prompt_clipped", 400, "The prompt is badly clipped.")
PROMPT_NOISY = _code("prompt_noisy", 400, "The prompt's speech is buried in noise.")

# Voice library
CONSENT_REQUIRED = _code("consent_required", 400, "A voice needs the speaker's consent.")
CONSENT_NOT_FOUND = _code("consent_not_found", 404, "No consent recording by that id.")
CONSENT_IN_USE = _code("consent_in_use", 409, "Voices still rely on this consent recording.")
VOICE_MODE_MISMATCH = _code(
    "voice_mode_mismatch", 400, "The voice cannot be used in the requested mode."
)

# Authentication and tenants
AUTH_REQUIRED = _code("auth_required", 401, "The route needs an API key or a bearer token.")
INVALID_API_KEY = _code("invalid_api_key", 401, "The API key is unknown or revoked.")
INVALID_TOKEN = _code("invalid_token", 401, "The bearer token failed verification.")
TOKEN_EXPIRED = _code("token_expired", 401, "The bearer token has expired.")
FORBIDDEN = _code("forbidden", 403, "The credentials are valid but not allowed here.")
TENANT_EXISTS = _code("tenant_exists", 409, "A tenant by that id already exists.")

# Limits
RATE_LIMITED = _code("rate_limited", 429, "Too many requests in the current window.")
QUOTA_EXCEEDED = _code("quota_exceeded", 429, "The daily character quota is used up.")

# Streamed text sessions (WebSocket /v1/audio/speech/stream, gRPC StreamingSynthesize)
UNEXPECTED_MESSAGE = _code(
    "unexpected_message", 400, "A session message that is not valid at this point."
)
SESSION_IDLE_TIMEOUT = _code(
    "session_idle_timeout", 408, "A streamed session waited too long for its client."
)

# Jobs
JOB_NOT_FOUND = _code("job_not_found", 404, "No job by that id.")
JOB_NOT_FINISHED = _code("job_not_finished", 409, "The job has no result (yet).")
CALLBACK_URL_INVALID = _code("callback_url_invalid", 400, "The callback URL is not usable.")
CALLBACK_URL_FORBIDDEN = _code(
    "callback_url_forbidden", 400, "The callback URL points at an internal address."
)

# Engine administration
ENGINE_EXISTS = _code("engine_exists", 409, "An engine by that name is already registered.")
ENGINE_NOT_FOUND = _code("engine_not_found", 404, "No engine by that name.")
ENGINE_CONFIGURED = _code(
    "engine_configured", 409, "The engine comes from configuration; the API cannot remove it."
)

# Capacity and engines
ENGINE_OVERLOADED = _code("engine_overloaded", 503, "The engine queue is full or too slow.")
ENGINE_UNAVAILABLE = _code("engine_unavailable", 503, "The engine is not ready.")
ENGINE_FAILED = _code("engine_failed", 500, "The engine failed while synthesizing.")
ENGINE_TIMEOUT = _code("engine_timeout", 504, "The engine did not answer in time.")
UPSTREAM_ERROR = _code("upstream_error", 502, "A remote engine answered with an error.")
CIRCUIT_OPEN = _code(
    "circuit_open", 503, "Every endpoint of the engine is failing; its breaker is open."
)
INTERNAL_ERROR = _code("internal_error", 500, "An unexpected server error.")


class VoxgateError(Exception):
    """A failure with a stable code, an HTTP status and an actionable hint."""

    default_code: ClassVar[str] = INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        if self.code not in CODES:
            raise ValueError(f"unregistered error code {self.code!r}")
        self.message = message
        self.hint = hint
        self.param = param
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return CODES[self.code].status

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class RequestError(VoxgateError):
    """The caller sent something we cannot serve (4xx)."""

    default_code = INVALID_REQUEST


class EngineError(VoxgateError):
    """An engine failed; the request may be retried elsewhere before the first byte."""

    default_code = ENGINE_FAILED


class EngineUnavailable(EngineError):
    default_code = ENGINE_UNAVAILABLE


class EngineTimeout(EngineError):
    default_code = ENGINE_TIMEOUT


class UpstreamError(EngineError):
    """A remote engine answered with an error or broke its stream (502)."""

    default_code = UPSTREAM_ERROR


class Overloaded(VoxgateError):
    """Admission refused: answered early with 503 and Retry-After (DESIGN rule 4)."""

    default_code = ENGINE_OVERLOADED
