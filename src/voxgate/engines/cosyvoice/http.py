"""``cosyvoice-http``: CosyVoice's official FastAPI server as an engine.

The server (upstream ``runtime/python/fastapi/server.py``, port 50000) has one
route per mode, takes multipart form fields, and streams headerless
little-endian int16 mono PCM at the model's rate, one piece per segment. It
has no speed, stream or format options and no error bodies of its own (a
FastAPI 422 for a missing field, a 500 with a traceback for the rest).

    [engines.cosyvoice]
    kind = "cosyvoice-http"
    options = { url = "http://gpu-host:50000", version = 2 }
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from voxgate.audio.pcm import Samples, from_s16le
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.cosyvoice.remote import CosyVoiceRemote
from voxgate.engines.cosyvoice.texts import prompt_wav, upstream_texts
from voxgate.engines.remote import (
    PcmReassembler,
    PooledHttp,
    RemoteFailure,
    classify_httpx,
    classify_status,
)
from voxgate.text.split import Segment


class CosyVoiceHttpEngine(CosyVoiceRemote):
    kind = "cosyvoice-http"
    probe_name = "CosyVoice FastAPI server"
    # The server calls the model without stream=True: one piece per segment
    # (voxgate's segments are short, so first audio still leaves early).
    streaming = False

    def __init__(self, name: str = "cosyvoice-http", **options: Any) -> None:
        super().__init__(name, **options)
        self.http = PooledHttp(self.options)

    async def _probe(self) -> None:
        # The server has no health route; any HTTP answer from FastAPI (its
        # /openapi.json, or a 404) means it is up and serving.
        response = await self.http_client.get("/openapi.json")
        if response.status_code >= 500:
            raise RuntimeError(f"HTTP {response.status_code}")

    def form(self, request: EngineRequest, segment: Segment) -> tuple[str, dict[str, str], bool]:
        """The route, form fields, and whether the prompt is attached."""
        texts = upstream_texts(self.profile.version, request, segment)
        speaker = request.speaker.id if request.speaker else ""
        if request.mode == Mode.SFT:
            return "/inference_sft", {"tts_text": texts.tts_text, "spk_id": speaker}, False
        if request.mode == Mode.ZERO_SHOT:
            fields = {"tts_text": texts.tts_text, "prompt_text": texts.prompt_text}
            return "/inference_zero_shot", fields, True
        if request.mode == Mode.CROSS_LINGUAL:
            return "/inference_cross_lingual", {"tts_text": texts.tts_text}, True
        if self.profile.version == 1:
            fields = {"tts_text": texts.tts_text, "spk_id": speaker}
            fields["instruct_text"] = texts.instruct_text
            return "/inference_instruct", fields, False
        fields = {"tts_text": texts.tts_text, "instruct_text": texts.instruct_text}
        return "/inference_instruct2", fields, True

    async def _call(self, request: EngineRequest, segment: Segment) -> AsyncIterator[Samples]:
        path, fields, with_prompt = self.form(request, segment)
        files = (
            {"prompt_wav": ("prompt_wav", prompt_wav(request), "application/octet-stream")}
            if with_prompt
            else None
        )
        pcm = PcmReassembler()
        try:
            async with self.http_client.stream("POST", path, data=fields, files=files) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode("utf-8", "replace")
                    raise classify_status(response.status_code, body, response.headers)
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
