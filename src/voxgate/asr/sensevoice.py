"""``sensevoice``: FunASR's SenseVoiceSmall, the recognizer CosyVoice's demo uses.

Mandarin, English, Cantonese, Japanese and Korean, with punctuation and
inverse text normalization ("50 pieces", not "fifty pieces"): what a CosyVoice
prompt transcript should look like. Installed with
``pip install 'voxgate[sensevoice]'`` (funasr and torch); the model is read
from a local directory:

    [asr]
    kind = "sensevoice"
    options = { model_dir = "/models/SenseVoiceSmall", device = "cuda:0", concurrency = 1 }

How it calls FunASR, and why:

* ``AutoModel(model=<dir>, trust_remote_code=False, ...)``: FunASR ships the
  SenseVoiceSmall class itself. Trusting remote code would import ``model.py``
  from the working directory and pip-install a ``requirements.txt`` found in
  the model directory, at run time, on a server;
* ``disable_update=True`` (no version check over the network), and
  ``disable_pbar=True`` (no progress bar per prompt in the server's log);
* no VAD model: prompts are 3-30 s, within what SenseVoiceSmall takes whole;
* the files are checked before loading: FunASR loads a directory without
  ``model.pt`` with random weights and only prints a line about it;
* one ``AutoModel`` per thread slot: ``generate`` writes each call's options
  (language, ITN) into the model's shared settings before reading them, so
  two concurrent calls could swap languages. Each costs about 1 GB (on the
  GPU with ``device = "cuda:0"``), hence ``concurrency = 1`` by default; a
  prompt takes well under a second on a GPU;
* the tags are read here, not with ``rich_transcription_postprocess``: that
  turns emotion and event tags into emoji (a happy speaker gets a trailing
  "😊"), which would end up in the transcript CosyVoice reads.
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

from voxgate.asr.audio import NO_WORDS
from voxgate.asr.base import Transcript, TranscriptionUnavailable
from voxgate.asr.modeldir import LocalModelTranscriber, local_model_dir
from voxgate.audio.pcm import Samples
from voxgate.diagnostics import Check, fail, ok, warn

log = logging.getLogger(__name__)

LANGUAGES = frozenset({"zh", "en", "yue", "ja", "ko"})
# What ModelScope's iic/SenseVoiceSmall holds and FunASR reads when loading it.
MODEL_FILES = (
    "model.pt",
    "config.yaml",
    "configuration.json",
    "am.mvn",
    "chn_jpn_yue_eng_ko_spectok.bpe.model",
)
MODEL_ID = "iic/SenseVoiceSmall"
INSTALL_HINT = "pip install 'voxgate[sensevoice]' (funasr and torch)"
_TAG = re.compile(r"<\|([^|]*)\|>")


def _download(model_id: str, directory: str) -> str:
    return f"modelscope download --model {model_id} --local_dir {directory}"


def parse_output(text: str) -> tuple[str, str | None]:
    """The words and the language of SenseVoice's raw output, which leads
    with tags: ``<|en|><|NEUTRAL|><|Speech|><|withitn|>Hello.`` (one such
    group per piece when FunASR merges pieces)."""
    language = next((t for t in _TAG.findall(text) if t in LANGUAGES), None)
    words = ""
    for piece in _TAG.split(text)[::2]:  # split() puts the tag names at odd indices
        piece = " ".join(piece.split())
        if not piece:
            continue
        joint = " " if words and not (_is_cjk(words[-1]) or _is_cjk(piece[0])) else ""
        words += joint + piece
    return words, language


def _is_cjk(char: str) -> bool:
    """Scripts written without spaces between words (Han, kana)."""
    return "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff"


class SenseVoiceTranscriber(LocalModelTranscriber[Any]):
    kind = "sensevoice"
    package = "funasr"
    distribution = "funasr"
    install_hint = INSTALL_HINT
    model_files = MODEL_FILES
    model_description = "SenseVoice"

    def __init__(
        self,
        *,
        model_dir: str,
        device: str = "cpu",
        concurrency: int = 1,
    ) -> None:
        self.model_dir = local_model_dir(model_dir, kind=self.kind, download=_download)
        self.device = device
        super().__init__(concurrency)

    @property
    def languages(self) -> frozenset[str]:
        return LANGUAGES

    def _unsupported(self, language: str) -> str:
        known = ", ".join(sorted(LANGUAGES))
        return (
            f"sensevoice transcribes {known}, not {language!r}; "
            "faster-whisper transcribes any language"
        )

    # -- loading ---------------------------------------------------------------------

    def _download_fix(self) -> str:
        return f"Download the whole model: {_download(MODEL_ID, str(self.model_dir))}"

    def _load(self, package: Any) -> list[Any]:
        log.info("asr sensevoice: loading %s on %s", self.model_dir, self.device)
        return [
            package.AutoModel(
                model=str(self.model_dir),
                trust_remote_code=False,
                device=self.device,
                disable_update=True,
                disable_pbar=True,
            )
            for _ in range(self.concurrency)
        ]

    # -- transcription ----------------------------------------------------------------

    def _recognize(self, model: Any, audio: Samples, language: str | None) -> Transcript:
        results = model.generate(
            input=audio,
            cache={},
            language=language or "auto",
            use_itn=True,
        )
        if not results:
            raise TranscriptionUnavailable(NO_WORDS)
        text, detected = parse_output(str(results[0].get("text", "")))
        return Transcript(text, detected or language, self.kind)

    # -- diagnosis (voxgate doctor) ---------------------------------------------------

    def _check_device(self, package: Any | None) -> list[Check]:
        """Checked even without funasr: torch is what runs on the device."""
        if not self.device.startswith("cuda"):
            return [ok("device", self.device)]
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            return [fail("package torch", "not installed", INSTALL_HINT)]
        checks = [ok("package torch", str(torch.__version__))]
        if not torch.cuda.is_available():
            detail = f"device {self.device!r}, but CUDA is not available: FunASR falls back to CPU"
            fix = "Install a CUDA build of torch and the NVIDIA driver, or set device = 'cpu'."
            checks.append(warn("device", detail, fix))
        else:
            checks.append(ok("device", self.device))
        return checks
