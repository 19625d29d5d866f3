"""Stand-in for CosyVoice's Gradio web UI (upstream ``webui.py``, commit ace7c47),
on the stand-in model, with the real Gradio.

What a client meets is upstream's: a ``gr.Blocks`` app with the same
components in the same order with the same choices, one click handler named
``generate_audio`` (so its API name is ``/generate_audio``) taking, in order,
tts_text, mode (预训练音色 / 3s极速复刻 / 跨语种复刻 / 自然语言控制), the SFT speaker
dropdown, prompt_text, prompt_wav_upload and prompt_wav_record (``Audio``,
``type='filepath'``), instruct_text, seed, stream (a Radio of ``('否', False),
('是', True)``) and speed, and answering with a streaming ``gr.Audio`` fed one
``(sample_rate, float array)`` per model output; ``demo.queue(max_size=4,
default_concurrency_limit=2)``. Instruct mode calls v1's
``inference_instruct`` with the SFT speaker, as upstream's UI does. Text
reaches the model verbatim. Differences, none visible on the wire: the
prompt's rate is read with ``wave`` (upstream uses ``torchaudio.info``, not
installed here), the app listens on 127.0.0.1 only, and analytics are off so
that it works offline.

Gradio encodes a streamed audio output to AAC with the ``ffmpeg`` program.
Where ffmpeg is not on PATH, the one the ``imageio-ffmpeg`` wheel ships is put
there for this process (a real ffmpeg, not a fake).

Test knobs (not upstream): ``--fail-first N`` (``faults.Faults``) raises
``gr.Error`` for the first N calls, ``--stall-s`` sleeps before the first
chunk, ``--die-after-chunks`` kills the process mid-stream; ``--error-after-chunks
N`` raises after N chunks (a model crash with the server still up),
``--chunk-delay-s`` sleeps after each chunk (a slow GPU) and
``--hold-after-chunks N`` (0: before the first) stops there until the knob is
changed (a model that hangs, released at the test's moment). An undocumented
endpoint ``faults`` (JSON in, JSON out; outside the queue, so reachable with a
plain ``POST /gradio_api/run/faults`` even when the queue is full) sets the
knobs at run time and reports ``calls`` (generate_audio calls so far),
``chunks`` (model chunks produced so far), ``active`` (calls working in the
model or a knob right now) and ``last`` (the last call's inputs), so that one
process serves a whole test module.

    PYTHONPATH=tests/fakes:tests python -m fakes.official.webui \\
        --port 8000 --model_dir /tmp/CosyVoice-300M-SFT
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakes.official.faults import Faults

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

log = logging.getLogger("webui")

inference_mode_list = ["预训练音色", "3s极速复刻", "跨语种复刻", "自然语言控制"]
instruct_dict = {
    "预训练音色": "1. 选择预训练音色\n2. 点击生成音频按钮",
    "3s极速复刻": "1. 选择prompt音频文件，或录入prompt音频，注意不超过30s，若同时提供，"
    "优先选择prompt音频文件\n2. 输入prompt文本\n3. 点击生成音频按钮",
    "跨语种复刻": "1. 选择prompt音频文件，或录入prompt音频，注意不超过30s，若同时提供，"
    "优先选择prompt音频文件\n2. 点击生成音频按钮",
    "自然语言控制": "1. 选择预训练音色\n2. 输入instruct文本\n3. 点击生成音频按钮",
}
stream_mode_list = [("否", False), ("是", True)]
prompt_sr = 16000

gr: Any = None  # gradio, imported in main() once ffmpeg is on PATH
cosyvoice: Any = None
default_data: np.ndarray = np.zeros(0)
sft_spk: list[str] = [""]


@dataclass
class Knobs:
    """The run-time fault knobs and counters (see the module docstring)."""

    faults: Faults = field(default_factory=Faults)
    error_after_chunks: int = 0
    chunk_delay_s: float = 0.0
    hold_after_chunks: int = -1
    calls: int = 0  # generate_audio calls
    chunks: int = 0  # model chunks produced, all calls together
    active: int = 0  # calls inside the model (or a fault knob) right now
    last: dict[str, Any] = field(default_factory=dict)  # the last call's inputs
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        with self.lock:
            self.active += 1
        try:
            yield
        finally:
            with self.lock:
                self.active -= 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": self.calls,
                "chunks": self.chunks,
                "active": self.active,
                "last": self.last,
                "fail_first": self.faults.fail_first,
                "stall_s": self.faults.stall_s,
                "error_after_chunks": self.error_after_chunks,
                "chunk_delay_s": self.chunk_delay_s,
                "hold_after_chunks": self.hold_after_chunks,
            }


knobs = Knobs()


def ensure_ffmpeg() -> None:
    """Gradio runs ``ffmpeg`` to stream audio; use the wheel's if PATH has none."""
    if shutil.which("ffmpeg"):
        return
    try:
        import imageio_ffmpeg
    except ImportError:
        sys.exit("Gradio streams audio through ffmpeg: put it on PATH or install imageio-ffmpeg")
    folder = Path(tempfile.mkdtemp(prefix="webui-ffmpeg-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def set_all_random_seed(seed: float) -> None:
    # upstream: cosyvoice.utils.common.set_all_random_seed
    value = int(seed)
    random.seed(value)
    np.random.seed(value)
    import torch

    torch.manual_seed(value)


def wav_sample_rate(path: str) -> int:
    with wave.open(path, "rb") as w:
        return w.getframerate()


def generate_seed() -> dict[str, Any]:
    seed = random.randint(1, 100000000)
    return {"__type__": "update", "value": seed}


def change_instruction(mode_checkbox_group: str) -> str:
    return instruct_dict[mode_checkbox_group]


def generate_audio(
    tts_text: str,
    mode_checkbox_group: str,
    sft_dropdown: str,
    prompt_text: str,
    prompt_wav_upload: str | None,
    prompt_wav_record: str | None,
    instruct_text: str,
    seed: float,
    stream: bool,
    speed: float,
) -> Iterator[tuple[int, np.ndarray]]:
    with knobs.lock:
        knobs.calls += 1
        knobs.last = {
            "tts_text": tts_text, "mode": mode_checkbox_group, "speaker": sft_dropdown,
            "prompt_text": prompt_text, "prompt_wav_upload": prompt_wav_upload is not None,
            "prompt_wav_record": prompt_wav_record is not None, "instruct_text": instruct_text,
            "seed": seed, "stream": stream, "speed": speed,
        }  # fmt: skip
    with knobs.busy():
        if knobs.faults.should_fail():
            raise gr.Error("injected failure before any audio (--fail-first)")
        outputs = _generate(
            tts_text, mode_checkbox_group, sft_dropdown, prompt_text, prompt_wav_upload,
            prompt_wav_record, instruct_text, seed, stream, speed,
        )  # fmt: skip
        knobs.faults.before_first_chunk()
        hold(0)
    sent = 0
    while True:
        # Only the time between Gradio asking for a chunk and getting it counts
        # as busy: a cancelled generator is abandoned at its yield, not closed.
        with knobs.busy():
            if sent:
                knobs.faults.after_chunk(sent)
                if knobs.chunk_delay_s:
                    time.sleep(knobs.chunk_delay_s)
                hold(sent)
                if knobs.error_after_chunks and sent >= knobs.error_after_chunks:
                    raise RuntimeError("injected failure mid-stream (--error-after-chunks)")
            output = next(outputs, None)
            if output is None:
                return
            with knobs.lock:
                knobs.chunks += 1
        sent += 1
        yield output


def hold(sent: int) -> None:
    while knobs.hold_after_chunks == sent:
        time.sleep(0.02)


def _generate(
    tts_text: str,
    mode_checkbox_group: str,
    sft_dropdown: str,
    prompt_text: str,
    prompt_wav_upload: str | None,
    prompt_wav_record: str | None,
    instruct_text: str,
    seed: float,
    stream: bool,
    speed: float,
) -> Iterator[tuple[int, np.ndarray]]:
    """Upstream's generate_audio: its checks (which warn, yield a second of
    silence and carry on, as upstream's do) and its four model calls."""
    if prompt_wav_upload is not None:
        prompt_wav = prompt_wav_upload
    elif prompt_wav_record is not None:
        prompt_wav = prompt_wav_record
    else:
        prompt_wav = None
    if mode_checkbox_group in ["自然语言控制"]:
        if instruct_text == "":
            gr.Warning("您正在使用自然语言控制模式, 请输入instruct文本")
            yield (cosyvoice.sample_rate, default_data)
        if prompt_wav is not None or prompt_text != "":
            gr.Info("您正在使用自然语言控制模式, prompt音频/prompt文本会被忽略")
    if mode_checkbox_group in ["跨语种复刻"]:
        if instruct_text != "":
            gr.Info("您正在使用跨语种复刻模式, instruct文本会被忽略")
        if prompt_wav is None:
            gr.Warning("您正在使用跨语种复刻模式, 请提供prompt音频")
            yield (cosyvoice.sample_rate, default_data)
        gr.Info("您正在使用跨语种复刻模式, 请确保合成文本和prompt文本为不同语言")
    if mode_checkbox_group in ["3s极速复刻", "跨语种复刻"]:
        if prompt_wav is None:
            gr.Warning("prompt音频为空，您是否忘记输入prompt音频？")
            yield (cosyvoice.sample_rate, default_data)
        if wav_sample_rate(prompt_wav) < prompt_sr:  # upstream too reads a missing prompt
            gr.Warning(f"prompt音频采样率{wav_sample_rate(prompt_wav)}低于{prompt_sr}")
            yield (cosyvoice.sample_rate, default_data)
    if mode_checkbox_group in ["预训练音色"]:
        if instruct_text != "" or prompt_wav is not None or prompt_text != "":
            gr.Info("您正在使用预训练音色模式，prompt文本/prompt音频/instruct文本会被忽略！")
        if sft_dropdown == "":
            gr.Warning("没有可用的预训练音色！")
            yield (cosyvoice.sample_rate, default_data)
    if mode_checkbox_group in ["3s极速复刻"]:
        if prompt_text == "":
            gr.Warning("prompt文本为空，您是否忘记输入prompt文本？")
            yield (cosyvoice.sample_rate, default_data)
        if instruct_text != "":
            gr.Info("您正在使用3s极速复刻模式，预训练音色/instruct文本会被忽略！")

    set_all_random_seed(seed)
    if mode_checkbox_group == "预训练音色":
        log.info("get sft inference request")
        model_output = cosyvoice.inference_sft(tts_text, sft_dropdown, stream=stream, speed=speed)
    elif mode_checkbox_group == "3s极速复刻":
        log.info("get zero_shot inference request")
        model_output = cosyvoice.inference_zero_shot(
            tts_text, prompt_text, prompt_wav, stream=stream, speed=speed
        )
    elif mode_checkbox_group == "跨语种复刻":
        log.info("get cross_lingual inference request")
        model_output = cosyvoice.inference_cross_lingual(
            tts_text, prompt_wav, stream=stream, speed=speed
        )
    else:
        log.info("get instruct inference request")
        model_output = cosyvoice.inference_instruct(
            tts_text, sft_dropdown, instruct_text, stream=stream, speed=speed
        )
    for i in model_output:
        yield (cosyvoice.sample_rate, i["tts_speech"].numpy().flatten())


def faults_api(settings: str) -> str:
    """Set fault knobs from a JSON object; answer the knobs and counters."""
    values = json.loads(settings or "{}")
    with knobs.lock:
        if "fail_first" in values:
            knobs.faults.fail_first = int(values["fail_first"])
            knobs.faults._seen = 0
        if "stall_s" in values:
            knobs.faults.stall_s = float(values["stall_s"])
        if "error_after_chunks" in values:
            knobs.error_after_chunks = int(values["error_after_chunks"])
        if "chunk_delay_s" in values:
            knobs.chunk_delay_s = float(values["chunk_delay_s"])
        if "hold_after_chunks" in values:
            knobs.hold_after_chunks = int(values["hold_after_chunks"])
    return json.dumps(knobs.snapshot())


def main_ui(port: int) -> None:
    with gr.Blocks(analytics_enabled=False) as demo:
        gr.Markdown(
            "### 代码库 [CosyVoice](https://github.com/FunAudioLLM/CosyVoice) "
            "预训练模型 [CosyVoice-300M](https://www.modelscope.cn/models/iic/CosyVoice-300M) "
            "[CosyVoice-300M-Instruct]"
            "(https://www.modelscope.cn/models/iic/CosyVoice-300M-Instruct) "
            "[CosyVoice-300M-SFT](https://www.modelscope.cn/models/iic/CosyVoice-300M-SFT)"
        )
        gr.Markdown("#### 请输入需要合成的文本，选择推理模式，并按照提示步骤进行操作")

        tts_text = gr.Textbox(
            label="输入合成文本",
            lines=1,
            value="我是通义实验室语音团队全新推出的生成式语音大模型，提供舒适自然的语音合成能力。",
        )
        with gr.Row():
            mode_checkbox_group = gr.Radio(
                choices=inference_mode_list, label="选择推理模式", value=inference_mode_list[0]
            )
            instruction_text = gr.Text(
                label="操作步骤", value=instruct_dict[inference_mode_list[0]], scale=1
            )
            sft_dropdown = gr.Dropdown(
                choices=sft_spk, label="选择预训练音色", value=sft_spk[0], scale=1
            )
            stream = gr.Radio(
                choices=stream_mode_list, label="是否流式推理", value=stream_mode_list[0][1]
            )
            speed = gr.Number(
                value=1, label="速度调节(仅支持非流式推理)", minimum=0.5, maximum=2.0, step=0.1
            )
            with gr.Column(scale=1):
                seed_button = gr.Button(value="\U0001f3b2")
                seed = gr.Number(value=0, label="随机推理种子")

        with gr.Row():
            prompt_wav_upload = gr.Audio(
                sources="upload", type="filepath", label="选择prompt音频文件，注意采样率不低于16khz"
            )
            prompt_wav_record = gr.Audio(
                sources="microphone", type="filepath", label="录制prompt音频文件"
            )
        prompt_text = gr.Textbox(
            label="输入prompt文本",
            lines=1,
            placeholder="请输入prompt文本，需与prompt音频内容一致，暂时不支持自动识别...",
            value="",
        )
        instruct_text = gr.Textbox(
            label="输入instruct文本", lines=1, placeholder="请输入instruct文本.", value=""
        )

        generate_button = gr.Button("生成音频")

        audio_output = gr.Audio(label="合成音频", autoplay=True, streaming=True)

        seed_button.click(generate_seed, inputs=[], outputs=seed)
        generate_button.click(
            generate_audio,
            inputs=[tts_text, mode_checkbox_group, sft_dropdown, prompt_text, prompt_wav_upload,
                    prompt_wav_record, instruct_text, seed, stream, speed],
            outputs=[audio_output],
        )  # fmt: skip
        mode_checkbox_group.change(
            fn=change_instruction, inputs=[mode_checkbox_group], outputs=[instruction_text]
        )
        # Test knob, not upstream: hidden from the API page, outside the queue.
        gr.api(
            faults_api,
            api_name="faults",
            api_visibility="undocumented",
            queue=False,
            concurrency_limit=None,
        )
    demo.queue(max_size=4, default_concurrency_limit=2)
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, quiet=True)


def main(argv: list[str] | None = None) -> None:
    global cosyvoice, default_data, sft_spk, gr, knobs
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model_dir", type=str, required=True)
    Faults.add_arguments(parser)
    parser.add_argument("--error-after-chunks", type=int, default=0)
    parser.add_argument("--chunk-delay-s", type=float, default=0.0)
    parser.add_argument("--hold-after-chunks", type=int, default=-1)
    args = parser.parse_args(argv)

    ensure_ffmpeg()
    import gradio

    gr = gradio
    from cosyvoice.cli.cosyvoice import AutoModel

    cosyvoice = AutoModel(model_dir=args.model_dir)
    sft_spk = cosyvoice.list_available_spks()
    if len(sft_spk) == 0:
        sft_spk = [""]
    default_data = np.zeros(cosyvoice.sample_rate)
    knobs = Knobs(
        Faults.from_args(args), args.error_after_chunks, args.chunk_delay_s, args.hold_after_chunks
    )
    print(f"listening on {args.port}", file=sys.stderr, flush=True)
    main_ui(args.port)


if __name__ == "__main__":
    main()
