"""Blob storage: bytes by key (prompt audio, consent recordings, voice features).

Synchronous on purpose: engines read cached features from their own threads,
and async callers go through ``asyncio.to_thread``. The local implementation
writes atomically (a temporary file renamed into place), so a crash never
leaves half a file under a key, and keys cannot escape the root.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...  # KeyError if absent
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> bool: ...  # True if something was removed
    def delete_prefix(self, prefix: str) -> int: ...  # how many were removed
    def keys(self, prefix: str = "") -> list[str]: ...
    # Large results (a job's audio) are written to a local file first and
    # moved in, and served from a path where the store has one (ranges,
    # sendfile); an object store uploads in put_file and returns None.
    def put_file(self, key: str, source: Path) -> None: ...
    def local_path(self, key: str) -> Path | None: ...


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class LocalBlobStore:
    """Blobs as files below ``root`` (the data directory's ``blobs/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, source: Path) -> None:
        """Move a finished file in (same filesystem: a rename; else a copy)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.move(source, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        self._prune(path.parent)
        return True

    def delete_prefix(self, prefix: str) -> int:
        removed = 0
        for key in self.keys(prefix):
            removed += self.delete(key)
        return removed

    def keys(self, prefix: str = "") -> list[str]:
        if prefix:
            check_key(prefix.rstrip("/"))
        base = self.root / prefix.rstrip("/") if prefix.endswith("/") else self.root
        if not base.exists():
            return []
        found = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    def _prune(self, directory: Path) -> None:
        """Remove directories left empty, up to the root."""
        while directory != self.root and directory.is_dir():
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent
