"""What a CosyVoice model version can do, shared by every CosyVoice engine.

The in-process engine and the remote ones (the official HTTP, gRPC and Gradio
servers) put the same model behind different transports, so what a request
may ask for depends on the model version, not on the transport:

* v1 (CosyVoice-300M family, 22050 Hz): SFT speakers and instruct with a
  speaker (the -Instruct model), zero-shot and cross-lingual with language
  tags (the base model). Which of these a checkpoint was trained for is not
  written in its files; the directory name tells (``-SFT``, ``-Instruct``),
  and the ``modes`` option overrides.
* v2 (CosyVoice2-0.5B, 24000 Hz): zero-shot, cross-lingual, instruct from a
  prompt (``inference_instruct2``), text-in streaming; SFT only if the model
  ships ``spk2info.pt`` speakers.
* v3 (Fun-CosyVoice3-0.5B, 24000 Hz): v2 plus pinyin and ARPAbet
  pronunciation annotations and more languages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from voxgate.engines.base import Capabilities, Mode, Speaker
from voxgate.text.cosyvoice_syntax import Version
from voxgate.text.markup import Feature

SAMPLE_RATES: dict[int, int] = {1: 22050, 2: 24000, 3: 24000}
CONFIG_FILES: dict[int, str] = {1: "cosyvoice.yaml", 2: "cosyvoice2.yaml", 3: "cosyvoice3.yaml"}
# What upstream loads from a model directory (the reference, "Model files").
MODEL_FILES: dict[int, tuple[str, ...]] = {
    v: ("llm.pt", "flow.pt", "hift.pt", "campplus.onnx", f"speech_tokenizer_v{v}.onnx")
    + (("CosyVoice-BlankEN",) if v >= 2 else ())
    for v in (1, 2, 3)
}

_LANGUAGES: dict[int, frozenset[str]] = {
    1: frozenset({"zh", "en", "ja", "yue", "ko"}),
    2: frozenset({"zh", "en", "ja", "yue", "ko"}),
    3: frozenset({"zh", "en", "ja", "yue", "ko", "de", "es", "fr", "it", "ru"}),
}
_MARKUP: dict[int, frozenset[Feature]] = {
    1: frozenset({Feature.EVENTS, Feature.EMPHASIS, Feature.CONTROL}),
    2: frozenset({Feature.EVENTS, Feature.EMPHASIS, Feature.CONTROL}),
    3: frozenset(
        {Feature.EVENTS, Feature.EMPHASIS, Feature.CONTROL, Feature.PINYIN, Feature.ARPABET}
    ),
}
# Upstream's frontend cuts text into segments of about 60-80 units; voxgate
# splits first (upstream does not split text with tags), at the same size.
SEGMENT_CHARS = 80

# The built-in speakers of CosyVoice-300M-SFT and -Instruct, and the OpenAI
# voice names that land on them (so OpenAI clients work unchanged).
_BUILTIN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "中文女": ("zh", "female", ("alloy", "nova", "shimmer")),
    "中文男": ("zh", "male", ("echo", "onyx", "fable")),
    "英文女": ("en", "female", ("coral", "sage")),
    "英文男": ("en", "male", ("ash", "ballad", "verse")),
    "日语男": ("ja", "male", ()),
    "粤语女": ("yue", "female", ()),
    "韩语女": ("ko", "female", ()),
}


def parse_version(value: object) -> Version:
    text = str(value).strip().lower().removeprefix("v").removeprefix("cosyvoice")
    if text in ("", "1"):
        return 1
    if text == "2":
        return 2
    if text == "3":
        return 3
    raise ValueError(f"unknown CosyVoice version {value!r}; use 1, 2 or 3")


def parse_modes(values: Iterable[str] | str) -> frozenset[Mode]:
    if isinstance(values, str):  # "sft" or "sft,instruct" from an environment variable
        values = [v.strip() for v in values.split(",") if v.strip()]
    try:
        return frozenset(Mode(v) for v in values)
    except ValueError:
        raise ValueError(
            f"unknown mode in {list(values)!r}; modes are {', '.join(m.value for m in Mode)}"
        ) from None


def default_modes(version: Version, *, has_speakers: bool, variant: str = "") -> frozenset[Mode]:
    """The modes a checkpoint was trained for; ``variant`` is its directory name."""
    sft = {Mode.SFT} if has_speakers else set()
    if version == 1:
        name = variant.lower()
        if "instruct" in name:
            return frozenset({*sft, Mode.INSTRUCT})
        if "sft" in name:
            return frozenset(sft)
        return frozenset({*sft, Mode.ZERO_SHOT, Mode.CROSS_LINGUAL})
    return frozenset({*sft, Mode.ZERO_SHOT, Mode.CROSS_LINGUAL, Mode.INSTRUCT})


def prompt_modes(version: Version) -> frozenset[Mode]:
    """Modes that imitate a voice prompt. v1 instruct uses an SFT speaker;
    v2/v3 instruct (``inference_instruct2``) uses a prompt."""
    modes = {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL}
    if version >= 2:
        modes.add(Mode.INSTRUCT)
    return frozenset(modes)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    version: Version
    modes: frozenset[Mode]
    sample_rate: int

    def capabilities(
        self, *, concurrency: int, streaming: bool, text_streaming: bool = True
    ) -> Capabilities:
        return Capabilities(
            modes=self.modes,
            languages=_LANGUAGES[self.version],
            sample_rate=self.sample_rate,
            streaming=streaming,
            max_concurrency=concurrency,
            speed_range=None,  # see the engines: voxgate stretches tempo itself
            markup=_MARKUP[self.version],
            text_streaming=text_streaming and self.version >= 2,
            max_segment_chars=SEGMENT_CHARS,
            prompt_modes=prompt_modes(self.version) & self.modes,
        )


def make_profile(
    version: Version,
    *,
    speakers: Iterable[str] = (),
    modes: Iterable[str] | str | None = None,
    sample_rate: int | None = None,
    variant: str = "",
) -> ModelProfile:
    has_speakers = any(True for _ in speakers)
    chosen = (
        parse_modes(modes)
        if modes is not None
        else default_modes(version, has_speakers=has_speakers, variant=variant)
    )
    return ModelProfile(version, chosen, sample_rate or SAMPLE_RATES[version])


def speakers_from_names(names: Iterable[str]) -> tuple[Speaker, ...]:
    """Speakers for upstream speaker ids; the built-in names get a language,
    a gender and OpenAI aliases, others (fine-tuned speakers) keep their id."""
    out = []
    for name in names:
        language, gender, aliases = _BUILTIN.get(name, ("", None, ()))
        out.append(
            Speaker(
                id=name,
                name=name,
                language=language,
                gender=gender,
                description="CosyVoice speaker",
                aliases=aliases,
            )
        )
    return tuple(out)


def default_speaker_names(version: Version) -> list[str]:
    """Speakers an official server has when the model's own list is not
    available to voxgate (remote engines): the v1 SFT set, none for v2/v3."""
    return list(_BUILTIN) if version == 1 else []
