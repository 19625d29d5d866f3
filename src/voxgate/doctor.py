"""``voxgate doctor``: is everything each configured engine needs there?

Reads the same configuration as ``voxgate serve`` (environment, TOML file),
builds each engine without starting it, and asks it to diagnose itself
(:meth:`~voxgate.engines.base.Engine.diagnose`): packages, model files, the
GPU, remote servers. A configuration that cannot even build an engine (a
typo in an option, a hub id for ``model_dir``) is reported as such. Nothing
is loaded onto a GPU and nothing is downloaded.
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass, field
from typing import Any

from voxgate import __version__
from voxgate.config import Settings
from voxgate.diagnostics import Check, fail, ok
from voxgate.engines.registry import build_engine


@dataclass(slots=True)
class Report:
    general: list[Check] = field(default_factory=list)
    engines: dict[str, list[Check]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        every = [*self.general, *(c for checks in self.engines.values() for c in checks)]
        return any(c.status == "fail" for c in every)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "general": [c.to_dict() for c in self.general],
            "engines": {
                name: {"kind": self.kinds[name], "checks": [c.to_dict() for c in checks]}
                for name, checks in self.engines.items()
            },
        }


def _general(settings: Settings) -> list[Check]:
    checks = [ok("voxgate", f"{__version__} on Python {platform.python_version()}")]
    data = settings.data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data):
            pass
        checks.append(ok("data directory", f"{data} is writable"))
    except OSError as exc:
        fix = "Set VOXGATE_DATA_DIR to a writable directory."
        checks.append(fail("data directory", f"{data}: {exc.strerror or exc}", fix))
    if settings.default_engine and settings.default_engine not in settings.engines:
        fix = f"Use one of {', '.join(settings.engines)}."
        detail = f"VOXGATE_DEFAULT_ENGINE={settings.default_engine} is not configured"
        checks.append(fail("default engine", detail, fix))
    return checks


async def _asr(settings: Settings) -> list[Check]:
    """The recognizer that transcribes voice prompts sent without text."""
    from voxgate.asr.base import build_transcriber

    try:
        transcriber = build_transcriber(settings.asr)
    except Exception as exc:
        fix = "Check VOXGATE_ASR against docs/voices.md."
        return [fail("configuration", f"{type(exc).__name__}: {exc}", fix)]
    if transcriber is None:
        return [ok("speech recognizer", "none: voices without prompt_text get no transcript")]
    try:
        return await transcriber.diagnose() or [ok("speech recognizer", settings.asr.kind)]
    except Exception as exc:
        return [fail("diagnosis", f"{type(exc).__name__}: {exc}")]


async def diagnose(settings: Settings) -> Report:
    report = Report(general=_general(settings))
    for name, config in settings.engines.items():
        report.kinds[name] = config.kind
        try:
            engine = build_engine(name, config)
        except Exception as exc:  # a bad option, a missing module: say which
            fix = "Check the engine's options against docs/engines.md."
            report.engines[name] = [fail("configuration", f"{type(exc).__name__}: {exc}", fix)]
            continue
        try:
            report.engines[name] = await engine.diagnose() or [
                ok("engine", f"{config.kind}: nothing to check")
            ]
        except Exception as exc:
            report.engines[name] = [fail("diagnosis", f"{type(exc).__name__}: {exc}")]
    report.engines["asr"] = await _asr(settings)
    report.kinds["asr"] = f"speech recognizer: {settings.asr.kind}"
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        report.general.append(ok("GPU", "hidden on purpose (CUDA_VISIBLE_DEVICES is empty)"))
    return report
