"""Stand-in for NVIDIA Triton Inference Server serving CosyVoice's BLS models
(upstream ``runtime/triton_trtllm``, commit ace7c47), on the stand-in model.

No Triton, TensorRT-LLM or GPU can run here, so this process speaks Triton's
HTTP API (the KServe v2 protocol plus Triton's extensions) for the routes
voxgate and upstream's ``client_http.py`` use, as Triton's ``http_server.cc``
does:

* ``GET /v2``: server metadata, listing ``binary_tensor_data``;
* ``GET /v2/health/live``, ``/v2/health/ready``: 200 with an empty body;
* ``GET /v2/models/<m>[/versions/<v>]``: model metadata; ``.../ready``: 200,
  or 400 ``{"error": "Model version not ready"}``; ``.../config``: the model
  config as JSON (``model_transaction_policy.decoupled`` included);
* ``POST /v2/repository/index``: the loaded models;
* ``POST /v2/models/<m>[/versions/<v>]/infer``: a JSON body, or a JSON header
  of ``Inference-Header-Content-Length`` bytes followed by binary tensor data
  (inputs with ``parameters.binary_data_size``, little-endian, row major,
  BYTES elements as a 4-byte little-endian length and the bytes). Outputs are
  JSON ``data`` (a flat list) unless ``binary_data`` is set on the requested
  output (or ``binary_data_output`` on the request); then the answer is
  ``application/octet-stream`` with ``Inference-Header-Content-Length``.
  ``Content-Encoding`` / ``Accept-Encoding`` gzip and deflate are honoured;
* errors as ``{"error": "..."}`` with Triton's mapping of error codes to HTTP
  statuses: 400 invalid argument, 404 unknown model, 500 internal (a failing
  model), 501 unsupported (HTTP inference on a decoupled model); an unknown
  route is a 400 with an empty body.

Models are the ``cosyvoice2`` / ``cosyvoice3`` BLS models, with their
``config.pbtxt`` inputs (``reference_wav`` FP32 [-1], ``reference_wav_len``
INT32 [1], ``reference_text`` BYTES [1], all optional; ``target_text`` BYTES
[1]) and output (``waveform`` FP32 [-1]), a batch dimension in front
(``max_batch_size`` 16 for v2 and 1 for v3, as run.sh and run_cosyvoice3.sh
fill them in), non-decoupled unless ``--decoupled NAME``. Behaviour follows
their ``model.py``:

* cosyvoice2: with ``reference_wav``, zero-shot from it and
  ``reference_text``; without it, the cached speaker ``spk2info["001"]``.
  The stand-in v2 model directory has no ``spk2info.pt``, so ``001`` is
  registered at start with ``add_zero_shot_spk`` from :func:`default_prompt`;
* cosyvoice3: ``reference_text`` gets ``You are a helpful
  assistant.<|endofprompt|>`` in front unless it contains ``<|endofprompt|>``;
  prompt features are cached by that text (upstream's cache key, so two voices
  with one transcript collide there too); no reference audio and no cached
  text fails the request, as upstream's ``wav.as_numpy()`` on None does.

The reference audio reaches the stand-in model as a 16-bit 16 kHz WAV file
(the only input its ``load_wav`` reads); Triton's model takes the floats
directly. Error messages follow Triton's wording where known, approximately
elsewhere. Written for voxgate's tests; no upstream code is copied.

    PYTHONPATH=tests/fakes:tests python -m fakes.official.triton_server \\
        --port 8000 --model cosyvoice2=/tmp/CosyVoice2-0.5B
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import re
import sys
import wave
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .faults import Faults

DEFAULT_SPEAKER_ID = "001"  # the key model.py reads from spk2info.pt
DEFAULT_PROMPT_TEXT = "希望你以后能够做的比我还好呦。"
V3_PREFIX = "You are a helpful assistant.<|endofprompt|>"
END_OF_PROMPT = "<|endofprompt|>"
PROMPT_RATE = 16000
SERVER_VERSION = "2.59.0"
EXTENSIONS = [
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "cuda_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
]
# name -> (datatype, dims without the batch dimension, optional)
INPUTS: dict[str, tuple[str, list[int], bool]] = {
    "reference_wav": ("FP32", [-1], True),
    "reference_wav_len": ("INT32", [1], True),
    "reference_text": ("BYTES", [1], True),
    "target_text": ("BYTES", [1], False),
}
OUTPUTS: dict[str, tuple[str, list[int]]] = {"waveform": ("FP32", [-1])}
DTYPES = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8", "INT16": "<i2",
          "INT8": "i1", "UINT8": "u1", "BOOL": "?"}  # fmt: skip


class TritonError(Exception):
    """A failed call, answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def default_prompt() -> np.ndarray:
    """The recording behind speaker ``001``: 3 s at 16 kHz, deterministic."""
    t = np.arange(3 * PROMPT_RATE, dtype=np.float64) / PROMPT_RATE
    wave_ = 0.25 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t) ** 2)
    return wave_.astype(np.float32)


def wav_file(samples: np.ndarray, rate: int = PROMPT_RATE) -> io.BytesIO:
    """Float samples as the 16-bit WAV file the stand-in model reads."""
    pcm = np.clip(np.rint(samples.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    buffer.seek(0)
    return buffer


@dataclass
class Served:
    """One model of the repository."""

    name: str
    model: Any  # the stand-in AutoModel
    version: int  # CosyVoice 2 or 3
    decoupled: bool = False
    speaker_cache: dict[str, str] = field(default_factory=dict)  # v3: reference text -> spk id

    @property
    def max_batch_size(self) -> int:
        return 16 if self.version == 2 else 1

    def metadata(self) -> dict[str, Any]:
        def tensors(spec: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"name": n, "datatype": s[0], "shape": [-1, *s[1]]} for n, s in spec.items()]

        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "python",
            "inputs": tensors(INPUTS),
            "outputs": tensors(OUTPUTS),
        }

    def config(self) -> dict[str, Any]:
        def triton_type(datatype: str) -> str:
            return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"

        return {
            "name": self.name,
            "platform": "",
            "backend": "python",
            "runtime": "",
            "version_policy": {"latest": {"num_versions": 1}},
            "max_batch_size": self.max_batch_size,
            "input": [
                {
                    "name": n,
                    "data_type": triton_type(t),
                    "format": "FORMAT_NONE",
                    "dims": d,
                    "is_shape_tensor": False,
                    "allow_ragged_batch": False,
                    "optional": o,
                }
                for n, (t, d, o) in INPUTS.items()
            ],
            "output": [
                {
                    "name": n,
                    "data_type": triton_type(t),
                    "dims": d,
                    "label_filename": "",
                    "is_shape_tensor": False,
                }
                for n, (t, d) in OUTPUTS.items()
            ],
            "dynamic_batching": {"max_queue_delay_microseconds": 0},
            "instance_group": [{"name": f"{self.name}_0", "kind": "KIND_CPU", "count": 4}],
            "parameters": {"model_dir": {"string_value": "stand-in"}},
            "model_transaction_policy": {"decoupled": self.decoupled},
        }

    # -- what model.py does ---------------------------------------------------

    def synthesize(self, inputs: dict[str, np.ndarray | list[bytes]]) -> np.ndarray:
        target = _text(inputs["target_text"])
        if self.version == 3:
            return self._cosyvoice3(inputs, target)
        wav = inputs.get("reference_wav")
        if wav is None:
            outputs = self.model.inference_zero_shot(
                target, "", None, zero_shot_spk_id=DEFAULT_SPEAKER_ID, stream=False
            )
        else:
            reference = _text(_required(inputs, "reference_text"))
            samples = _reference(wav, _required(inputs, "reference_wav_len"))
            outputs = self.model.inference_zero_shot(
                target, reference, wav_file(samples), stream=False
            )
        return _join(outputs)

    def _cosyvoice3(self, inputs: dict[str, np.ndarray | list[bytes]], target: str) -> np.ndarray:
        given = inputs.get("reference_text")
        reference = _text(given) if given is not None else ""
        if END_OF_PROMPT not in reference:
            reference = V3_PREFIX + reference
        spk_id = self.speaker_cache.get(reference)
        if spk_id is None:
            wav = _required(inputs, "reference_wav")
            samples = _reference(wav, _required(inputs, "reference_wav_len"))
            spk_id = f"triton-cache-{len(self.speaker_cache)}"
            self.model.add_zero_shot_spk(reference, wav_file(samples), spk_id)
            self.speaker_cache[reference] = spk_id
        outputs = self.model.inference_zero_shot(
            target, reference, None, zero_shot_spk_id=spk_id, stream=False
        )
        return _join(outputs)


def _required(inputs: dict[str, np.ndarray | list[bytes]], name: str) -> np.ndarray | list[bytes]:
    value = inputs.get(name)
    if value is None:  # model.py calls .as_numpy() on the missing tensor
        raise AttributeError("'NoneType' object has no attribute 'as_numpy'")
    return value


def _text(value: np.ndarray | list[bytes]) -> str:
    if not isinstance(value, list):
        raise TypeError("text input is not BYTES")
    return value[0].decode("utf-8")


def _reference(wav: np.ndarray | list[bytes], length: np.ndarray | list[bytes]) -> np.ndarray:
    if isinstance(wav, list) or isinstance(length, list):
        raise TypeError("reference_wav must be FP32 and reference_wav_len INT32")
    return np.asarray(wav[0, : int(length.reshape(-1)[0])], dtype=np.float32)


def _join(outputs: Any) -> np.ndarray:
    pieces = [o["tts_speech"].numpy().reshape(-1) for o in outputs]
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return audio.astype(np.float32).reshape(1, -1)


# -- the wire ---------------------------------------------------------------

MODEL_ROUTE = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<kind>ready|infer|config|stats))?$"
)
HEALTH_ROUTE = re.compile(r"^/v2/health/(?P<kind>live|ready)$")
models: dict[str, Served] = {}
faults = Faults()


def error(status: int, message: str) -> Response:
    body = json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


def as_json(document: Any) -> Response:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return Response(body, media_type="application/json")


def find_model(name: str, version: str | None) -> Served:
    served = models.get(name)
    if served is None or version not in (None, "", "1"):
        suffix = f" version {version}" if version not in (None, "") else ""
        raise TritonError(404, f"Request for unknown model: '{name}'{suffix} is not found")
    return served


async def dispatch(request: Request) -> Response:
    path = request.url.path
    try:
        if path == "/v2":
            _method(request, "GET")
            return as_json({"name": "triton", "version": SERVER_VERSION, "extensions": EXTENSIONS})
        if match := HEALTH_ROUTE.match(path):
            _method(request, "GET")
            return Response(status_code=200)
        if path == "/v2/repository/index":
            _method(request, "POST")
            index = [{"name": n, "version": "1", "state": "READY"} for n in sorted(models)]
            return as_json(index)
        if match := MODEL_ROUTE.match(path):
            name, version, kind = match["name"], match["version"], match["kind"] or ""
            if kind == "infer":
                _method(request, "POST")
                return await infer(request, find_model(name, version))
            _method(request, "GET")
            if kind == "ready":
                if name not in models or version not in (None, "", "1"):
                    raise TritonError(400, "Model version not ready")
                return Response(status_code=200)
            served = find_model(name, version)
            if kind == "config":
                return as_json(served.config())
            if kind == "stats":
                return as_json({"model_stats": []})
            return as_json(served.metadata())
    except TritonError as exc:
        return error(exc.status, exc.message)
    return Response(status_code=400)  # Triton's answer to any other path


def _method(request: Request, expected: str) -> None:
    if request.method != expected:
        raise TritonError(405, "Method Not Allowed")


# -- inference ----------------------------------------------------------------


async def infer(request: Request, served: Served) -> Response:
    if served.decoupled:
        raise TritonError(
            501, "HTTP end point doesn't support models with decoupled transaction policy"
        )
    body = _decompress(await request.body(), request.headers.get("content-encoding", ""))
    header, binary = _split_body(body, request.headers.get("inference-header-content-length"))
    try:
        document = json.loads(header)
    except ValueError as exc:
        raise TritonError(400, f"failed to parse the request JSON buffer: {exc}") from None
    if not isinstance(document, dict):
        raise TritonError(400, "failed to parse the request JSON buffer: not an object")
    request_id = str(document.get("id") or "")
    tag = f"[request id: {request_id or '<id_unknown>'}] "
    inputs = _read_inputs(document, binary, served, tag)
    wanted = _requested_outputs(document, tag, served)
    if faults.should_fail():
        raise TritonError(
            500,
            f"Failed to process the request(s) for model instance '{served.name}_0_0', "
            f"message: Stub process '{served.name}_0_0' is not healthy.",
        )

    def work() -> np.ndarray:
        faults.before_first_chunk()
        return served.synthesize(inputs)

    try:
        waveform = await anyio.to_thread.run_sync(work)
    except Exception as exc:
        message = (
            f"Failed to process the request(s) for model instance '{served.name}_0_0', "
            f"message: {type(exc).__name__}: {exc}"
            if served.version == 2
            else str(exc)  # the cosyvoice3 model answers with TritonError(str(e))
        )
        raise TritonError(500, message) from None
    return _response(document, request_id, served, {"waveform": waveform}, wanted, request)


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as exc:
        raise TritonError(400, f"failed to decompress the request body: {exc}") from None
    if encoding not in ("", "identity"):
        raise TritonError(400, f"Unsupported content-encoding: '{encoding}'")
    return body


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise TritonError(
            400, f"Unable to parse Inference-Header-Content-Length, got: {header_length}"
        ) from None
    if length < 0 or length > len(body):
        raise TritonError(
            400,
            f"inference header size should be in range (0, {len(body)}), got: {header_length}",
        )
    return body[:length], body[length:]


def _read_inputs(
    document: dict[str, Any], binary: bytes, served: Served, tag: str
) -> dict[str, np.ndarray | list[bytes]]:
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list):
        raise TritonError(400, "Unable to parse 'inputs'")
    offset = 0
    inputs: dict[str, np.ndarray | list[bytes]] = {}
    for item in raw_inputs:
        if not isinstance(item, dict):
            raise TritonError(400, "Unable to parse 'inputs'")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str):
            raise TritonError(400, "Unable to parse 'name'")
        if not isinstance(datatype, str):
            raise TritonError(400, "Unable to parse 'datatype'")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise TritonError(400, "Unable to parse 'shape'")
        count = math.prod(shape)
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = binary[offset : offset + int(size)]
            offset += int(size)
            if len(raw) != int(size):
                raise TritonError(
                    400,
                    f"unexpected size for input '{name}', expecting "
                    f"{int(size) - len(raw)} additional bytes for model '{served.name}'",
                )
            value = _from_binary(name, datatype, raw, count)
        elif "data" in item:
            value = _from_json(name, datatype, item["data"], count)
        else:
            raise TritonError(400, f"{tag}input '{name}' has no data")
        _check_input(served, tag, name, datatype, shape)
        inputs[name] = value if isinstance(value, list) else value.reshape(shape)
    if offset != len(binary):
        raise TritonError(400, f"unexpected additional input data for model '{served.name}'")
    required = [n for n, (_, _, optional) in INPUTS.items() if not optional]
    if not 1 <= len(inputs) <= len(INPUTS):
        raise TritonError(
            400,
            f"{tag}expected number of inputs between {len(required)} and {len(INPUTS)} but got "
            f"{len(inputs)} inputs for model '{served.name}'",
        )
    for name in required:
        if name not in inputs:
            raise TritonError(
                400, f"{tag}missing required input '{name}' for model '{served.name}'"
            )
    return inputs


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> np.ndarray | list[bytes]:
    if datatype == "BYTES":
        items: list[bytes] = []
        at = 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise TritonError(400, f"unexpected end of BYTES data for input '{name}'")
            length = int.from_bytes(raw[at : at + 4], "little")
            items.append(raw[at + 4 : at + 4 + length])
            at += 4 + length
        if at != len(raw) or len(items) != count:
            raise TritonError(
                400, f"unexpected number of string elements {len(items)} for input '{name}'"
            )
        return items
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise TritonError(400, f"invalid datatype for input {name}")
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise TritonError(
            400,
            f"input byte size mismatch for input '{name}': expected "
            f"{count * np.dtype(dtype).itemsize}, got {len(raw)}",
        )
    return np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def _from_json(name: str, datatype: str, data: Any, count: int) -> np.ndarray | list[bytes]:
    if not isinstance(data, list):
        raise TritonError(400, "Unable to parse 'data'")
    flat = _flatten(data)
    if len(flat) != count:
        raise TritonError(
            400, "Unable to parse 'data': Shape does not match true shape of 'data' field"
        )
    if datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise TritonError(400, "Unable to parse 'data': Unable to parse JSON bytes array")
        return [x.encode("utf-8") for x in flat]
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise TritonError(400, f"invalid datatype for input {name}")
    try:
        return np.asarray(flat, dtype=np.dtype(dtype).newbyteorder("="))
    except (TypeError, ValueError):
        raise TritonError(400, "Unable to parse 'data'") from None


def _check_input(served: Served, tag: str, name: str, datatype: str, shape: list[int]) -> None:
    spec = INPUTS.get(name)
    if spec is None:
        raise TritonError(
            400, f"{tag}unexpected inference input '{name}' for model '{served.name}'"
        )
    expected_type, dims, _ = spec
    if datatype != expected_type:
        raise TritonError(
            400,
            f"{tag}inference input '{name}' data-type is '{datatype}', but model "
            f"'{served.name}' expects '{expected_type}'",
        )
    full = [-1, *dims]
    if len(shape) != len(full) or any(d != -1 and d != s for d, s in zip(full, shape, strict=True)):
        raise TritonError(
            400,
            f"{tag}unexpected shape for input '{name}' for model '{served.name}'. Expected "
            f"[{','.join(map(str, full))}], got [{','.join(map(str, shape))}]",
        )
    if not 1 <= shape[0] <= served.max_batch_size:
        raise TritonError(
            400,
            f"{tag}inference request batch-size must be <= {served.max_batch_size} for "
            f"'{served.name}'",
        )


def _requested_outputs(document: dict[str, Any], tag: str, served: Served) -> dict[str, bool]:
    """Output name -> returned as binary."""
    default_binary = bool((document.get("parameters") or {}).get("binary_data_output", False))
    requested = document.get("outputs")
    if requested is None:
        return dict.fromkeys(OUTPUTS, default_binary)
    if not isinstance(requested, list):
        raise TritonError(400, "Unable to parse 'outputs'")
    wanted: dict[str, bool] = {}
    for item in requested:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise TritonError(400, "Unable to parse 'name'")
        if name not in OUTPUTS:
            raise TritonError(
                400, f"{tag}unexpected inference output '{name}' for model '{served.name}'"
            )
        parameters = item.get("parameters") or {}
        wanted[name] = bool(parameters.get("binary_data", default_binary))
    return wanted


def _response(
    document: dict[str, Any],
    request_id: str,
    served: Served,
    results: dict[str, np.ndarray],
    wanted: dict[str, bool],
    request: Request,
) -> Response:
    head: dict[str, Any] = {}
    if request_id:
        head["id"] = request_id
    head["model_name"] = served.name
    head["model_version"] = "1"
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in wanted.items():
        value = results[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": OUTPUTS[name][0],
            "shape": list(value.shape),
        }
        if binary:
            raw = value.astype("<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            if raw:
                blobs.append(raw)
        else:
            entry["data"] = value.reshape(-1).tolist()
        outputs.append(entry)
    head["outputs"] = outputs
    header = json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers: dict[str, str] = {}
    if blobs:
        media_type = "application/octet-stream"
        headers["Inference-Header-Content-Length"] = str(len(header))
    else:
        media_type = "application/json"
    body = header + b"".join(blobs)
    encoding = _accepted_encoding(request.headers.get("accept-encoding", ""))
    if encoding is not None:
        compress: Callable[[bytes], bytes] = gzip.compress if encoding == "gzip" else zlib.compress
        body = compress(body)
        headers["Content-Encoding"] = encoding
    task = BackgroundTask(faults.after_chunk, 1)
    return Response(body, media_type=media_type, headers=headers, background=task)


def _accepted_encoding(header: str) -> str | None:
    """The first of deflate / gzip the client accepts (q > 0), as Triton picks."""
    for part in header.split(","):
        token, _, params = part.strip().partition(";")
        token = token.strip().lower()
        q = params.strip().removeprefix("q=")
        if token in ("gzip", "deflate") and q not in ("0", "0.0", "0.00", "0.000"):
            return token
    return None


app = Starlette(
    routes=[
        Route(
            "/{path:path}",
            dispatch,
            methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
        )
    ]
)


def load(name: str, model_dir: str, decoupled: bool) -> Served:
    from cosyvoice.cli.cosyvoice import AutoModel

    model = AutoModel(model_dir=model_dir)
    version = 3 if type(model).__name__ == "CosyVoice3" else 2
    if type(model).__name__ == "CosyVoice":
        raise SystemExit(f"{model_dir}: Triton's pipeline serves CosyVoice 2 and 3 only")
    if version == 2:
        model.add_zero_shot_spk(DEFAULT_PROMPT_TEXT, wav_file(default_prompt()), DEFAULT_SPEAKER_ID)
    return Served(name, model, version, decoupled=decoupled)


def main(argv: list[str] | None = None) -> None:
    global faults
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--model", action="append", required=True, metavar="NAME=MODEL_DIR",
        help="a model of the repository, e.g. cosyvoice2=/models/CosyVoice2-0.5B",
    )  # fmt: skip
    parser.add_argument(
        "--decoupled", action="append", default=[], metavar="NAME",
        help="serve NAME with decoupled: True (HTTP inference refused, as Triton does)",
    )  # fmt: skip
    Faults.add_arguments(parser)
    args = parser.parse_args(argv)
    for spec in args.model:
        name, _, model_dir = spec.partition("=")
        if not name or not model_dir:
            parser.error(f"--model {spec!r}: expected NAME=MODEL_DIR")
        models[name] = load(name, model_dir, name in args.decoupled)
    faults = Faults.from_args(args)
    print(f"listening on {args.port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    # Tearing down torch at interpreter exit takes about a second, per server,
    # per test run; there is nothing left to flush or close.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
