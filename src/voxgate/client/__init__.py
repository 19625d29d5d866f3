"""The voxgate Python SDK: speech, streaming, WebSocket sessions, voices and
jobs, with typed errors and retries that honour ``Retry-After``.

    from voxgate.client import Client

    with Client("http://127.0.0.1:8080", api_key="vg_...") as client:
        result = client.speech.create(input="Hello.", voice="alloy", response_format="wav")
        result.write_to_file("hello.wav")

It needs only ``httpx`` and ``websockets``: importing it never loads the
server's dependencies (FastAPI, PyAV, NumPy, SQLAlchemy...). See docs/sdk.md.
"""

from voxgate import __version__
from voxgate.client._async import AsyncClient, AsyncSpeechStream
from voxgate.client._core import NOT_GIVEN, RetryPolicy
from voxgate.client._sync import Client, SpeechStream
from voxgate.client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    IncompleteStreamError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    VoxgateError,
    WaitTimeoutError,
)
from voxgate.client.session import AsyncSession, Session
from voxgate.client.types import (
    AudioInfo,
    AudioStart,
    IntakeReport,
    Job,
    JobError,
    JobProgress,
    Page,
    SpeechResult,
    Timings,
    Usage,
    Voice,
)

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncSession",
    "AsyncSpeechStream",
    "AudioInfo",
    "AudioStart",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "IncompleteStreamError",
    "IntakeReport",
    "InternalServerError",
    "Job",
    "JobError",
    "JobProgress",
    "NotFoundError",
    "OverloadedError",
    "Page",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "Session",
    "SpeechResult",
    "SpeechStream",
    "Timings",
    "UnprocessableEntityError",
    "Usage",
    "Voice",
    "VoxgateError",
    "WaitTimeoutError",
    "__version__",
]
