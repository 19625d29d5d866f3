"""The texts of one upstream CosyVoice call, for any CosyVoice engine.

Every CosyVoice transport (in-process, the official HTTP, gRPC and Gradio
servers) takes the same three texts, so they are made in one place: the
segment rendered in CosyVoice's own markup, Japanese in katakana for v3
(upstream's examples convert first: the model was trained on katakana), and
the prompt-prefix rules of :mod:`voxgate.text.cosyvoice_syntax`.
"""

from __future__ import annotations

from voxgate import errors
from voxgate.engines.base import EngineRequest, Mode
from voxgate.errors import RequestError
from voxgate.text.cosyvoice_syntax import Texts, Version, apply
from voxgate.text.kana import to_katakana
from voxgate.text.markup import Node, Span, Text, render
from voxgate.text.script import LANGUAGE_OF_SCRIPT, Script
from voxgate.text.split import Segment

PROMPT_RATE_CAP = 24000  # the highest rate CosyVoice reads a prompt at


def _katakana(nodes: tuple[Node, ...]) -> tuple[Node, ...]:
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(Text(to_katakana(node.text)))
        elif isinstance(node, Span):
            out.append(Span(node.name, _katakana(node.children)))
        else:
            out.append(node)
    return tuple(out)


def segment_text(version: Version, segment: Segment) -> str:
    """A segment in CosyVoice markup, as the model version reads it."""
    if version == 3 and segment.script == Script.KANA:
        return render(_katakana(segment.nodes))
    return segment.text


def segment_language(request: EngineRequest, segment: Segment) -> str | None:
    if request.language:
        return request.language
    return LANGUAGE_OF_SCRIPT.get(segment.script) if segment.script else None


def upstream_texts(version: Version, request: EngineRequest, segment: Segment) -> Texts:
    prompt = request.prompt
    return apply(
        version,
        request.mode.value,
        segment_text(version, segment),
        prompt_text=prompt.text if prompt else None,
        instruct=request.instruct,
        language=segment_language(request, segment),
    )


def require_transcript(request: EngineRequest, engine: str) -> None:
    """Zero-shot imitation conditions on the prompt's transcript: without it
    the model reads the prompt's words into the output."""
    prompt = request.prompt
    if request.mode == Mode.ZERO_SHOT and prompt is not None and not (prompt.text or "").strip():
        raise RequestError(
            f"zero_shot on engine {engine!r} needs the transcript of the prompt",
            code=errors.PROMPT_TEXT_REQUIRED,
            hint="Send prompt_text: the exact words spoken in the prompt audio. "
            "Or use mode cross_lingual, which needs no transcript.",
            param="prompt_text",
        )


def prompt_wav(request: EngineRequest) -> bytes:
    """The prompt as a 16-bit WAV file at no more than 24 kHz: what CosyVoice
    reads it at (16 kHz for tokens, 24 kHz for features), no bigger."""
    if request.prompt is None:
        raise ValueError("the request has no prompt")
    return request.prompt.wav(min(request.prompt.sample_rate, PROMPT_RATE_CAP))
