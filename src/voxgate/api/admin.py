"""Operator endpoints: administrators only (``deps.admin``; the auth middleware
also refuses non-administrators anywhere under ``/v1/admin/``)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from fastapi import APIRouter, Depends

from voxgate.api import deps

router = APIRouter(tags=["Admin"], dependencies=[Depends(deps.admin)])
_STARTED = time.monotonic()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


@router.get("/v1/admin/runtime")
async def runtime() -> dict[str, Any]:
    """What the process holds right now: leaks show up here first."""
    return {
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - _STARTED, 1),
        "rss_bytes": _rss_bytes(),
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "open_fds": _open_fds(),
    }
