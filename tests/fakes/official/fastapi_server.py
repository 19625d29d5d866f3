"""Stand-in for CosyVoice's ``runtime/python/fastapi/server.py`` (upstream
commit ace7c47), on the stand-in model.

Wire protocol, as upstream: port 50000 by default; GET and POST on
``/inference_sft`` (tts_text, spk_id), ``/inference_zero_shot`` (tts_text,
prompt_text, file prompt_wav), ``/inference_cross_lingual`` (tts_text, file
prompt_wav), ``/inference_instruct`` (tts_text, spk_id, instruct_text),
``/inference_instruct2`` (tts_text, instruct_text, file prompt_wav); all
multipart form fields. The answer is a StreamingResponse without a media type:
headerless little-endian int16 mono PCM at the model's rate, one piece per
model output, cast without clipping. Text reaches the model verbatim.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse

from fakes.official.faults import Faults

app = FastAPI()
cosyvoice: Any = None
faults = Faults()


def generate_data(model_output: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    faults.before_first_chunk()
    for sent, i in enumerate(model_output, start=1):
        yield (i["tts_speech"].numpy() * (2**15)).astype(np.int16).tobytes()
        faults.after_chunk(sent)


def answer(model_output: Iterator[dict[str, Any]]) -> Any:
    if faults.should_fail():
        return PlainTextResponse("Internal Server Error", status_code=500)
    return StreamingResponse(generate_data(model_output))


def wav(upload: UploadFile) -> io.BytesIO:
    return io.BytesIO(upload.file.read())


@app.get("/inference_sft")
@app.post("/inference_sft")
async def inference_sft(tts_text: str = Form(), spk_id: str = Form()) -> Any:
    return answer(cosyvoice.inference_sft(tts_text, spk_id))


@app.get("/inference_zero_shot")
@app.post("/inference_zero_shot")
async def inference_zero_shot(
    tts_text: str = Form(), prompt_text: str = Form(), prompt_wav: UploadFile = File()
) -> Any:
    return answer(cosyvoice.inference_zero_shot(tts_text, prompt_text, wav(prompt_wav)))


@app.get("/inference_cross_lingual")
@app.post("/inference_cross_lingual")
async def inference_cross_lingual(tts_text: str = Form(), prompt_wav: UploadFile = File()) -> Any:
    return answer(cosyvoice.inference_cross_lingual(tts_text, wav(prompt_wav)))


@app.get("/inference_instruct")
@app.post("/inference_instruct")
async def inference_instruct(
    tts_text: str = Form(), spk_id: str = Form(), instruct_text: str = Form()
) -> Any:
    return answer(cosyvoice.inference_instruct(tts_text, spk_id, instruct_text))


@app.get("/inference_instruct2")
@app.post("/inference_instruct2")
async def inference_instruct2(
    tts_text: str = Form(), instruct_text: str = Form(), prompt_wav: UploadFile = File()
) -> Any:
    return answer(cosyvoice.inference_instruct2(tts_text, instruct_text, wav(prompt_wav)))


def main(argv: list[str] | None = None) -> None:
    global cosyvoice, faults
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=50000)
    parser.add_argument("--model_dir", type=str, required=True)
    Faults.add_arguments(parser)
    args = parser.parse_args(argv)
    from cosyvoice.cli.cosyvoice import AutoModel

    cosyvoice = AutoModel(model_dir=args.model_dir)
    faults = Faults.from_args(args)
    print(f"listening on {args.port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    os._exit(0)  # skip torch's slow interpreter teardown: tests stop many of these


if __name__ == "__main__":
    main()
