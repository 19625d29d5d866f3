"""Stand-in for CosyVoice's ``runtime/python/grpc/server.py`` (upstream commit
ace7c47), on the stand-in model.

Wire protocol, as upstream: service ``cosyvoice.CosyVoice``, one
server-streaming method ``Inference``; the ``Request`` oneof picks
``inference_sft``, ``inference_zero_shot``, ``inference_cross_lingual`` or
(for anything else, an empty request included) ``inference_instruct``; each
model output becomes one ``Response`` of int16 PCM at the model's rate, cast
without clipping. Same server shape: a threaded ``grpc.server`` with
``max_workers=max_conc`` and ``maximum_concurrent_rpcs=max_conc`` (extra
calls get RESOURCE_EXHAUSTED), same CLI (``--port``, ``--max_conc``,
``--model_dir``). Exceptions in the model reach clients as status UNKNOWN,
as upstream's do. It listens on 127.0.0.1 only (upstream: 0.0.0.0).

One deliberate difference: upstream turns ``prompt_audio`` into a float
tensor, which the model's current API (a path or file-like WAV since Dec
2025) no longer takes, so upstream's own zero_shot and cross_lingual fail
at ace7c47; this stand-in wraps the 16 kHz samples in an in-memory WAV, as a
working server must.

The stubs are compiled from voxgate's copy of the official proto with
grpcio-tools when the server starts, into a temporary directory, and
imported as upstream imports its own (``import cosyvoice_pb2``): nothing of
voxgate's generated code is used on this side of the wire.

Fault knobs (``faults.Faults``, not upstream): ``--fail-first N`` answers the
first N calls with UNAVAILABLE, ``--die-after-chunks N`` exits after sending
N messages, ``--stall-s S`` sleeps before the first message. Every call logs
``inference call <n>`` so tests can count calls.
"""

from __future__ import annotations

import argparse
import importlib
import io
import itertools
import logging
import sys
import tempfile
import wave
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from fakes.official.faults import Faults

PROTO = (
    Path(__file__).resolve().parents[3] / "src" / "voxgate" / "grpc" / "protos" / "cosyvoice.proto"
)

log = logging.getLogger("fake-grpc")


def compile_stubs(proto: Path, out: Path) -> tuple[Any, Any]:
    """``cosyvoice_pb2`` and ``cosyvoice_pb2_grpc`` compiled from ``proto`` into ``out``."""
    from grpc_tools import protoc

    args = [
        "protoc",
        f"-I{proto.parent}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(proto),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {proto}")
    sys.path.insert(0, str(out))
    return importlib.import_module("cosyvoice_pb2"), importlib.import_module("cosyvoice_pb2_grpc")


def prompt_wav(pcm16: bytes) -> io.BytesIO:
    """The service's 16 kHz int16 prompt as the WAV file the model reads."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm16[: len(pcm16) // 2 * 2])
    buffer.seek(0)
    return buffer


class CosyVoiceServiceImpl:
    def __init__(self, model: Any, pb2: Any, faults: Faults) -> None:
        self.cosyvoice = model
        self.pb2 = pb2
        self.faults = faults
        self._calls = itertools.count(1)

    def Inference(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        log.info("inference call %d", next(self._calls))
        if self.faults.should_fail():
            log.info("injected fault: answering UNAVAILABLE")
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected fault: failing this call")
        if request.HasField("sft_request"):
            log.info("get sft inference request")
            r = request.sft_request
            model_output = self.cosyvoice.inference_sft(r.tts_text, r.spk_id)
        elif request.HasField("zero_shot_request"):
            log.info("get zero_shot inference request")
            z = request.zero_shot_request
            model_output = self.cosyvoice.inference_zero_shot(
                z.tts_text, z.prompt_text, prompt_wav(z.prompt_audio)
            )
        elif request.HasField("cross_lingual_request"):
            log.info("get cross_lingual inference request")
            c = request.cross_lingual_request
            model_output = self.cosyvoice.inference_cross_lingual(
                c.tts_text, prompt_wav(c.prompt_audio)
            )
        else:
            log.info("get instruct inference request")
            i = request.instruct_request
            model_output = self.cosyvoice.inference_instruct(i.tts_text, i.spk_id, i.instruct_text)
        log.info("send inference response")
        self.faults.before_first_chunk()
        for sent, out in enumerate(model_output, start=1):
            audio = (out["tts_speech"].numpy() * (2**15)).astype(np.int16).tobytes()
            yield self.pb2.Response(tts_audio=audio)
            self.faults.after_chunk(sent)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=50000)
    parser.add_argument("--max_conc", type=int, default=4)
    parser.add_argument("--model_dir", type=str, required=True)
    Faults.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from cosyvoice.cli.cosyvoice import AutoModel

    with tempfile.TemporaryDirectory(prefix="cosyvoice-stubs-") as stubs:
        pb2, pb2_grpc = compile_stubs(PROTO, Path(stubs))
        service = CosyVoiceServiceImpl(
            AutoModel(model_dir=args.model_dir), pb2, Faults.from_args(args)
        )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=args.max_conc),
            maximum_concurrent_rpcs=args.max_conc,
        )
        pb2_grpc.add_CosyVoiceServicer_to_server(service, server)
        server.add_insecure_port(f"127.0.0.1:{args.port}")
        server.start()
        log.info("server listening on 127.0.0.1:%d", args.port)
        try:
            server.wait_for_termination()
        except KeyboardInterrupt:
            server.stop(0)


if __name__ == "__main__":
    main()
