"""The command line, run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.audio import decode
from voxgate.testing import ServerProcess


def voxgate(
    *args: str, stdin: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxgate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_say_in_process(tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    r = voxgate("say", "Hello from the command line.", "-o", str(out), "--voice", "nova")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    decoded = decode(out.read_bytes(), "mp3")
    assert decoded.duration > 1.0
    assert abs(decoded.samples).max() > 0.1


def test_say_reads_stdin_and_honours_options(tmp_path: Path) -> None:
    out = tmp_path / "zh.wav"
    r = voxgate(
        "say",
        "-",
        "-o",
        str(out),
        "--voice",
        "中文女",
        "--speed",
        "1.5",
        "--sample-rate",
        "16000",
        stdin="你好，世界。",
    )
    assert r.returncode == 0, r.stderr
    d = decode(out.read_bytes(), "wav")
    assert d.sample_rate == 16000
    assert d.duration > 0.3


def test_say_against_a_server(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "remote.flac"
    r = voxgate("say", "Through the server.", "-o", str(out), "--url", server.url)
    assert r.returncode == 0, r.stderr
    assert decode(out.read_bytes(), "flac").duration > 0.5


def test_say_reports_errors_with_code_and_hint(server: ServerProcess, tmp_path: Path) -> None:
    for extra in ([], ["--url", server.url]):
        r = voxgate("say", "hi", "-o", str(tmp_path / "x.wav"), "--voice", "nobody", *extra)
        assert r.returncode == 2
        assert "voice_not_found" in r.stderr
        assert "hint" in r.stderr
        assert not (tmp_path / "x.wav").exists()


def test_voices(server: ServerProcess) -> None:
    r = voxgate("voices", "--json")
    assert r.returncode == 0, r.stderr
    local = json.loads(r.stdout)
    assert any("alloy" in v["aliases"] for v in local)
    r = voxgate("voices", "--json", "--url", server.url, "--language", "zh")
    remote = json.loads(r.stdout)
    assert remote
    assert all(v["language"] == "zh" for v in remote)
    table = voxgate("voices")
    assert "中文女" in table.stdout


def test_config_file(tmp_path: Path) -> None:
    config = tmp_path / "voxgate.toml"
    config.write_text('default_voice = "onyx"\n[voice_aliases]\nnarrator = "en-gb-m2"\n')
    out = tmp_path / "a.wav"
    r = voxgate("say", "Configured.", "-o", str(out), "--voice", "narrator", "-c", str(config))
    assert r.returncode == 0, r.stderr
    r = voxgate("say", "x", "-o", str(out), "-c", str(tmp_path / "missing.toml"))
    assert r.returncode != 0


def test_jobs_submit_wait_download_status_and_errors(server: ServerProcess, tmp_path: Path) -> None:
    chapter = tmp_path / "chapter.md"
    chapter.write_text("The first sentence of the chapter. The second one follows it.")
    out = tmp_path / "chapter.wav"
    options = ["--url", server.url, "--format", "wav", "--wait", "-o", str(out), "--json"]
    r = voxgate("jobs", "submit", str(chapter), *options)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["state"] == "succeeded"
    assert decode(out.read_bytes(), "wav").duration > 1.0
    status = voxgate("jobs", "status", job["id"], "--url", server.url)
    assert status.returncode == 0
    assert "succeeded" in status.stdout
    listed = voxgate("jobs", "list", "--url", server.url)
    assert job["id"] in listed.stdout
    missing = voxgate("jobs", "status", "job_nope", "--url", server.url)
    assert missing.returncode == 2
    assert "job_not_found" in missing.stderr
