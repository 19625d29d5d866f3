"""Stand-in for cosyvoice.cli.cosyvoice: the classes and AutoModel with upstream's
signatures and generator behaviour (see the package docstring)."""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from typing import Any

import torch
from cosyvoice.cli.frontend import CosyVoiceFrontEnd
from cosyvoice.cli.model import CosyVoice2Model, CosyVoice3Model, CosyVoiceModel

log = logging.getLogger("cosyvoice")


def snapshot_download(model_id: str) -> str:
    """Upstream downloads from ModelScope here; these machines have no network."""
    raise OSError(f"cannot download {model_id!r}: ModelScope is unreachable")


def _configs(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        raise ValueError(f"{path} not found!")
    configs: dict[str, Any] = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip():
                configs[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return configs


class CosyVoice:
    _yaml = "cosyvoice.yaml"
    _model_class: type[CosyVoiceModel] = CosyVoiceModel

    def __init__(self, model_dir, load_jit=False, load_trt=False, fp16=False, trt_concurrent=1):
        self._setup(
            model_dir, fp16, load_jit=load_jit, load_trt=load_trt, trt_concurrent=trt_concurrent
        )

    def _setup(self, model_dir: str, fp16: bool, **flags: Any) -> None:
        self.model_dir = model_dir
        self.fp16 = fp16
        if not os.path.exists(model_dir):
            model_dir = snapshot_download(model_dir)
        configs = _configs(f"{model_dir}/{self._yaml}")
        self.frontend = CosyVoiceFrontEnd(
            f"{model_dir}/spk2info.pt", configs.get("allowed_special", "all")
        )
        self.sample_rate = int(configs.get("sample_rate", 22050))
        self.requested_flags = {**flags, "fp16": fp16}  # for tests: what the caller passed
        accelerate = [k for k in ("load_jit", "load_trt", "load_vllm") if flags.get(k)]
        if torch.cuda.is_available() is False and (accelerate or fp16):
            log.warning("no cuda device, set load_jit/load_trt/load_vllm/fp16 to False")
            flags = {k: (False if k.startswith("load_") else v) for k, v in flags.items()}
            self.fp16 = fp16 = False
        self.flags = {**flags, "fp16": fp16}
        self.model = self._model_class(self.sample_rate, fp16)
        self.model.load(f"{model_dir}/llm.pt", f"{model_dir}/flow.pt", f"{model_dir}/hift.pt")

    def list_available_spks(self):
        return list(self.frontend.spk2info.keys())

    def add_zero_shot_spk(self, prompt_text, prompt_wav, zero_shot_spk_id):
        assert zero_shot_spk_id != "", "do not use empty zero_shot_spk_id"
        model_input = self.frontend.frontend_zero_shot(
            "", prompt_text, prompt_wav, self.sample_rate, ""
        )
        del model_input["text"]
        del model_input["text_len"]
        self.frontend.spk2info[zero_shot_spk_id] = model_input
        return True

    def save_spkinfo(self):
        torch.save(self.frontend.spk2info, f"{self.model_dir}/spk2info.pt")

    def _run(
        self, texts: Any, make_input: Any, stream: bool, speed: float
    ) -> Generator[dict[str, Any], None, None]:
        for i in texts:
            yield from self.model.tts(**make_input(i), stream=stream, speed=speed)

    def inference_sft(self, tts_text, spk_id, stream=False, speed=1.0, text_frontend=True):
        texts = self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend)
        yield from self._run(texts, lambda i: self.frontend.frontend_sft(i, spk_id), stream, speed)

    def inference_zero_shot(
        self,
        tts_text,
        prompt_text,
        prompt_wav,
        zero_shot_spk_id="",
        stream=False,
        speed=1.0,
        text_frontend=True,
    ):
        prompt_text = self.frontend.text_normalize(
            prompt_text, split=False, text_frontend=text_frontend
        )
        texts = self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend)

        def make(i):
            return self.frontend.frontend_zero_shot(
                i, prompt_text, prompt_wav, self.sample_rate, zero_shot_spk_id
            )

        yield from self._run(texts, make, stream, speed)

    def inference_cross_lingual(
        self, tts_text, prompt_wav, zero_shot_spk_id="", stream=False, speed=1.0, text_frontend=True
    ):
        texts = self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend)

        def make(i):
            return self.frontend.frontend_cross_lingual(
                i, prompt_wav, self.sample_rate, zero_shot_spk_id
            )

        yield from self._run(texts, make, stream, speed)

    def inference_instruct(
        self, tts_text, spk_id, instruct_text, stream=False, speed=1.0, text_frontend=True
    ):
        assert self.__class__.__name__ == "CosyVoice", (
            "inference_instruct is only implemented for CosyVoice!"
        )
        instruct_text = self.frontend.text_normalize(
            instruct_text, split=False, text_frontend=text_frontend
        )
        texts = self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend)
        make = lambda i: self.frontend.frontend_instruct(i, spk_id, instruct_text)  # noqa: E731
        yield from self._run(texts, make, stream, speed)


class CosyVoice2(CosyVoice):
    _yaml = "cosyvoice2.yaml"
    _model_class = CosyVoice2Model

    def __init__(
        self,
        model_dir,
        load_jit=False,
        load_trt=False,
        load_vllm=False,
        fp16=False,
        trt_concurrent=1,
    ):
        self._setup(
            model_dir,
            fp16,
            load_jit=load_jit,
            load_trt=load_trt,
            load_vllm=load_vllm,
            trt_concurrent=trt_concurrent,
        )

    def inference_instruct2(
        self,
        tts_text,
        instruct_text,
        prompt_wav,
        zero_shot_spk_id="",
        stream=False,
        speed=1.0,
        text_frontend=True,
    ):
        texts = self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend)

        def make(i):
            return self.frontend.frontend_instruct2(
                i, instruct_text, prompt_wav, self.sample_rate, zero_shot_spk_id
            )

        yield from self._run(texts, make, stream, speed)


class CosyVoice3(CosyVoice2):
    _yaml = "cosyvoice3.yaml"
    _model_class = CosyVoice3Model

    def __init__(self, model_dir, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1):
        self._setup(
            model_dir, fp16, load_trt=load_trt, load_vllm=load_vllm, trt_concurrent=trt_concurrent
        )


def AutoModel(**kwargs):
    if not os.path.exists(kwargs["model_dir"]):
        kwargs["model_dir"] = snapshot_download(kwargs["model_dir"])
    if os.path.exists(f"{kwargs['model_dir']}/cosyvoice.yaml"):
        return CosyVoice(**kwargs)
    if os.path.exists(f"{kwargs['model_dir']}/cosyvoice2.yaml"):
        return CosyVoice2(**kwargs)
    if os.path.exists(f"{kwargs['model_dir']}/cosyvoice3.yaml"):
        return CosyVoice3(**kwargs)
    raise TypeError("No valid model type found!")
