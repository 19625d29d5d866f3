"""The voice library over HTTP, in OpenAI's shape (``/v1/audio/voices``,
``/v1/audio/voice_consents``) with voxgate's fields beside it, and the
audit log (``/v1/audit``)."""
