#!/usr/bin/env bash
# Everything the test suite needs beyond Python packages, installed or started
# here when missing, so a clean machine (and CI) gets a green run without
# manual steps. Each check is cheap when the thing is already there.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

# The embedded engine and every codec come from Python wheels (espeakng-loader,
# PyAV), so the foundation needs no system packages. Check the wheels load.
"${VENV:-.venv}/bin/python" - <<'PY'
import av, espeakng_loader, soxr  # noqa: F401
from pathlib import Path
assert Path(espeakng_loader.get_library_path()).exists(), "libespeak-ng missing from espeakng-loader"
for codec in ("libmp3lame", "libopus", "aac", "flac"):
    av.Codec(codec, "w")
PY

need git || { echo "git is required" >&2; exit 1; }
echo "test dependencies: ok"
