"""CosyVoice's official FastAPI routes, served by voxgate (drop-in migration).

Same paths, methods (GET and POST: upstream's own client sends GET with a
form body), form fields and answer as upstream's
``runtime/python/fastapi/server.py``, so code written against a CosyVoice
server works by changing its URL. The answer is headerless int16 PCM at the
engine's rate, streamed; voxgate adds what upstream lacks around it: errors
with codes (instead of a 500 traceback), admission control, and the headers
``X-Sample-Rate`` and ``X-Channels`` (clients that ignore them are unaffected).

Only POST is in the OpenAPI document: a GET with a body is not valid OpenAPI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from voxgate.api import deps, responses
from voxgate.api.cosyvoice.protocol import OfficialCall
from voxgate.api.openai.routes import AUDIO_RESPONSES
from voxgate.audio.prompt import prompt_from_bytes
from voxgate.config import Settings
from voxgate.pipeline import Pipeline

router = APIRouter(tags=["CosyVoice compatible"])

Handler = Callable[..., Coroutine[Any, Any, Response]]


def _route(path: str, summary: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        options: dict[str, Any] = {"responses": AUDIO_RESPONSES, "response_class": Response}
        router.post(path, summary=summary, **options)(handler)
        router.get(path, include_in_schema=False, **options)(handler)
        return handler

    return register


async def _answer(
    call: OfficialCall, request: Request, pipeline: Pipeline, settings: Settings
) -> Response:
    req = call.to_request(
        engine=settings.cosyvoice_compat_engine,
        request_id=deps.request_id(request),
        tenant=deps.tenant(request),
    )
    req = dataclasses.replace(
        req,
        priority=deps.priority(request),
        principal=deps.principal(request),
        cache=deps.cache_policy(request),
    )
    synthesis = await pipeline.prepare(req)
    return await responses.audio_stream(synthesis, deps.request_state(request))


async def _prompt(upload: UploadFile, text: str | None = None) -> Any:
    return prompt_from_bytes(await upload.read(), text, param="prompt_wav")


@_route("/inference_sft", "CosyVoice: speak with a built-in speaker")
async def inference_sft(
    request: Request,
    tts_text: str = Form(),
    spk_id: str = Form(),
    pipeline: Pipeline = Depends(deps.pipeline),
    settings: Settings = Depends(deps.settings),
) -> Response:
    call = OfficialCall("sft", tts_text, spk_id=spk_id)
    return await _answer(call, request, pipeline, settings)


@_route("/inference_zero_shot", "CosyVoice: imitate a voice prompt and its transcript")
async def inference_zero_shot(
    request: Request,
    tts_text: str = Form(),
    prompt_text: str = Form(""),  # required upstream; empty gets a clearer error here
    prompt_wav: UploadFile = File(),
    pipeline: Pipeline = Depends(deps.pipeline),
    settings: Settings = Depends(deps.settings),
) -> Response:
    prompt = await _prompt(prompt_wav, prompt_text)
    call = OfficialCall("zero_shot", tts_text, prompt_text=prompt_text, prompt=prompt)
    return await _answer(call, request, pipeline, settings)


@_route("/inference_cross_lingual", "CosyVoice: imitate a voice prompt in another language")
async def inference_cross_lingual(
    request: Request,
    tts_text: str = Form(),
    prompt_wav: UploadFile = File(),
    pipeline: Pipeline = Depends(deps.pipeline),
    settings: Settings = Depends(deps.settings),
) -> Response:
    call = OfficialCall("cross_lingual", tts_text, prompt=await _prompt(prompt_wav))
    return await _answer(call, request, pipeline, settings)


@_route("/inference_instruct", "CosyVoice 1: a built-in speaker with a style instruction")
async def inference_instruct(
    request: Request,
    tts_text: str = Form(),
    spk_id: str = Form(),
    instruct_text: str = Form(),
    pipeline: Pipeline = Depends(deps.pipeline),
    settings: Settings = Depends(deps.settings),
) -> Response:
    call = OfficialCall("instruct", tts_text, spk_id=spk_id, instruct_text=instruct_text)
    return await _answer(call, request, pipeline, settings)


@_route("/inference_instruct2", "CosyVoice 2/3: a voice prompt with a style instruction")
async def inference_instruct2(
    request: Request,
    tts_text: str = Form(),
    instruct_text: str = Form(),
    prompt_wav: UploadFile = File(),
    pipeline: Pipeline = Depends(deps.pipeline),
    settings: Settings = Depends(deps.settings),
) -> Response:
    call = OfficialCall(
        "instruct2", tts_text, instruct_text=instruct_text, prompt=await _prompt(prompt_wav)
    )
    return await _answer(call, request, pipeline, settings)
