"""The README's examples run, unchanged but for the address, against a live server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.support.audio import decode
from tests.support.prompts import encode, speech
from voxgate.testing import ServerProcess

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
DEFAULT = "http://127.0.0.1:8080"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_curl_examples(server: ServerProcess, tmp_path: Path) -> None:
    script = next(b for b in blocks("bash") if "curl" in b).replace(DEFAULT, server.url)
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, check=True, timeout=60)
    assert decode((tmp_path / "hello.mp3").read_bytes(), "mp3").duration > 0.5
    assert decode((tmp_path / "hello.wav").read_bytes(), "wav").duration > 0.5


def test_voice_example(server: ServerProcess, tmp_path: Path) -> None:
    script = next(b for b in blocks("bash") if "/v1/audio/voices" in b).replace(DEFAULT, server.url)
    (tmp_path / "prompt.m4a").write_bytes(encode(speech(), 24000, "m4a"))
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, check=True, timeout=60)
    assert decode((tmp_path / "ch1.mp3").read_bytes(), "mp3").duration > 0.3
    listed = httpx.get(f"{server.url}/v1/audio/voices", params={"type": "audio_sample"}).json()
    assert "narrator" in [v["name"] for v in listed["data"]]


def test_python_sdk_example(server: ServerProcess, tmp_path: Path, monkeypatch) -> None:
    code = next(b for b in blocks("python") if "OpenAI(" in b).replace(DEFAULT, server.url)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert decode((tmp_path / "hello.wav").read_bytes(), "wav").duration > 0.3


def test_java_example(server: ServerProcess, tmp_path: Path) -> None:
    assert shutil.which("javac"), "no JDK; scripts/ensure-test-deps.sh installs one"
    body = blocks("java")[0].replace(DEFAULT, server.url)
    (tmp_path / "Main.java").write_text(
        "public class Main { public static void main(String[] a) throws Exception {\n"
        + body
        + "}}\n"
    )
    subprocess.run(["javac", "Main.java"], cwd=tmp_path, check=True, timeout=120)
    out = subprocess.run(
        ["java", "-cp", ".", "Main"],
        cwd=tmp_path,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == "200 24000"
    assert decode((tmp_path / "hello.mp3").read_bytes(), "mp3").duration > 0.5
