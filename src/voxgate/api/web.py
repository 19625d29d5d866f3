"""The web playground: one HTML page at ``/`` and its files under ``/static/``.

Plain files from ``voxgate/web`` (no build step), served by name from a list
made at import time, so a request can never name a path outside that folder.
Only ``/`` and ``/static/...`` are claimed: the API, ``/docs`` and the probes
are untouched. Authentication leaves these routes open (api/auth.py): the page
holds no secrets, and the calls it makes send the API key the user typed.
Off with ``VOXGATE_PLAYGROUND=false`` (then ``/`` redirects to ``/docs``).
"""

from __future__ import annotations

from pathlib import Path as FilePath

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from voxgate import errors
from voxgate.errors import VoxgateError

WEB_DIR = FilePath(__file__).resolve().parent.parent / "web"
STATIC_PREFIX = "/static/"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # module scripts need a JavaScript type
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_FILES = {
    p.name: p
    for p in (sorted(WEB_DIR.iterdir()) if WEB_DIR.is_dir() else [])
    if p.is_file() and p.suffix in _MEDIA_TYPES
}

# The page loads only its own files and talks only to this server; audio it
# assembles is played and downloaded from blob: URLs.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    # Revalidated on every load (ETag / Last-Modified), so an upgraded server
    # never runs a page against modules cached from the previous version.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(tags=["Playground"], include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = _FILES.get(name)
    if path is None:
        raise VoxgateError(
            f"no playground file {name!r}",
            code=errors.NOT_FOUND,
            hint="The playground is at /; the API is described at /docs.",
        )
    headers = dict(_HEADERS)
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = _CSP
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)


@router.get("/")
async def playground() -> FileResponse:
    """Speak, register a voice and run a job from a browser."""
    return _file("index.html")


@router.get(STATIC_PREFIX + "{name}")
async def static_file(name: str = Path(max_length=64)) -> FileResponse:
    return _file(name)
