"""``cosyvoice-triton``: CosyVoice served by NVIDIA Triton (upstream ``runtime/triton_trtllm``).

Upstream's fastest deployment runs CosyVoice 2 or 3 as a Triton "BLS" model
(``cosyvoice2`` in ``model_repo``, ``cosyvoice3`` in ``model_repo_cosyvoice3``)
around TensorRT-LLM. voxgate speaks Triton's HTTP API to it: the KServe v2
inference protocol plus Triton's binary tensor data extension.

**One model, one mode of its own.** The pipeline is zero-shot only. Its inputs
are ``reference_wav`` (FP32 ``[1, N]``, 16 kHz), ``reference_wav_len`` (INT32
``[1, 1]``), ``reference_text`` and ``target_text`` (BYTES ``[1, 1]``); its
output is ``waveform`` (FP32 ``[1, M]``, 24 kHz). The three reference inputs
are optional in ``config.pbtxt``: without them the ``cosyvoice2`` model speaks
with the cached speaker ``spk2info.pt["001"]`` it loads at start (run.sh
downloads that file). So the modes are:

* ``zero_shot`` (v2 and v3): the request's prompt, resampled to 16 kHz, and
  its transcript;
* ``sft`` (v2 only) with exactly one speaker, named ``default`` unless the
  ``speaker`` option says otherwise. The request carries no speaker id, so
  the name is voxgate's label for "whatever ``001`` holds on that server",
  not an upstream id. The ``cosyvoice3`` model has no such fallback (it reads
  ``reference_wav`` unconditionally and fails without it), so v3 has no sft.

Cross-lingual and instruct are not offered: the BLS always puts the
reference transcript and speech tokens in front of the target text, which is
exactly zero-shot and cannot express either.

**Prompt rules.** Text goes through :func:`upstream_texts` like every other
CosyVoice transport. For v3 that puts ``You are a helpful
assistant.<|endofprompt|>`` before the transcript. Triton's ``cosyvoice3``
model (``_prepare_prompt``) adds that same prefix itself, but only when the
reference text has no ``<|endofprompt|>`` yet, so sending it is idempotent and
keeps one rule set for all transports. Triton does no text normalization and
no sentence splitting of its own: voxgate's normalizer and splitter do it.

**Not streamed.** Over HTTP a Triton model answers once, with the whole
waveform; incremental audio needs a *decoupled* model, which Triton serves
over gRPC streaming only (HTTP answers 501 "HTTP end point doesn't support
models with decoupled transaction policy"). So one HTTP request per voxgate
segment, ``streaming`` is False, the first audio arrives once the first
segment is fully synthesized, and ``read_timeout_s`` must cover the synthesis
of a whole segment. Deploy with ``DECOUPLED_MODE=False`` in run.sh; the health
probe reads the model config and says so when the model is decoupled.

**Binary, not JSON.** One second of 24 kHz audio as JSON floats is about
500 KB of text to print and parse; with the binary extension (``binary``,
default true) the prompt goes up and the waveform comes back as raw
little-endian float32 after the JSON header, whose length travels in the
``Inference-Header-Content-Length`` header. ``binary = false`` is plain
KServe v2 JSON both ways, for servers or proxies without the extension.
Responses are parsed in either form, whatever was asked for.

**Known upstream caveat.** The ``cosyvoice3`` model caches prompt features by
reference *text*: two different voices saying the same transcript share the
first one's features on that server. voxgate cannot work around it from the
client side; give prompts distinct transcripts.

    [engines.cosyvoice]
    kind = "cosyvoice-triton"
    options = { url = "http://triton:8000", model = "cosyvoice2" }
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from voxgate import errors
from voxgate.audio.pcm import Samples, sanitize
from voxgate.engines.base import EngineRequest, Mode, Notice
from voxgate.engines.cosyvoice.profile import parse_modes, parse_version
from voxgate.engines.cosyvoice.remote import CosyVoiceRemote
from voxgate.engines.cosyvoice.texts import upstream_texts
from voxgate.engines.remote import (
    PooledHttp,
    RemoteFailure,
    RemoteOptions,
    classify_httpx,
    classify_status,
)
from voxgate.errors import RequestError
from voxgate.text.cosyvoice_syntax import Version
from voxgate.text.split import Segment

PROMPT_RATE = 16000  # "sample rate hardcoded in server" (client_http.py)
HEADER_LENGTH = "Inference-Header-Content-Length"
OUTPUT = "waveform"
DEFAULT_SPEAKER = "default"

# What the BLS models can do without changes (see the module docstring).
SUPPORTED_MODES: dict[int, frozenset[Mode]] = {
    2: frozenset({Mode.ZERO_SHOT, Mode.SFT}),
    3: frozenset({Mode.ZERO_SHOT}),
}
_OWN_OPTIONS = ("model", "version", "binary", "speaker", "modes", "sample_rate")


def version_of_model(model: str) -> Version:
    """The CosyVoice version upstream's model names imply (``cosyvoice3``: 3)."""
    return 3 if "cosyvoice3" in model.lower() else 2


def parse_flag(value: bool | str) -> bool:
    """A boolean option, also when it comes from an environment string."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(f"expected true or false, got {value!r}")
        return text in ("true", "1", "yes", "on")
    return bool(value)


def choose_modes(version: Version, modes: Iterable[str] | None) -> frozenset[Mode]:
    supported = SUPPORTED_MODES[version]
    if modes is None:
        return supported
    chosen = parse_modes([modes] if isinstance(modes, str) else list(modes))
    if not chosen:
        raise ValueError("modes must name at least one mode")
    if chosen - supported:
        raise ValueError(
            f"Triton's cosyvoice{version} pipeline cannot do "
            f"{', '.join(sorted(chosen - supported))}; it supports "
            f"{', '.join(sorted(supported))}"
        )
    return chosen


@dataclass(frozen=True, slots=True)
class Tensor:
    """One input tensor of an inference request."""

    name: str
    datatype: str  # KServe v2 name: FP32, INT32, BYTES
    shape: tuple[int, ...]
    values: np.ndarray | list[str]

    def as_json(self) -> dict[str, Any]:
        data = self.values if isinstance(self.values, list) else self.values.reshape(-1).tolist()
        return {
            "name": self.name,
            "shape": list(self.shape),
            "datatype": self.datatype,
            "data": data,
        }

    def as_binary(self) -> tuple[dict[str, Any], bytes]:
        if isinstance(self.values, list):
            raw = b"".join(
                len(b).to_bytes(4, "little") + b for b in (s.encode("utf-8") for s in self.values)
            )
        else:
            raw = self.values.tobytes()
        header = {
            "name": self.name,
            "shape": list(self.shape),
            "datatype": self.datatype,
            "parameters": {"binary_data_size": len(raw)},
        }
        return header, raw


def encode_request(
    tensors: Iterable[Tensor], *, request_id: str, binary: bool
) -> tuple[bytes, dict[str, str]]:
    """An inference request body and its headers.

    With ``binary``, the float32 tensors travel as raw bytes after the JSON
    header and the waveform is asked for the same way; the small tensors stay
    JSON, readable in Triton's verbose log.
    """
    inputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in tensors:
        if binary and tensor.datatype == "FP32":
            header, raw = tensor.as_binary()
            inputs.append(header)
            blobs.append(raw)
        else:
            inputs.append(tensor.as_json())
    output: dict[str, Any] = {"name": OUTPUT}
    if binary:
        output["parameters"] = {"binary_data": True}
    document = {"id": request_id, "inputs": inputs, "outputs": [output]}
    head = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    # Triton gzips answers for clients that accept it; float audio hardly
    # compresses, so that would only cost its CPU and ours.
    headers = {"Accept-Encoding": "identity"}
    if blobs:
        headers[HEADER_LENGTH] = str(len(head))
        headers["Content-Type"] = "application/octet-stream"
        return head + b"".join(blobs), headers
    headers["Content-Type"] = "application/json"
    return head, headers


def _malformed(message: str) -> RemoteFailure:
    return RemoteFailure(
        f"malformed inference response: {message}", kind="protocol", retryable=True
    )


def decode_response(headers: Mapping[str, str], body: bytes, output: str = OUTPUT) -> Samples:
    """The ``output`` tensor of an inference response, binary or JSON, as float32."""
    length = headers.get(HEADER_LENGTH)
    if length is None:
        head, rest = body, b""
    else:
        if not length.strip().isdigit() or int(length) > len(body):
            raise _malformed(f"{HEADER_LENGTH} {length!r} for a body of {len(body)} bytes")
        head, rest = body[: int(length)], body[int(length) :]
    try:
        document = json.loads(head)
        outputs = document["outputs"]
        if not isinstance(outputs, list):
            raise TypeError("'outputs' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise _malformed(f"{exc}; starts with {head[:120]!r}") from None
    offset = 0
    found: Samples | None = None
    for item in outputs:
        size = (item.get("parameters") or {}).get("binary_data_size")
        raw = None
        if size is not None:
            raw = rest[offset : offset + int(size)]
            offset += int(size)
            if len(raw) != int(size):
                raise _malformed(f"output {item.get('name')!r} is cut short")
        if item.get("name") != output:
            continue
        if item.get("datatype") != "FP32":
            raise _malformed(f"output {output!r} is {item.get('datatype')}, not FP32")
        try:
            count = math.prod(int(d) for d in item.get("shape", []))
            if raw is not None:
                if len(raw) != 4 * count:
                    raise ValueError(f"{len(raw)} bytes for shape {item.get('shape')}")
                values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            else:
                values = np.asarray(item["data"], dtype=np.float32).reshape(-1)
                if values.size != count:
                    raise ValueError(f"{values.size} values for shape {item.get('shape')}")
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(f"output {output!r}: {exc}") from None
        found = sanitize(values)
    if offset != len(rest):
        raise _malformed(f"{len(rest) - offset} bytes of binary data belong to no output")
    if found is None:
        names = [item.get("name") for item in outputs]
        raise RemoteFailure(
            f"the response has no {output!r} output (outputs: {names}); is the model "
            "CosyVoice's Triton pipeline?",
            kind="rejected",
            retryable=False,
        )
    return found


def error_message(response: httpx.Response) -> str:
    """Triton's ``{"error": "..."}`` message, or the raw body."""
    text = response.text
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])
    return text


def config_problem(config: Any, model: str) -> str | None:
    """Why a model config (``GET /v2/models/<m>/config``) cannot serve this
    engine, or None. Anything unexpected in it is not held against the model."""
    if not isinstance(config, dict):
        return None
    policy = config.get("model_transaction_policy") or {}
    if isinstance(policy, dict) and policy.get("decoupled") is True:
        return (
            f"model {model!r} is decoupled (streaming over gRPC only); Triton refuses HTTP "
            "inference on it. Deploy it with DECOUPLED_MODE=False (decoupled: False in "
            "config.pbtxt)"
        )
    inputs = {i.get("name") for i in config.get("input") or [] if isinstance(i, dict)}
    outputs = {o.get("name") for o in config.get("output") or [] if isinstance(o, dict)}
    if inputs and outputs and ("target_text" not in inputs or OUTPUT not in outputs):
        return (
            f"model {model!r} does not look like CosyVoice's Triton pipeline "
            f"(inputs {sorted(map(str, inputs))}, outputs {sorted(map(str, outputs))})"
        )
    return None


class CosyVoiceTritonEngine(CosyVoiceRemote):
    """CosyVoice 2/3 on Triton over HTTP; see the module docstring.

    Built on :class:`CosyVoiceRemote` because the model behind Triton is
    CosyVoice with the same version rules (prompt prefixes, languages, markup,
    24 kHz); only the wire and the set of modes differ.
    """

    kind = "cosyvoice-triton"
    probe_name = "Triton server"
    streaming = False  # HTTP answers once per segment (decoupled is gRPC only)

    def __init__(
        self,
        name: str = "cosyvoice-triton",
        *,
        model: str = "cosyvoice2",
        version: int | str | None = None,
        binary: bool | str = True,
        speaker: str = DEFAULT_SPEAKER,
        modes: Iterable[str] | None = None,
        sample_rate: int | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(RemoteOptions.__dataclass_fields__))
        if unknown:
            raise TypeError(
                f"engine {name!r} ({self.kind}): unknown options {unknown}; known: "
                f"{', '.join(_OWN_OPTIONS)}, {', '.join(RemoteOptions.__dataclass_fields__)}"
            )
        if not model.strip():
            raise ValueError(f"engine {name!r}: model must name the Triton model")
        chosen_version = parse_version(version if version is not None else version_of_model(model))
        if chosen_version == 1:
            raise ValueError(
                f"engine {name!r}: upstream's Triton pipeline serves CosyVoice 2 and 3 only"
            )
        chosen = choose_modes(chosen_version, modes)
        if not speaker.strip():
            raise ValueError(f"engine {name!r}: speaker must be a non-empty name")
        super().__init__(
            name,
            version=chosen_version,
            speakers=[speaker] if Mode.SFT in chosen else [],
            modes=sorted(m.value for m in chosen),
            sample_rate=sample_rate,
            **options,
        )
        self.model = model
        self.binary = parse_flag(binary)
        self._model_path = f"/v2/models/{quote(model, safe='')}"
        self.http = PooledHttp(self.options)

    # -- connection ------------------------------------------------------------

    async def _probe(self) -> None:
        server = await self.http_client.get("/v2/health/ready")
        if server.status_code != 200:
            raise RuntimeError(f"the server is not ready (HTTP {server.status_code})")
        ready = await self.http_client.get(f"{self._model_path}/ready")
        if ready.status_code != 200:
            detail = error_message(ready).strip()
            raise RuntimeError(
                f"model {self.model!r} is not ready (HTTP {ready.status_code}"
                f"{': ' + detail if detail else ''}); the server's models are listed by "
                "POST /v2/repository/index"
            )
        # The config route may be restricted (--http-restricted-api); then
        # there is nothing more to learn.
        config = await self.http_client.get(f"{self._model_path}/config")
        if config.status_code == 200:
            try:
                problem = config_problem(config.json(), self.model)
            except ValueError:
                problem = None
            if problem:
                raise RuntimeError(problem)

    # -- requests --------------------------------------------------------------

    def check(self, request: EngineRequest) -> list[Notice]:
        notices = super().check(request)
        if request.mode == Mode.ZERO_SHOT and request.prompt is None:
            raise RequestError(
                f"zero_shot on engine {self.name!r} needs a voice prompt",
                code=errors.PROMPT_REQUIRED,
                hint="Send 3-15 seconds of the voice to imitate, or use a registered voice.",
                param="prompt",
            )
        return notices

    def tensors(self, request: EngineRequest, segment: Segment) -> list[Tensor]:
        """The input tensors of one segment's inference request."""
        texts = upstream_texts(self.profile.version, request, segment)
        tensors: list[Tensor] = []
        if request.mode == Mode.ZERO_SHOT:
            if request.prompt is None:
                raise ValueError("zero_shot needs a prompt")
            wav = np.ascontiguousarray(request.prompt.at_rate(PROMPT_RATE), dtype="<f4")
            tensors += [
                Tensor("reference_wav", "FP32", (1, wav.size), wav),
                Tensor("reference_wav_len", "INT32", (1, 1), np.array([wav.size], dtype="<i4")),
                Tensor("reference_text", "BYTES", (1, 1), [texts.prompt_text]),
            ]
        tensors.append(Tensor("target_text", "BYTES", (1, 1), [texts.tts_text]))
        return tensors

    async def _call(self, request: EngineRequest, segment: Segment) -> AsyncIterator[Samples]:
        # A fresh id per call: the cosyvoice2 model keys token2wav state by it.
        call_id = f"{request.request_id}-{segment.index}-{uuid.uuid4().hex[:8]}"
        body, headers = encode_request(
            self.tensors(request, segment), request_id=call_id, binary=self.binary
        )
        try:
            response = await self.http_client.post(
                f"{self._model_path}/infer", content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise classify_httpx(exc) from None
        if response.status_code != 200:
            raise self._failure(response)
        samples = decode_response(response.headers, response.content)
        if samples.size:
            yield samples

    def _failure(self, response: httpx.Response) -> RemoteFailure:
        message = error_message(response)
        if response.status_code == 501 or "decoupled transaction policy" in message:
            return RemoteFailure(
                f"HTTP {response.status_code}: {message.strip()[:300]} (model {self.model!r} "
                "is deployed decoupled, for gRPC streaming; HTTP needs DECOUPLED_MODE=False)",
                kind="rejected",
                retryable=False,
            )
        return classify_status(response.status_code, message, response.headers)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model": self.model,
            "encoding": "binary" if self.binary else "json",
            "speakers": [s.id for s in self.speakers()],
        }
