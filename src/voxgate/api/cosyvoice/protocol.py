"""One call of CosyVoice's official API, whatever carried it.

The official FastAPI server (``/inference_*`` routes) and gRPC service
(``cosyvoice.CosyVoice/Inference``) take the same few fields per mode. Both
drop-in surfaces build an :class:`OfficialCall` from their wire format and
hand the pipeline the :class:`~voxgate.pipeline.SynthesisRequest` it makes.

Clients of upstream type CosyVoice's control text themselves (the v3 system
prompt, ``<|endofprompt|>``, a v1 ``<|en|>`` language tag), because upstream
passes text to the model verbatim. voxgate's engines add that text for the
model behind them, so it is taken off here: a client written for a v2 server
keeps working when voxgate runs v3, or espeak.

The answer on both surfaces is upstream's: headerless little-endian int16
mono PCM at the engine's own sample rate (22050 Hz for v1, 24000 Hz for v2/v3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from voxgate.audio.formats import AudioFormat
from voxgate.audio.prompt import PromptAudio
from voxgate.engines.base import Mode
from voxgate.pipeline import SynthesisRequest
from voxgate.store.models import DEFAULT_TENANT
from voxgate.text.cosyvoice_syntax import split_language_tag, strip

Route = Literal["sft", "zero_shot", "cross_lingual", "instruct", "instruct2"]

# sft is left to the voice: a built-in speaker speaks sft, a registered voice
# (its id in spk_id) zero-shot or cross-lingual.
MODES: dict[Route, Mode | None] = {
    "sft": None,
    "zero_shot": Mode.ZERO_SHOT,
    "cross_lingual": Mode.CROSS_LINGUAL,
    "instruct": Mode.INSTRUCT,
    "instruct2": Mode.INSTRUCT,
}


@dataclass(frozen=True, slots=True)
class OfficialCall:
    route: Route
    tts_text: str
    spk_id: str | None = None
    prompt_text: str | None = None
    prompt: PromptAudio | None = None
    instruct_text: str | None = None

    def to_request(
        self, *, engine: str | None, request_id: str, tenant: str = DEFAULT_TENANT
    ) -> SynthesisRequest:
        language, text = split_language_tag(strip(self.tts_text))
        prompt = self.prompt
        if prompt is not None and self.prompt_text is not None:
            prompt = replace(prompt, text=strip(self.prompt_text) or None)
        instruct = strip(self.instruct_text) if self.instruct_text else None
        return SynthesisRequest(
            text=text,
            voice=self.spk_id or None,
            engine=engine,
            mode=MODES[self.route],
            instruct=instruct or None,
            language=language,
            format=AudioFormat.PCM,
            sample_rate=None,  # the engine's own rate, as upstream answers
            prompt=prompt,
            request_id=request_id,
            tenant=tenant,
        )
