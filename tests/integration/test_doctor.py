"""``voxgate doctor`` tells what each configured engine lacks, and how to fix it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fakes.modeldirs import make_model_dir
from tests.support.procs import FAKES, FakeServer
from voxgate.testing import free_port


def doctor(tmp_path: Path, engines: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "VOXGATE_DATA_DIR": str(tmp_path / "data")}
    if engines is not None:
        env["VOXGATE_ENGINES"] = json.dumps(engines)
    command = [sys.executable, "-m", "voxgate", "doctor", "--json"]
    proc = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    return proc.returncode, json.loads(proc.stdout)


def checks(report: dict[str, Any], engine: str) -> dict[str, dict[str, Any]]:
    return {c["subject"]: c for c in report["engines"][engine]["checks"]}


def test_the_embedded_default_is_healthy(tmp_path: Path) -> None:
    code, report = doctor(tmp_path)
    assert code == 0
    assert report["ok"] is True
    espeak = checks(report, "espeak")["libespeak-ng"]
    assert espeak["status"] == "ok"
    assert "spoke" in espeak["detail"]


def test_a_cosyvoice_setup_is_checked_piece_by_piece(tmp_path: Path) -> None:
    complete = make_model_dir(tmp_path / "a", 2)
    (complete / "CosyVoice-BlankEN").mkdir()
    partial = make_model_dir(tmp_path / "b", 2)
    (partial / "flow.pt").unlink()
    v3 = make_model_dir(tmp_path / "c", 3)

    def local(model_dir: object, **options: object) -> dict[str, Any]:
        return {"kind": "cosyvoice", "options": {"model_dir": str(model_dir), **options}}

    engines = {
        "good": local(complete, repo_dir=str(FAKES)),
        "partial": local(partial, repo_dir=str(FAKES)),
        "bad-flag": local(v3, repo_dir=str(FAKES), load_jit=True),
        "hub-id": local("iic/CosyVoice2-0.5B"),
    }
    code, report = doctor(tmp_path, engines)
    assert code == 1
    good = checks(report, "good")
    assert {good[k]["status"] for k in ("model files", "package cosyvoice", "load options")} == {
        "ok"
    }
    assert good["GPU"]["status"] == "warn"  # no CUDA on this machine: said, with a fix
    assert "nvidia-smi" in good["GPU"]["fix"]

    missing = checks(report, "partial")["model files"]
    assert missing["status"] == "fail"
    assert "flow.pt" in missing["detail"]
    assert "CosyVoice-BlankEN" in missing["detail"]

    flags = checks(report, "bad-flag")["load options"]
    assert flags["status"] == "fail"
    assert "load_jit" in flags["detail"]

    hub = checks(report, "hub-id")["configuration"]
    assert hub["status"] == "fail"
    assert "modelscope download" in hub["detail"]


def test_a_missing_upstream_package_says_how_to_install(tmp_path: Path) -> None:
    # Its own process: once one engine has imported upstream, the process has it.
    model = make_model_dir(tmp_path, 2)
    code, report = doctor(
        tmp_path, {"cv": {"kind": "cosyvoice", "options": {"model_dir": str(model)}}}
    )
    assert code == 1
    package = checks(report, "cv")["package cosyvoice"]
    assert package["status"] == "fail"
    assert "repo_dir" in package["fix"]


def test_remote_engines_are_probed(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m", 2)
    with FakeServer("fakes.official.fastapi_server", ["--model_dir", str(model)], tmp_path) as up:
        dead = f"http://127.0.0.1:{free_port()}"
        engines = {
            "up": {"kind": "cosyvoice-http", "options": {"url": up.url}},
            "down": {"kind": "cosyvoice-http", "options": {"url": dead, "connect_timeout_s": 1}},
        }
        code, report = doctor(tmp_path, engines)
    assert code == 1
    [up_check] = report["engines"]["up"]["checks"]
    assert up_check["status"] == "ok"
    [down_check] = report["engines"]["down"]["checks"]
    assert down_check["status"] == "fail"
    assert "does not answer" in down_check["detail"]
    assert down_check["fix"]
