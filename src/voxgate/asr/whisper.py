"""``faster-whisper``: Whisper on CTranslate2, for prompts in any language.

Installed with ``pip install 'voxgate[whisper]'``; the model is a local
CTranslate2 directory (``model.bin``, ``config.json``, ``tokenizer.json``,
``vocabulary.*``), e.g. Systran/faster-whisper-large-v3:

    [asr]
    kind = "faster-whisper"
    options = { model_dir = "/models/faster-whisper-large-v3", device = "cuda" }

How it calls faster-whisper, and why:

* **one model, shared**: CTranslate2 runs concurrent ``transcribe`` calls
  from several threads, in parallel with ``num_workers``, which is set to
  ``concurrency``, so one copy of the weights serves every thread slot;
* **the segments are read in the thread**: ``transcribe`` returns a lazy
  generator and the decoding happens while it is read, so joining the text
  on the event loop would block it for the whole decode;
* **compute type** ``int8`` on the CPU, ``float16`` on CUDA unless set: the
  fast choices that every CPU and GPU of the last years supports;
* **language**: an English-only model (``*.en``) transcribes everything as
  English, even when asked for Chinese; once loaded, the transcriber knows
  the model's languages and refuses the others with a reason instead;
* **confidence**: the mean token probability of the segments
  (``exp(avg_logprob)``), a rough but honest 0-1 score.
"""

from __future__ import annotations

import importlib
import logging
import math
from typing import Any, Literal

from voxgate.asr.base import Transcript
from voxgate.asr.modeldir import LocalModelTranscriber, local_model_dir
from voxgate.audio.pcm import Samples
from voxgate.diagnostics import Check, fail, ok, warn

log = logging.getLogger(__name__)

# What a CTranslate2 Whisper directory holds (faster-whisper's own download
# list). Without tokenizer.json faster-whisper fetches one from the Hub.
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.*")
# faster-whisper's short names, resolved on the Hugging Face Hub.
MODEL_NAMES = {
    "tiny": "Systran/faster-whisper-tiny",
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "base": "Systran/faster-whisper-base",
    "base.en": "Systran/faster-whisper-base.en",
    "small": "Systran/faster-whisper-small",
    "small.en": "Systran/faster-whisper-small.en",
    "medium": "Systran/faster-whisper-medium",
    "medium.en": "Systran/faster-whisper-medium.en",
    "large-v1": "Systran/faster-whisper-large-v1",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large": "Systran/faster-whisper-large-v3",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
INSTALL_HINT = "pip install 'voxgate[whisper]' (faster-whisper)"
DEFAULT_COMPUTE = {"cpu": "int8", "cuda": "float16"}


def _download(name: str, directory: str) -> str:
    repo = MODEL_NAMES.get(name, name)
    return f"hf download {repo} --local-dir {directory}"


class WhisperTranscriber(LocalModelTranscriber[Any]):
    kind = "faster-whisper"
    package = "faster_whisper"
    distribution = "faster-whisper"
    install_hint = INSTALL_HINT
    model_files = MODEL_FILES
    model_description = "CTranslate2 Whisper"

    def __init__(
        self,
        *,
        model_dir: str,
        device: Literal["cpu", "cuda"] = "cpu",
        compute_type: str | None = None,
        beam_size: int = 5,
        concurrency: int = 1,
    ) -> None:
        self.model_dir = local_model_dir(
            model_dir, kind=self.kind, download=_download, names=list(MODEL_NAMES)
        )
        if device not in DEFAULT_COMPUTE:
            raise ValueError(f"asr faster-whisper: device must be cpu or cuda, not {device!r}")
        if beam_size < 1:
            raise ValueError("asr faster-whisper: beam_size must be at least 1")
        self.device = device
        self.compute_type = compute_type or DEFAULT_COMPUTE[device]
        self.beam_size = beam_size
        self._languages: frozenset[str] | None = None  # known once the model is loaded
        super().__init__(concurrency)

    @property
    def languages(self) -> frozenset[str] | None:
        return self._languages

    def _unsupported(self, language: str) -> str:
        return (
            f"the faster-whisper model in {self.model_dir} does not transcribe {language!r} "
            "(an English-only *.en model?); use a multilingual one"
        )

    # -- loading ---------------------------------------------------------------------

    def _download_fix(self) -> str:
        return f"Download the whole model, e.g. {_download('large-v3', str(self.model_dir))}"

    def _load(self, package: Any) -> list[Any]:
        log.info(
            "asr faster-whisper: loading %s on %s (%s)",
            *(self.model_dir, self.device, self.compute_type),
        )
        model = package.WhisperModel(
            str(self.model_dir),
            device=self.device,
            compute_type=self.compute_type,
            num_workers=self.concurrency,
        )
        self._languages = frozenset(model.supported_languages)
        return [model] * self.concurrency  # thread-safe: shared by every slot

    # -- transcription ----------------------------------------------------------------

    def _recognize(self, model: Any, audio: Samples, language: str | None) -> Transcript:
        segments, info = model.transcribe(audio, language=language, beam_size=self.beam_size)
        texts: list[str] = []
        logprobs: list[float] = []
        for segment in segments:  # the decoding happens here, segment by segment
            texts.append(segment.text)
            logprobs.append(segment.avg_logprob)
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else None
        return Transcript("".join(texts).strip(), info.language or language, self.kind, confidence)

    # -- diagnosis (voxgate doctor) ---------------------------------------------------

    def _check_device(self, package: Any | None) -> list[Check]:
        """The device and compute type, asked of CTranslate2 (which loads no model).
        Nothing without faster-whisper: CTranslate2 comes with it, so the failed
        package check already says what to install."""
        if package is None:
            return []
        try:
            ctranslate2 = importlib.import_module("ctranslate2")
        except ImportError:
            return [warn("device", "ctranslate2 is not importable: device not checked")]
        if self.device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            fix = "Install the NVIDIA driver and CUDA 12 libraries, or set device = 'cpu'."
            return [fail("device", "device 'cuda', but CTranslate2 sees no CUDA device", fix)]
        supported = set(ctranslate2.get_supported_compute_types(self.device))
        if self.compute_type not in supported:
            fix = f"Set compute_type to one of {', '.join(sorted(supported))}."
            detail = f"{self.device} does not support compute_type {self.compute_type!r}"
            return [fail("device", detail, fix)]
        return [ok("device", f"{self.device}, {self.compute_type}")]
