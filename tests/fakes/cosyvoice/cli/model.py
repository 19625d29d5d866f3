"""Stand-in for cosyvoice.cli.model: the streaming loop, per-request state and
shared hop length of upstream's models, with deterministic fake audio."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
import torch

POLL_S = float(os.environ.get("FAKE_COSYVOICE_POLL_S", "0.1"))
TOKEN_S = float(os.environ.get("FAKE_COSYVOICE_TOKEN_S", "0.002"))
TOKEN_RATE = 25  # speech tokens per second of audio
TOKENS_PER_CHAR = 3


class _Flow:
    input_frame_rate = TOKEN_RATE
    pre_lookahead_len = 3


def _codes(text: Any) -> Iterator[int]:
    """Character codes of a text token tensor, or of the pieces of a text
    generator as they arrive (upstream's bi-streaming input, CosyVoice2/3)."""
    if isinstance(text, Generator):
        for piece in text:
            yield from (ord(c) for c in piece)
    else:
        yield from text[0].tolist()


def speech_tokens(text: Any, prompt_text: torch.Tensor, embedding: torch.Tensor) -> Iterator[int]:
    """What the 'LLM' generates: a function of the text, the prompt text and the
    speaker; for generator input, token by token as the text arrives."""
    voice = round(float(embedding.sum()) * 1000) if embedding.numel() else 0
    prompt = int(prompt_text.sum()) if prompt_text.numel() else 0
    for i, t in enumerate(_codes(text)):
        for k in range(TOKENS_PER_CHAR):
            yield (t * 31 + k * 7 + voice * 13 + prompt * 17 + i) % 4096


def tokens_to_audio(tokens: list[int], sample_rate: int) -> np.ndarray:
    per = sample_rate // TOKEN_RATE
    if not tokens:
        return np.zeros(0, dtype=np.float32)
    t = np.arange(per, dtype=np.float32) / sample_rate
    return np.concatenate(
        [0.2 * np.sin(2 * math.pi * (120 + (tok % 64) * 8) * t) for tok in tokens]
    ).astype(np.float32)


class CosyVoiceModel:
    def __init__(self, sample_rate: int, fp16: bool = False) -> None:
        self.fp16 = fp16
        self.sample_rate = sample_rate
        self.flow = _Flow()
        self.token_min_hop_len = 2 * self.flow.input_frame_rate
        self.token_max_hop_len = 4 * self.flow.input_frame_rate
        self.token_overlap_len = 20
        self.stream_scale_factor = 1
        self.lock = threading.Lock()
        self.tts_speech_token_dict: dict[str, list[int]] = {}
        self.llm_end_dict: dict[str, bool] = {}
        self.hift_cache_dict: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}

    def load(self, llm_model: str, flow_model: str, hift_model: str) -> None:
        for path in (llm_model, flow_model, hift_model):
            if not os.path.exists(path):
                raise FileNotFoundError(path)
        self.loaded["weights"] = (llm_model, flow_model, hift_model)

    def load_jit(self, *paths: str) -> None:
        self.loaded["jit"] = paths

    def load_trt(self, *args: Any) -> None:
        self.loaded["trt"] = args

    def load_vllm(self, model_dir: str) -> None:
        self.loaded["vllm"] = model_dir

    def llm_job(
        self,
        text: Any,
        prompt_text: Any,
        llm_prompt_speech_token: Any,
        llm_embedding: Any,
        uuid: str,
    ) -> None:
        if isinstance(text, Generator):
            assert self.__class__.__name__ != "CosyVoiceModel", (
                "streaming input text is only implemented for CosyVoice2/3"
            )
        for token in speech_tokens(text, prompt_text, llm_embedding):
            time.sleep(TOKEN_S)
            self.tts_speech_token_dict[uuid].append(token)
        self.llm_end_dict[uuid] = True

    def token2wav(
        self, token: list[int], uuid: str, finalize: bool = False, speed: float = 1.0
    ) -> torch.Tensor:
        audio = tokens_to_audio(token, self.sample_rate)
        if speed != 1.0:
            assert self.hift_cache_dict[uuid] is None, (
                "speed change only support non-stream inference mode"
            )
            n = int(len(audio) / speed)
            audio = np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio)
        return torch.from_numpy(audio.astype(np.float32)).unsqueeze(0)

    def tts(self, text=torch.zeros(1, 0, dtype=torch.int32), flow_embedding=torch.zeros(0, 192),
            llm_embedding=torch.zeros(0, 192), prompt_text=torch.zeros(1, 0, dtype=torch.int32),
            llm_prompt_speech_token=torch.zeros(1, 0, dtype=torch.int32),
            flow_prompt_speech_token=torch.zeros(1, 0, dtype=torch.int32),
            prompt_speech_feat=torch.zeros(1, 0, 80),
            source_speech_token=torch.zeros(1, 0, dtype=torch.int32),
            stream=False, speed=1.0, **kwargs):  # fmt: skip
        this_uuid = str(uuid.uuid1())
        with self.lock:
            self.tts_speech_token_dict[this_uuid], self.llm_end_dict[this_uuid] = [], False
            self.hift_cache_dict[this_uuid] = None
        embedding = llm_embedding if llm_embedding.numel() else flow_embedding
        p = threading.Thread(
            target=self.llm_job,
            args=(text, prompt_text, llm_prompt_speech_token, embedding, this_uuid),
        )
        p.start()
        if stream is True:
            token_hop_len = self.token_min_hop_len  # v1 keeps its hop length local
            offset = 0
            while True:
                time.sleep(POLL_S)
                tokens = self.tts_speech_token_dict[this_uuid]
                if len(tokens) - offset >= token_hop_len + self.token_overlap_len:
                    self.hift_cache_dict[this_uuid] = "streaming"
                    yield {
                        "tts_speech": self.token2wav(
                            tokens[offset : offset + token_hop_len], this_uuid
                        )
                    }
                    offset += token_hop_len
                    token_hop_len = min(
                        self.token_max_hop_len, int(token_hop_len * self.stream_scale_factor)
                    )
                if (
                    self.llm_end_dict[this_uuid] is True
                    and len(self.tts_speech_token_dict[this_uuid]) - offset
                    < token_hop_len + self.token_overlap_len
                ):
                    break
            p.join()
            yield {
                "tts_speech": self.token2wav(
                    self.tts_speech_token_dict[this_uuid][offset:], this_uuid, finalize=True
                )
            }
        else:
            p.join()
            yield {
                "tts_speech": self.token2wav(
                    self.tts_speech_token_dict[this_uuid], this_uuid, finalize=True, speed=speed
                )
            }
        with self.lock:
            self.tts_speech_token_dict.pop(this_uuid)
            self.llm_end_dict.pop(this_uuid)
            self.hift_cache_dict.pop(this_uuid)


class CosyVoice2Model(CosyVoiceModel):
    def __init__(self, sample_rate: int, fp16: bool = False) -> None:
        super().__init__(sample_rate, fp16)
        self.token_hop_len = 25
        self.token_max_hop_len = 4 * self.token_hop_len
        self.stream_scale_factor = 2

    def tts(self, text=torch.zeros(1, 0, dtype=torch.int32), flow_embedding=torch.zeros(0, 192),
            llm_embedding=torch.zeros(0, 192), prompt_text=torch.zeros(1, 0, dtype=torch.int32),
            llm_prompt_speech_token=torch.zeros(1, 0, dtype=torch.int32),
            flow_prompt_speech_token=torch.zeros(1, 0, dtype=torch.int32),
            prompt_speech_feat=torch.zeros(1, 0, 80),
            source_speech_token=torch.zeros(1, 0, dtype=torch.int32),
            stream=False, speed=1.0, **kwargs):  # fmt: skip
        this_uuid = str(uuid.uuid1())
        with self.lock:
            self.tts_speech_token_dict[this_uuid], self.llm_end_dict[this_uuid] = [], False
            self.hift_cache_dict[this_uuid] = None
        embedding = llm_embedding if llm_embedding.numel() else flow_embedding
        p = threading.Thread(
            target=self.llm_job,
            args=(text, prompt_text, llm_prompt_speech_token, embedding, this_uuid),
        )
        p.start()
        if stream is True:
            token_offset = 0
            prompt_len = flow_prompt_speech_token.shape[1]
            prompt_token_pad = int(
                np.ceil(prompt_len / self.token_hop_len) * self.token_hop_len - prompt_len
            )
            while True:
                time.sleep(POLL_S)
                this_token_hop_len = (
                    self.token_hop_len + prompt_token_pad
                    if token_offset == 0
                    else self.token_hop_len
                )
                tokens = self.tts_speech_token_dict[this_uuid]
                if len(tokens) - token_offset >= this_token_hop_len + self.flow.pre_lookahead_len:
                    chunk = tokens[token_offset : token_offset + this_token_hop_len]
                    token_offset += this_token_hop_len
                    # The upstream bug: a request-level value kept on the shared model.
                    self.token_hop_len = min(
                        self.token_max_hop_len, self.token_hop_len * self.stream_scale_factor
                    )
                    yield {"tts_speech": self.token2wav(chunk, this_uuid)}
                if (
                    self.llm_end_dict[this_uuid] is True
                    and len(self.tts_speech_token_dict[this_uuid]) - token_offset
                    < this_token_hop_len + self.flow.pre_lookahead_len
                ):
                    break
            p.join()
            yield {
                "tts_speech": self.token2wav(
                    self.tts_speech_token_dict[this_uuid][token_offset:], this_uuid, finalize=True
                )
            }
        else:
            p.join()
            yield {
                "tts_speech": self.token2wav(
                    self.tts_speech_token_dict[this_uuid], this_uuid, finalize=True, speed=speed
                )
            }
        with self.lock:
            self.tts_speech_token_dict.pop(this_uuid)
            self.llm_end_dict.pop(this_uuid)
            self.hift_cache_dict.pop(this_uuid)


class CosyVoice3Model(CosyVoice2Model):
    pass


logging.getLogger(__name__).debug("stand-in cosyvoice model loaded")
