"""Findings of ``voxgate doctor``: what is there, what is missing, how to fix it.

Engines report their own (:meth:`voxgate.engines.base.Engine.diagnose`),
because only an engine knows what it needs: packages, model files, a GPU, a
reachable server. Diagnosing never loads a model (that takes minutes and
gigabytes); it checks everything a load would need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    subject: str  # what was checked: "package cosyvoice", "model files", "GPU"
    status: Status
    detail: str  # what was found
    fix: str | None = None  # what to do about it (for warn and fail)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ok(subject: str, detail: str) -> Check:
    return Check(subject, "ok", detail)


def warn(subject: str, detail: str, fix: str | None = None) -> Check:
    return Check(subject, "warn", detail, fix)


def fail(subject: str, detail: str, fix: str | None = None) -> Check:
    return Check(subject, "fail", detail, fix)
