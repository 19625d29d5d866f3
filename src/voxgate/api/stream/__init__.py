"""The WebSocket ``/v1/audio/speech/stream``: text in as it is written, audio out."""
