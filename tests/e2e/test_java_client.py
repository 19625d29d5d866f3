"""The Java client (clients/java) against a live server: compiled with the
JDK's ``javac`` and tested with JUnit 5 from Debian's ``junit5`` package
(scripts/ensure-test-deps.sh installs both), nothing downloaded.

The server runs three engines: ``espeak`` (the real embedded engine, the
default), ``sim`` (simulated, paced, for streams and jobs) and ``busy``
(simulated, one slot and no queue, to be overloaded for real). The JUnit
console's output and XML report are kept under test-artifacts/java-client/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.prompts import speech, wav_bytes
from voxgate.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "java"
JUNIT = Path(
    os.environ.get("JUNIT_CONSOLE_JAR", "/usr/share/java/junit-platform-console-standalone.jar")
)
PROMPT_RATE = 24000


@pytest.fixture(autouse=True, scope="module")
def _toolchain() -> None:
    """Missing tools are a failure, not a skip: make test installs them."""
    hint = "scripts/ensure-test-deps.sh installs a JDK and Debian's junit5"
    assert shutil.which("javac"), hint
    assert JUNIT.exists(), hint


SIM = {"first_chunk_ms": 50, "rtf": 0.3, "chunk_ms": 200, "capacity": 4}
BUSY = {"first_chunk_ms": 100, "rtf": 0.5, "chunk_ms": 200, "capacity": 1}


def sources(kind: str) -> list[Path]:
    return sorted((CLIENT / "src" / kind / "java").rglob("*.java"))


def javac(out: Path, files: list[Path], classpath: list[Path], *, strict: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["javac", "--release", "17", "-encoding", "UTF-8", "-Xlint:all", "-d", str(out)]
    if classpath:
        cmd += ["-cp", os.pathsep.join(map(str, classpath))]
    result = subprocess.run(
        [*cmd, *map(str, files)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"javac failed:\n{result.stdout}\n{result.stderr}"
    if strict:  # the client's own code compiles without a single lint warning
        assert "warning" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    engines = {
        "espeak": {"kind": "espeak"},
        "sim": {"kind": "simulated", "options": SIM},
        "busy": {"kind": "simulated", "options": BUSY, "queue_size": 0},
    }
    env = {
        "VOXGATE_ENGINES": json.dumps(engines),
        "VOXGATE_DEFAULT_ENGINE": "espeak",
        # streams must come from the engines, not from the result cache
        "VOXGATE_CACHE_ENABLED": "false",
        # short job segments, so a job of a few sentences reports progress
        "VOXGATE_JOB_SEGMENT_CHARS": "40",
        # prompts are registered with their transcript: no recognizer needed
        "VOXGATE_ASR": '{"kind": "none"}',
    }
    proc = ServerProcess(tmp_path_factory.mktemp("java-client"), env)
    proc.start()
    yield proc
    code = proc.stop()
    assert code == 0, f"server exited with {code}:\n{proc.log()[-3000:]}"


def summary(console: str) -> dict[str, int]:
    """The launcher's closing table: ``[  12 tests successful  ]`` and so on."""
    return {
        f"{what} {kind}": int(n)
        for n, what, kind in re.findall(r"\[\s*(\d+) (tests|containers) (\w+)\s*\]", console)
    }


def count_tests(path: Path) -> int:
    return len(re.findall(r"^\s*@Test\b", path.read_text(), flags=re.MULTILINE))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_java_client_junit_suite(server: ServerProcess, tmp_path: Path, artifacts: Path) -> None:
    classes = tmp_path / "classes"
    javac(classes, sources("main"), [], strict=True)
    javac(classes, sources("test"), [classes, JUNIT])

    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(wav_bytes(speech(rate=PROMPT_RATE), PROMPT_RATE))

    out = artifacts / "java-client"
    shutil.rmtree(out, ignore_errors=True)
    reports = out / "junit"
    reports.mkdir(parents=True)
    cmd = [
        "java",
        f"-Dvoxgate.url={server.url}",
        f"-Dvoxgate.promptWav={prompt}",
        "-jar",
        str(JUNIT),
        "--class-path",
        str(classes),
        "--select-package",
        "io.voxgate.client",
        "--reports-dir",
        str(reports),
        "--details=tree",
        "--disable-banner",
        "--disable-ansi-colors",
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=800, check=False, cwd=tmp_path
    )
    console = result.stdout + result.stderr
    (out / "console.txt").write_text(console)
    assert result.returncode == 0, f"JUnit failed (see {out}):\n{console[-8000:]}"

    # Every @Test written ran and passed: none skipped by an assumption (the
    # live tests skip themselves without a server), none lost to discovery.
    written = {p.stem: count_tests(p) for p in sources("test")}
    expected = sum(written.values())
    counts = summary(console)
    assert counts["tests found"] == expected, counts
    assert counts["tests successful"] == expected, counts
    for kind in ("skipped", "aborted", "failed"):
        assert counts[f"tests {kind}"] == 0, counts

    # The XML report agrees, class by class (the live suite included).
    ran: Counter[str] = Counter()
    for report in reports.glob("*.xml"):
        for case in ET.parse(report).getroot().iter("testcase"):
            for outcome in ("failure", "error", "skipped"):
                assert case.find(outcome) is None, (outcome, case.attrib)
            ran[case.attrib["classname"].rsplit(".", 1)[-1]] += 1
    assert {name: n for name, n in written.items() if n} == dict(ran)
    assert ran["LiveServerTest"] >= 14


def test_build_script_makes_a_jar(tmp_path: Path) -> None:
    """clients/java/build.sh, the users' build: javac + jar, nothing else."""
    result = subprocess.run(
        [str(CLIENT / "build.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jar = tmp_path / "voxgate-client.jar"
    listing = subprocess.run(
        ["jar", "--list", "--file", str(jar)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "io/voxgate/client/VoxgateClient.class" in listing
    assert "io/voxgate/client/Json.class" in listing
    assert not any("Test" in name for name in listing), "no test classes in the jar"
    assert (tmp_path / "voxgate-client-sources.jar").exists()
