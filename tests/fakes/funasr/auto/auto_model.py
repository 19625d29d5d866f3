"""Stand-in for funasr.auto.auto_model.AutoModel (see the package docstring)."""

from __future__ import annotations

import copy
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from funasr import standin

MODEL_FILES = (
    "model.pt",
    "config.yaml",
    "configuration.json",
    "am.mvn",
    "chn_jpn_yue_eng_ko_spectok.bpe.model",
)
LANGUAGES = {"auto", "zh", "en", "yue", "ja", "ko", "nospeech"}  # SenseVoice's lid_dict keys
_PUNCTUATION = re.compile(r"[^\w\s']")


class AutoModel:
    def __init__(self, **kwargs: Any) -> None:
        if "vda_model" in kwargs:
            raise TypeError("`vda_model` is not a valid AutoModel argument; use `vad_model`")
        model = kwargs.get("model")
        if not isinstance(model, str) or not os.path.exists(model):
            raise RuntimeError(
                f"stand-in: {model!r} is not a local path; upstream would download it from "
                "the model hub, which the stand-in cannot do"
            )
        path = Path(model)
        missing = [f for f in MODEL_FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(f"stand-in: {path} lacks {', '.join(missing)}")
        config = (path / "config.yaml").read_text()
        if not re.search(r"^model:\s*SenseVoiceSmall\s*$", config, re.MULTILINE):
            raise RuntimeError(f"stand-in: {path}/config.yaml does not name SenseVoiceSmall")
        if kwargs.get("trust_remote_code", False):
            code = kwargs.get("remote_code", "model")
            raise ImportError(
                f"stand-in: trust_remote_code=True imports {code!r} (relative to the working "
                "directory) and installs the model's requirements.txt; not supported"
            )
        if kwargs.get("vad_model") is not None:
            raise NotImplementedError("stand-in: no VAD model")
        device = str(kwargs.get("device", "cuda"))
        if not device.startswith("cpu"):  # upstream: CUDA unavailable -> CPU, silently
            device = "cpu"
            kwargs["batch_size"] = 1
        self.kwargs: dict[str, Any] = {**kwargs, "device": device, "model_path": str(path)}
        self.model_path = str(path)
        self.model = object()  # upstream: the torch module
        self.vad_model = None
        self.punc_model = None
        self.spk_model = None
        self._base_kwargs = copy.deepcopy(self.kwargs)

    def generate(
        self, input: Any, input_len: Any = None, progress_callback: Any = None, **cfg: Any
    ) -> list[dict[str, Any]]:
        # As upstream: reset to the load-time options, then write this call's
        # into the shared kwargs, and read them back while inferring.
        self.kwargs = copy.deepcopy(self._base_kwargs)
        self.kwargs.pop("cache", None)
        self.kwargs.update(cfg)
        standin.calls.append(
            {**{k: v for k, v in cfg.items() if k != "cache"}, "thread": _thread()}
        )
        inputs = input if isinstance(input, list | tuple) else [input]
        standin.enter()
        try:
            results = [self._infer(x) for x in inputs]
        finally:
            standin.leave()
        if progress_callback is not None:
            progress_callback(len(inputs), len(inputs))
        return results

    def _infer(self, audio: Any) -> dict[str, Any]:
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
            raise TypeError("stand-in: input must be a 1-D float32 numpy array (16 kHz)")
        entry = standin.lookup(Path(self.model_path), audio)
        itn = bool(self.kwargs.get("use_itn", False))
        norm = "<|withitn|>" if itn else "<|woitn|>"
        key = "rand_key_" + standin.fingerprint(audio)[:13]
        if entry is None:
            return {"key": key, "text": f"<|nospeech|><|EMO_UNKNOWN|><|Event_UNK|>{norm}"}
        if entry.get("delay_s"):
            time.sleep(float(entry["delay_s"]))
        if entry.get("error"):
            raise RuntimeError(entry["error"])
        asked = self.kwargs.get("language", "auto")
        language = asked if asked in LANGUAGES and asked != "auto" else entry["language"]
        text = str(entry["text"])
        if not itn:  # without inverse text normalization: no punctuation, lower case
            text = _PUNCTUATION.sub("", text).lower()
        tags = f"<|{language}|><|{entry['emotion']}|><|{entry['event']}|>{norm}"
        return {"key": key, "text": tags + text}


def _thread() -> str:
    return threading.current_thread().name
