"""A pocketsphinx worker process: one Decoder, one prompt at a time.

Started by :class:`voxgate.asr.pocketsphinx.PocketsphinxTranscriber` as
``python -m voxgate.asr.sphinx_worker HMM LM DICT`` (a plain subprocess, not
multiprocessing: spawning through multiprocessing re-imports the server's
main module, which breaks any script without a ``__main__`` guard).

Wire protocol on stdin/stdout (integers little-endian):

* worker -> server, first: a hello, ``u32 length + JSON`` ``{"ready": true}``
  or ``{"error": message}`` (then it exits);
* server -> worker, per prompt: ``u32 sample_rate + u32 count`` and ``count``
  float32 samples; end of input ends the worker;
* worker -> server, per prompt: ``u32 length + JSON``: ``{"text": ...}``,
  ``{"unavailable": reason}`` (nothing to transcribe) or ``{"error": ...}``.

Resampling happens here too, off the server's event loop. Keep the imports
small: every worker pays for them.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import sys
from typing import Any, BinaryIO

import numpy as np

from voxgate.asr.audio import SAMPLE_RATE, to_model_audio
from voxgate.asr.base import TranscriptionUnavailable
from voxgate.audio.pcm import to_s16le

REQUEST = struct.Struct("<II")
LENGTH = struct.Struct("<I")


def send(out: BinaryIO, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    out.write(LENGTH.pack(len(data)) + data)
    out.flush()


def _read_exact(src: BinaryIO, n: int) -> bytes | None:
    data = src.read(n)
    return data if len(data) == n else None


def decode(decoder: Any, samples: np.ndarray[Any, Any], sample_rate: int) -> dict[str, str]:
    """One prompt, whole (``full_utt``: the decoder normalizes with the
    statistics of the whole recording, which beats its live estimate)."""
    try:
        audio = to_model_audio(samples, sample_rate)
    except TranscriptionUnavailable as exc:
        return {"unavailable": str(exc)}
    try:
        decoder.start_utt()
        try:
            decoder.process_raw(to_s16le(audio), full_utt=True)
        finally:
            decoder.end_utt()
        hyp = decoder.hyp()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"text": str(hyp.hypstr) if hyp is not None else ""}


def serve(decoder: Any, src: BinaryIO, out: BinaryIO) -> None:
    while True:
        head = _read_exact(src, REQUEST.size)
        if head is None:
            return
        sample_rate, count = REQUEST.unpack(head)
        data = _read_exact(src, count * 4)
        if data is None:
            return
        samples = np.frombuffer(data, dtype="<f4")
        send(out, decode(decoder, samples, sample_rate))


def main(argv: list[str]) -> int:
    # The protocol owns the original stdout; anything else printed to fd 1
    # (by Python or by the C library) goes to stderr instead of corrupting it.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    src = sys.stdin.buffer
    hmm, lm, dictionary = argv
    try:
        pocketsphinx = importlib.import_module("pocketsphinx")
        decoder = pocketsphinx.Decoder(
            hmm=hmm, lm=lm, dict=dictionary, samprate=SAMPLE_RATE, loglevel="ERROR"
        )
    except Exception as exc:
        send(out, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send(out, {"ready": True})
    serve(decoder, src, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
