"""Stand-in for cosyvoice.cli.frontend.CosyVoiceFrontEnd (same methods, same
model_input keys). Counts prompt feature extractions so tests can see caching."""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from typing import Any

import torch
from cosyvoice.utils.file_utils import load_wav

_SENTENCE = re.compile(r"(?<=[。！？!?；;.])\s*")


class CosyVoiceFrontEnd:
    def __init__(self, spk2info: str, allowed_special: str = "all") -> None:
        self.spk2info: dict[str, dict[str, Any]] = (
            torch.load(spk2info, map_location="cpu") if os.path.exists(spk2info) else {}
        )
        self.allowed_special = allowed_special
        self.extractions = 0  # prompt feature extractions (the expensive part upstream)

    def _extract_text_token(self, text: Any) -> tuple[Any, torch.Tensor]:
        if isinstance(text, Generator):
            return text, torch.tensor([0], dtype=torch.int32)
        token = torch.tensor([[ord(c) for c in text]], dtype=torch.int32)
        return token, torch.tensor([token.shape[1]], dtype=torch.int32)

    def _extract_speech_token(self, prompt_wav: Any) -> tuple[torch.Tensor, torch.Tensor]:
        speech = load_wav(prompt_wav, 16000)
        frames = speech[0, : speech.shape[1] // 640 * 640].reshape(-1, 640)
        token = (frames.abs().mean(dim=1) * 4096).to(torch.int32).clamp(0, 4095).unsqueeze(0)
        return token, torch.tensor([token.shape[1]], dtype=torch.int32)

    def _extract_spk_embedding(self, prompt_wav: Any) -> torch.Tensor:
        speech = load_wav(prompt_wav, 16000)
        self.extractions += 1
        level = float(speech.abs().mean()) if speech.numel() else 0.0
        return torch.full((1, 192), level, dtype=torch.float32)

    def _extract_speech_feat(self, prompt_wav: Any) -> tuple[torch.Tensor, torch.Tensor]:
        speech = load_wav(prompt_wav, 24000)
        feat = torch.zeros(1, speech.shape[1] // 480, 80)
        return feat, torch.tensor([feat.shape[1]], dtype=torch.int32)

    def text_normalize(self, text: Any, split: bool = True, text_frontend: bool = True) -> Any:
        if isinstance(text, Generator):
            return [text]
        if "<|" in text and "|>" in text:  # upstream skips normalization and splitting
            return [text] if split is True else text
        text = text.strip()
        if split is False:
            return text
        pieces = [p for p in _SENTENCE.split(text) if p.strip()]
        return pieces or [text]

    def frontend_sft(self, tts_text: Any, spk_id: str) -> dict[str, Any]:
        tts_text_token, tts_text_token_len = self._extract_text_token(tts_text)
        embedding = self.spk2info[spk_id]["embedding"]
        return {
            "text": tts_text_token,
            "text_len": tts_text_token_len,
            "llm_embedding": embedding,
            "flow_embedding": embedding,
        }

    def frontend_zero_shot(
        self,
        tts_text: Any,
        prompt_text: str,
        prompt_wav: Any,
        resample_rate: int,
        zero_shot_spk_id: str,
    ) -> dict[str, Any]:
        tts_text_token, tts_text_token_len = self._extract_text_token(tts_text)
        if zero_shot_spk_id == "":
            prompt_text_token, prompt_text_token_len = self._extract_text_token(prompt_text)
            speech_feat, speech_feat_len = self._extract_speech_feat(prompt_wav)
            speech_token, speech_token_len = self._extract_speech_token(prompt_wav)
            embedding = self._extract_spk_embedding(prompt_wav)
            model_input = {
                "prompt_text": prompt_text_token,
                "prompt_text_len": prompt_text_token_len,
                "llm_prompt_speech_token": speech_token,
                "llm_prompt_speech_token_len": speech_token_len,
                "flow_prompt_speech_token": speech_token,
                "flow_prompt_speech_token_len": speech_token_len,
                "prompt_speech_feat": speech_feat,
                "prompt_speech_feat_len": speech_feat_len,
                "llm_embedding": embedding,
                "flow_embedding": embedding,
            }
        else:
            model_input = {**self.spk2info[zero_shot_spk_id]}
        model_input["text"] = tts_text_token
        model_input["text_len"] = tts_text_token_len
        return model_input

    def frontend_cross_lingual(
        self, tts_text: Any, prompt_wav: Any, resample_rate: int, zero_shot_spk_id: str
    ) -> dict[str, Any]:
        model_input = self.frontend_zero_shot(
            tts_text, "", prompt_wav, resample_rate, zero_shot_spk_id
        )
        for key in (
            "prompt_text",
            "prompt_text_len",
            "llm_prompt_speech_token",
            "llm_prompt_speech_token_len",
        ):
            model_input.pop(key, None)
        return model_input

    def frontend_instruct(self, tts_text: Any, spk_id: str, instruct_text: str) -> dict[str, Any]:
        model_input = self.frontend_sft(tts_text, spk_id)
        del model_input["llm_embedding"]
        instruct_token, instruct_token_len = self._extract_text_token(instruct_text)
        model_input["prompt_text"] = instruct_token
        model_input["prompt_text_len"] = instruct_token_len
        return model_input

    def frontend_instruct2(
        self,
        tts_text: Any,
        instruct_text: str,
        prompt_wav: Any,
        resample_rate: int,
        zero_shot_spk_id: str,
    ) -> dict[str, Any]:
        # Upstream bug reproduced: with a cached speaker, the cached prompt_text
        # (from registration) replaces the instruction.
        model_input = self.frontend_zero_shot(
            tts_text, instruct_text, prompt_wav, resample_rate, zero_shot_spk_id
        )
        model_input.pop("llm_prompt_speech_token", None)
        model_input.pop("llm_prompt_speech_token_len", None)
        return model_input
