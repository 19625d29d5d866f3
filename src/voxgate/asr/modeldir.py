"""Local model directories: voxgate never downloads a model at run time.

Both FunASR and faster-whisper download from a hub when given a name instead
of a directory, on the first request, into a cache nobody provisioned (and
FunASR, trusting remote code, may even pip-install the model's requirements).
A gateway must not do that behind an operator's back, so a name is refused at
configuration time with the one command that fetches it, and a directory is
checked for the files a load needs before anything is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path


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
