"""Local model directories: voxgate never downloads a model at run time.

Both FunASR and faster-whisper download from a hub when given a name instead
of a directory, on the first request, into a cache nobody provisioned (and
FunASR, trusting remote code, may even pip-install the model's requirements).
A gateway must not do that behind an operator's back, so a name is refused at
configuration time with the one command that fetches it, and a directory is
checked for the files a load needs before anything is loaded
(:class:`LocalModelTranscriber`, the base of both adapters).
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from voxgate.asr.pooled import PooledTranscriber
from voxgate.diagnostics import Check, fail, ok
from voxgate.errors import EngineUnavailable

M = TypeVar("M")


def looks_like_hub_id(value: str) -> bool:
    """``owner/name``, as ModelScope and Hugging Face spell ids."""
    return value.count("/") == 1 and not value.startswith((".", "/", "~"))


def local_model_dir(
    value: str | os.PathLike[str],
    *,
    kind: str,
    download: Callable[[str, str], str],
    names: Sequence[str] = (),
) -> Path:
    """A directory that exists, or a refusal naming the download command.

    ``download(id, directory)`` renders the command; ``names`` are short
    model names a library would resolve on its hub (faster-whisper's sizes).
    """
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    text = str(value)
    if looks_like_hub_id(text) or text in names:
        target = f"/models/{text.split('/')[-1]}"
        raise ValueError(
            f"asr {kind}: model_dir {text!r} looks like a model name, and voxgate never "
            f"downloads models at run time. Download it once, e.g. `{download(text, target)}`, "
            "and set model_dir to that directory."
        )
    raise ValueError(f"asr {kind}: model_dir {text!r} is not a directory")


def missing_files(model_dir: Path, patterns: Sequence[str]) -> list[str]:
    """The patterns (file names or globs like ``vocabulary.*``) nothing matches."""
    return [p for p in patterns if not any(f.is_file() for f in model_dir.glob(p))]


def size_gb(model_dir: Path) -> float:
    return sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / 1e9


def package_version(package: Any, distribution: str) -> str:
    """The version an imported package states, else its installed metadata's."""
    stated = getattr(package, "__version__", None)
    if stated:
        return str(stated)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


class LocalModelTranscriber(PooledTranscriber[M]):
    """A pooled transcriber whose model is a local directory read by an optional package.

    SenseVoice (FunASR) and faster-whisper differ in how they build and call a
    model, not in what comes before: the package is imported only when a model
    is loaded or diagnosed (it is an extra, and heavy), the directory is
    checked for :attr:`model_files` before anything is loaded (FunASR would
    load a directory without weights with random ones), and ``voxgate doctor``
    is told the same three things, in this order: the files, the package, the
    device. Subclasses set ``model_dir`` (with :func:`local_model_dir`) before
    calling ``super().__init__``, and supply the parts that differ.
    """

    package: ClassVar[str]  # what is imported, e.g. "faster_whisper"
    distribution: ClassVar[str]  # what pip installs, e.g. "faster-whisper"
    install_hint: ClassVar[str]
    model_files: ClassVar[Sequence[str]]  # names or globs, as missing_files() takes
    model_description: ClassVar[str]  # "SenseVoice" in "SenseVoice in /models/x, 0.9 GB"

    model_dir: Path

    # -- what a recognizer provides ------------------------------------------------------

    @abc.abstractmethod
    def _download_fix(self) -> str:
        """The sentence telling a person how to fetch the whole model into ``model_dir``."""

    @abc.abstractmethod
    def _load(self, package: Any) -> list[M]:
        """Runs in a thread, the files checked: the models, as :meth:`_load_models` returns."""

    @abc.abstractmethod
    def _check_device(self, package: Any | None) -> list[Check]:
        """What doctor reports on the device; ``package`` is None when it did not import."""

    # -- loading -------------------------------------------------------------------------

    def _import(self) -> Any:
        try:
            return importlib.import_module(self.package)
        except ImportError as exc:
            raise EngineUnavailable(
                f"asr {self.kind}: cannot import {self.package} ({exc})", hint=self.install_hint
            ) from exc

    def _missing(self) -> list[str]:
        return missing_files(self.model_dir, self.model_files)

    def _load_models(self) -> list[M]:
        missing = self._missing()
        if missing:
            raise EngineUnavailable(
                f"asr {self.kind}: {self.model_dir} lacks {', '.join(missing)}",
                hint=self._download_fix(),
            )
        return self._load(self._import())

    # -- diagnosis (voxgate doctor) ------------------------------------------------------

    async def diagnose(self) -> list[Check]:
        return await asyncio.to_thread(self._diagnose)

    def _diagnose(self) -> list[Check]:
        checks = [self._check_files()]
        subject = f"package {self.distribution}"
        package: Any | None
        try:
            package = self._import()
        except EngineUnavailable as exc:
            package = None
            checks.append(fail(subject, exc.message, self.install_hint))
        else:
            version = package_version(package, self.distribution)
            checks.append(ok(subject, f"{version} from {Path(package.__file__).parent}"))
        checks.extend(self._check_device(package))
        return checks

    def _check_files(self) -> Check:
        missing = self._missing()
        if missing:
            detail = f"{self.model_dir} lacks {', '.join(missing)}"
            return fail("model files", detail, self._download_fix())
        size = size_gb(self.model_dir)
        return ok("model files", f"{self.model_description} in {self.model_dir}, {size:.1f} GB")
