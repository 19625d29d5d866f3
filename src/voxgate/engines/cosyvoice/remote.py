"""The part every remote CosyVoice engine shares: the model profile behind
the server (version, speakers, modes, sample rate) and request checks.

An official server does not say which model it runs, so the engine is told:
``version`` (1, 2 or 3), and optionally ``speakers`` (the SFT speaker ids,
the v1 set by default), ``modes`` and ``sample_rate``. Text sent upstream
follows the version's prompt rules, because the official servers pass text to
the model verbatim.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from voxgate.engines.base import Capabilities, EngineRequest, Notice, Speaker
from voxgate.engines.cosyvoice.profile import (
    default_speaker_names,
    make_profile,
    parse_version,
    speakers_from_names,
)
from voxgate.engines.cosyvoice.texts import require_transcript
from voxgate.engines.remote import RemoteEngine, RemoteOptions


class CosyVoiceRemote(RemoteEngine):
    streaming = True  # whether the transport delivers audio before a segment ends

    def __init__(
        self,
        name: str,
        *,
        version: int | str = 2,
        speakers: Iterable[str] | None = None,
        modes: Iterable[str] | str | None = None,
        sample_rate: int | None = None,
        **options: Any,
    ) -> None:
        remote = RemoteOptions.take(options)
        if options:
            raise TypeError(
                f"engine {name!r} ({self.kind}): unknown options {sorted(options)}; "
                f"known: version, speakers, modes, sample_rate, "
                f"{', '.join(RemoteOptions.__dataclass_fields__)}"
            )
        super().__init__(name, remote)
        v = parse_version(version)
        names = list(speakers) if speakers is not None else default_speaker_names(v)
        self.profile = make_profile(v, speakers=names, modes=modes, sample_rate=sample_rate)
        self._speakers = speakers_from_names(names)
        self._capabilities = self.profile.capabilities(
            concurrency=remote.concurrency, streaming=self.streaming, text_streaming=False
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def speakers(self) -> Sequence[Speaker]:
        return self._speakers

    def check(self, request: EngineRequest) -> list[Notice]:
        require_transcript(request, self.name)
        return []

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_version": self.profile.version}
