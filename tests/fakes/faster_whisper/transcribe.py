"""Stand-in for faster_whisper.transcribe: ``WhisperModel`` and its result
types (see the package docstring for what is real and what is fake)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from faster_whisper import standin

SAMPLE_RATE = 16000
_LANGUAGE_CODES = tuple(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha "
    "haw he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr "
    "ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg "
    "th tk tl tr tt uk ur uz vi yi yo zh yue".split()
)
_HALF_PRECISION = {"float16", "int8_float16", "bfloat16", "int8_bfloat16"}


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None
    temperature: float | None


@dataclass
class TranscriptionInfo:
    language: str
    language_probability: float
    duration: float
    duration_after_vad: float
    all_language_probs: list[tuple[str, float]] | None
    transcription_options: Any  # upstream: a TranscriptionOptions dataclass
    vad_options: Any


class _Ct2Whisper:
    """Stand-in for ctranslate2.models.Whisper: what faster-whisper asks of it."""

    def __init__(self, is_multilingual: bool, num_workers: int) -> None:
        self.is_multilingual = is_multilingual
        self.workers = threading.Semaphore(num_workers)


class WhisperModel:
    def __init__(
        self,
        model_size_or_path: str,
        device: str = "auto",
        device_index: int | list[int] = 0,
        compute_type: str = "default",
        cpu_threads: int = 0,
        num_workers: int = 1,
        download_root: str | None = None,
        local_files_only: bool = False,
        files: dict[str, Any] | None = None,
        revision: str | None = None,
        use_auth_token: str | bool | None = None,
        **model_kwargs: Any,
    ) -> None:
        self.logger = logging.getLogger("faster_whisper")
        if files:
            raise NotImplementedError("stand-in: no in-memory model files")
        if not os.path.isdir(model_size_or_path):
            raise RuntimeError(
                f"stand-in: {model_size_or_path!r} is not a directory; upstream would download "
                "it from the Hugging Face Hub, which the stand-in cannot do"
            )
        path = Path(model_size_or_path)
        for name in ("model.bin", "config.json"):
            if not (path / name).is_file():
                raise RuntimeError(f"Unable to open file '{name}' in model '{path}'")
        if not any(path.glob("vocabulary.*")):
            raise RuntimeError(f"Unable to open file 'vocabulary.txt' in model '{path}'")
        if not (path / "tokenizer.json").is_file():
            raise RuntimeError(
                f"stand-in: {path} has no tokenizer.json; upstream would download "
                "openai/whisper-tiny's from the Hugging Face Hub"
            )
        if device == "cuda":
            raise RuntimeError("CUDA failed with error no CUDA-capable device is detected")
        if device not in ("cpu", "auto"):
            raise ValueError(f"unsupported device {device}")
        if compute_type in _HALF_PRECISION:
            raise ValueError(
                f"Requested {compute_type} compute type, but the target device or backend do "
                "not support efficient float16 computation."
            )
        config = json.loads((path / "config.json").read_text())
        self.model = _Ct2Whisper(bool(config.get("lang_ids")), num_workers)
        self._path = path  # stand-in only: where its table of recordings is

    @property
    def supported_languages(self) -> list[str]:
        return list(_LANGUAGE_CODES) if self.model.is_multilingual else ["en"]

    def transcribe(
        self,
        audio: str | BinaryIO | np.ndarray[Any, Any],
        language: str | None = None,
        task: str = "transcribe",
        log_progress: bool = False,
        beam_size: int = 5,
        best_of: int = 5,
        patience: float = 1,
        length_penalty: float = 1,
        repetition_penalty: float = 1,
        no_repeat_ngram_size: int = 0,
        temperature: float | list[float] | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        compression_ratio_threshold: float | None = 2.4,
        log_prob_threshold: float | None = -1.0,
        no_speech_threshold: float | None = 0.6,
        condition_on_previous_text: bool = True,
        prompt_reset_on_temperature: float = 0.5,
        initial_prompt: str | Iterable[int] | None = None,
        prefix: str | None = None,
        suppress_blank: bool = True,
        suppress_tokens: list[int] | tuple[int, ...] | None = (-1,),
        without_timestamps: bool = False,
        max_initial_timestamp: float = 1.0,
        word_timestamps: bool = False,
        prepend_punctuations: str = "\"'“¿([{-",
        append_punctuations: str = "\"'.。,，!！?？:：”)]}、",
        multilingual: bool = False,
        vad_filter: bool = False,
        vad_parameters: dict[str, Any] | None = None,
        max_new_tokens: int | None = None,
        chunk_length: int | None = None,
        clip_timestamps: str | list[float] = "0",
        hallucination_silence_threshold: float | None = None,
        hotwords: str | None = None,
        language_detection_threshold: float | None = 0.5,
        language_detection_segments: int = 1,
    ) -> tuple[Iterator[Segment], TranscriptionInfo]:
        if not isinstance(audio, np.ndarray):
            raise NotImplementedError("stand-in: audio must be a numpy array, not a file")
        if audio.dtype != np.float32 or audio.ndim != 1:
            raise TypeError("stand-in: audio must be 1-D float32 samples at 16 kHz")
        duration = audio.shape[0] / SAMPLE_RATE
        entry = standin.lookup(self._path, audio)
        if language is None:
            if not self.model.is_multilingual:
                language, probability = "en", 1.0
            elif entry is not None:
                language, probability = entry["language"], float(entry["language_probability"])
            else:
                language, probability = "en", 0.31
        else:
            if not self.model.is_multilingual and language != "en":
                self.logger.warning(
                    "The current model is English-only but the language parameter is set to "
                    "'%s'; using 'en' instead.",
                    language,
                )
                language = "en"
            probability = 1.0
        if self.model.is_multilingual and language not in _LANGUAGE_CODES:
            raise ValueError(
                f"'{language}' is not a valid language code (accepted language codes: "
                f"{', '.join(_LANGUAGE_CODES)})"
            )
        options = {"beam_size": beam_size, "task": task, "temperature": temperature}
        standin.calls.append(
            {"language": language, **options, "thread": threading.current_thread().name}
        )
        info = TranscriptionInfo(
            language=language,
            language_probability=probability,
            duration=duration,
            duration_after_vad=duration,
            all_language_probs=None,
            transcription_options=options,
            vad_options=vad_parameters,
        )
        return self._segments(entry, duration), info

    def _segments(self, entry: dict[str, Any] | None, duration: float) -> Iterator[Segment]:
        """Decodes while it is read, as upstream's generate_segments does."""
        if entry is None:
            return
        texts: list[str] = entry["segments"]
        with self.model.workers:
            standin.enter()
            try:
                if entry.get("error"):
                    raise RuntimeError(entry["error"])
                step = duration / max(len(texts), 1)
                for i, text in enumerate(texts):
                    time.sleep(float(entry.get("delay_s") or 0) / len(texts))
                    standin.consumed_in.append(threading.current_thread().name)
                    yield Segment(
                        id=i + 1,
                        seek=0,
                        start=round(i * step, 2),
                        end=round((i + 1) * step, 2),
                        text=text,
                        tokens=[50365 + i],
                        avg_logprob=float(entry["avg_logprob"]),
                        compression_ratio=1.2,
                        no_speech_prob=0.01,
                        words=None,
                        temperature=0.0,
                    )
            finally:
                standin.leave()
