"""The web playground at /, driven in real headless Chromium (Debian's
``chromium`` package, through Playwright) against a live server with the
embedded espeak engine. The page mirrors its state on
``window.voxgatePlayground``; the tests read it there and check what the
server holds through the API. Screenshots of every step go to test-artifacts/.
"""

from __future__ import annotations

import json
import shutil
import wave
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import playwright.sync_api as playwright_api
import pytest

from tests.support.prompts import speech, wav_bytes
from voxgate.testing import ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True, scope="module")
def _chromium() -> None:
    """A missing browser is a failure, not a skip: make test installs it."""
    assert Path(CHROMIUM).exists(), "no chromium; scripts/ensure-test-deps.sh installs Debian's"


ADMIN_TOKEN = "playground-test-admin-token-0123456789abcdef"
WAIT_MS = 60_000
Page = Any  # playwright.sync_api.Page


def _server(root: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    proc = ServerProcess(root, env)
    proc.start()
    yield proc
    code = proc.stop()
    assert code == 0, f"server exited with {code}:\n{proc.log()[-3000:]}"


# espeak (the default) and a second engine that streams in real time: the
# simulated GPU engine (engines/simulated.py) delivers 200 ms of audio every
# 200 ms, so a stream of a few seconds is still arriving when playback starts.
ENGINES = {"espeak": {"kind": "espeak"}, "sim": {"kind": "simulated", "options": {"rtf": 1.0}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "VOXGATE_ENGINES": json.dumps(ENGINES),
        # Small job segments, so a job of a few sentences has several to report.
        "VOXGATE_JOB_SEGMENT_CHARS": "40",
    }
    yield from _server(tmp_path_factory.mktemp("playground"), env)


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What Chromium's fake microphone hears: real speech, then silence."""
    rate = 48000
    samples = np.concatenate([np.zeros(rate // 2), speech(rate=rate), np.zeros(rate * 3)])
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    path.write_bytes(wav_bytes(samples.astype(np.float32), rate))
    return path


@pytest.fixture(scope="module")
def prompts() -> dict[str, bytes]:
    """Voice prompt files. Made before the browser starts: the engine that
    speaks them runs its own event loop, which Playwright's sync API (a loop
    of its own in this thread) would not allow."""
    return {
        "speech": wav_bytes(speech(), 24000),
        "short": wav_bytes(speech()[:24000], 24000),  # one second
    }


@pytest.fixture(scope="module")
def browser(microphone: Path, prompts: dict[str, bytes]) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}%noloop",
                "--disable-dev-shm-usage",
            ],
        )
        yield browser
        browser.close()


class Session:
    """A page in its own browser context, with the console errors it logged."""

    def __init__(self, browser: Any, base_url: str, artifacts: Path, name: str, **ctx: Any):
        self.context = browser.new_context(base_url=base_url, **ctx)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.artifacts = artifacts
        self.name = name
        self.shots = 0
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def open(self) -> Page:
        self.page.goto("/")
        self.page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
        return self.page

    def state(self, path: str = "") -> Any:
        return self.page.evaluate(
            f"() => JSON.parse(JSON.stringify(window.voxgatePlayground{path}))"
        )

    def wait(self, condition: str) -> None:
        self.page.wait_for_function(f"() => {condition}", timeout=WAIT_MS)

    def shot(self, step: str) -> None:
        self.shots += 1
        path = self.artifacts / f"playground-{self.name}-{self.shots}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)

    def fetch(self, url: str) -> dict[str, Any]:
        """GET from inside the page (blob: URLs included): status, type, bytes."""
        return self.page.evaluate(
            """async (url) => {
                const r = await fetch(url, {cache: "no-store"});
                const bytes = new Uint8Array(await r.arrayBuffer());
                return {status: r.status, type: r.headers.get("content-type"),
                        size: bytes.length, head: Array.from(bytes.slice(0, 64)),
                        text: new TextDecoder().decode(bytes.slice(0, 2000))};
            }""",
            url,
        )


@pytest.fixture
def session(
    request: pytest.FixtureRequest, browser: Any, server: ServerProcess, artifacts: Path
) -> Iterator[Session]:
    s = Session(browser, server.url, artifacts, request.node.name.removeprefix("test_"))
    yield s
    s.context.close()


def _pcm_of_wav(data: bytes) -> tuple[int, bytes]:
    with wave.open(BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), w.readframes(w.getnframes())


def test_page_loads_without_console_errors(session: Session, server: ServerProcess) -> None:
    page = session.open()
    session.shot("loaded")
    state = session.state()
    assert state["engines"] == ["espeak", "sim"]
    assert "en-us-m3" in state["voices"]
    assert state["error"] is None
    assert page.input_value("#engine") == "espeak"
    assert page.locator("#voice option[value='zh-f3']").count() == 1
    assert page.locator("#mode option[value='instruct']").is_enabled()
    # Every control has a label a screen reader can read.
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => !e.labels || e.labels.length === 0).map(e => e.id)"""
    )
    assert unlabeled == []
    # The API is untouched by the page's routes.
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert "swagger" in httpx.get(server.url + "/docs").text.lower()
    assert (
        httpx.get(server.url + "/static/app.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    missing = httpx.get(server.url + "/static/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert session.errors == []


def test_narrow_screen_and_keyboard(browser: Any, server: ServerProcess, artifacts: Path) -> None:
    s = Session(
        browser,
        server.url,
        artifacts,
        "mobile",
        viewport={"width": 375, "height": 740},
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = s.open()
        s.shot("narrow")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        # Sections stack: the job section sits below the speak section.
        speak = page.locator("#speak").bounding_box()
        jobs = page.locator("#jobs").bounding_box()
        assert jobs["y"] > speak["y"] + speak["height"] - 1
        # Keyboard only: Ctrl+Enter in the text speaks it.
        page.focus("#text")
        page.keyboard.press("Control+Enter")
        s.wait("voxgatePlayground.speak.state === 'done'")
        assert s.state(".speak")["firstAudioMs"] is not None
        s.shot("spoken")
        assert s.errors == []
    finally:
        s.context.close()


def test_speak_streams_and_plays(session: Session, server: ServerProcess) -> None:
    page = session.open()
    text = "Streaming playback. The first sentence plays while later ones are made. The end."
    page.fill("#text", text)
    page.select_option("#voice", "en-us-m3")
    page.click("#speak-button")
    session.wait("voxgatePlayground.speak.firstAudioMs !== null")
    started = session.state(".speak")
    assert started["state"] in ("playing", "done")
    assert started["scheduledSeconds"] > 0
    assert page.get_attribute("#speak-status", "data-state") in ("playing", "done")
    session.shot("playing")
    session.wait("voxgatePlayground.speak.state === 'done'")
    done = session.state(".speak")
    session.shot("done")
    assert done["sampleRate"] == 22050
    assert done["scheduledSeconds"] > 2.0
    assert 0 < done["firstAudioMs"] <= done["totalMs"]
    # All of it was played by the audio clock, not merely queued.
    assert done["playedSeconds"] == pytest.approx(done["scheduledSeconds"])
    assert done["audioContextTime"] >= done["scheduledSeconds"]
    assert page.text_content("#ttfa").endswith("ms")
    # The download is a WAV of exactly the samples the server synthesizes.
    assert done["download"]["format"] == "wav"
    assert page.get_attribute("#download", "download") == "voxgate.wav"
    got = session.fetch(done["download"]["href"])
    assert bytes(got["head"][:4]) == b"RIFF"
    downloaded = page.evaluate(
        """async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer()))""",
        done["download"]["href"],
    )
    whole = httpx.post(
        server.url + "/v1/tts",
        json={"text": text, "voice": "en-us-m3", "format": "wav"},
        timeout=60,
    )
    assert _pcm_of_wav(bytes(downloaded)) == _pcm_of_wav(whole.content)
    assert session.errors == []


def test_playback_starts_while_the_stream_arrives(session: Session) -> None:
    page = session.open()
    page.select_option("#engine", "sim")
    # The voice list follows the engine: its speakers, not espeak's.
    assert page.locator("#voice option[value='sim-female']").count() == 1
    assert page.locator("#voice option[value='en-us-m3']").count() == 0
    page.fill("#text", "The first words play at once. The rest is still on its way. Then the end.")
    page.click("#speak-button")
    session.wait("voxgatePlayground.speak.firstAudioMs !== null")
    session.shot("first-audio")
    session.wait("voxgatePlayground.speak.state === 'done'")
    done = session.state(".speak")
    # The first piece was scheduled when only part of the body had arrived;
    # the rest came in pieces, each scheduled after the one before.
    assert 0 < done["bytesAtFirstAudio"] < done["bytes"]
    assert done["chunks"] > 3
    assert done["firstAudioMs"] < done["totalMs"]
    assert done["playedSeconds"] == pytest.approx(done["scheduledSeconds"])
    assert done["scheduledSeconds"] > 3.0
    assert session.errors == []


def test_download_in_another_format(session: Session) -> None:
    page = session.open()
    page.fill("#text", "A short one.")
    page.select_option("#format", "flac")
    page.click("#speak-button")
    session.wait("voxgatePlayground.speak.download !== null")
    download = session.state(".speak.download")
    assert download["format"] == "flac"
    assert bytes(session.fetch(download["href"])["head"][:4]) == b"fLaC"
    with page.expect_download() as info:
        page.click("#download")
    assert info.value.suggested_filename == "voxgate.flac"
    assert session.errors == []


def test_register_voice_from_file(
    session: Session, server: ServerProcess, prompts: dict[str, bytes]
) -> None:
    page = session.open()
    page.fill("#voice-name", "file narrator")
    page.fill("#voice-consent", "I, Test Speaker, agree that voxgate may speak with my voice.")
    page.fill("#voice-transcript", "The quick brown fox jumps over the lazy dog.")
    page.set_input_files(
        "#voice-file",
        files=[{"name": "prompt.wav", "mimeType": "audio/wav", "buffer": prompts["speech"]}],
    )
    session.shot("filled")
    page.click("#register-button")
    session.wait("['registered', 'error'].includes(voxgatePlayground.register.state)")
    session.shot("registered")
    state = session.state(".register")
    assert state["state"] == "registered", state["error"]
    voice_id = state["voice"]["id"]
    assert voice_id.startswith("voice_")
    report = page.text_content("#register-result")
    assert voice_id in report
    assert "Speech kept" in report
    # The server has it, and the select offers and selects it.
    voice = httpx.get(f"{server.url}/v1/audio/voices/{voice_id}").json()
    assert voice["name"] == "file narrator"
    assert page.locator(f"#voice option[value='{voice_id}']").count() == 1
    assert page.input_value("#voice") == voice_id
    # Speaking with it works; espeak imitates the prompt and says so.
    page.fill("#text", "Now in the registered voice.")
    page.click("#speak-button")
    session.wait("voxgatePlayground.speak.state === 'done'")
    assert "voice_matched" in " ".join(session.state(".speak.warnings"))
    assert session.errors == []


def test_register_voice_with_microphone(session: Session, server: ServerProcess) -> None:
    page = session.open()
    page.fill("#voice-name", "mic narrator")
    page.fill("#voice-consent", "I, Test Speaker, agree that voxgate may speak with my voice.")
    page.click("#record-button")
    session.wait("voxgatePlayground.register.recording === 'recording'")
    assert page.get_attribute("#record-button", "aria-pressed") == "true"
    page.wait_for_timeout(6500)  # the fake microphone's speech lasts about 5 s
    page.click("#record-button")
    session.wait("voxgatePlayground.register.recording === 'recorded'")
    assert page.is_visible("#record-preview")
    session.shot("recorded")
    page.click("#register-button")
    session.wait("['registered', 'error'].includes(voxgatePlayground.register.state)")
    session.shot("registered")
    state = session.state(".register")
    assert state["state"] == "registered", state["error"]
    voice = httpx.get(f"{server.url}/v1/audio/voices/{state['voice']['id']}").json()
    assert voice["name"] == "mic narrator"
    assert 3.0 <= voice["intake"]["seconds"] <= 15.0
    assert voice["intake"]["container"] in ("webm", "matroska,webm", "ogg")
    assert session.errors == []


def test_long_text_job_reaches_100_percent(session: Session, server: ServerProcess) -> None:
    page = session.open()
    page.select_option("#voice", "en-us-f3")
    # Record every value the progress bar takes.
    page.evaluate(
        """() => {
            window.progressSeen = [];
            const bar = document.getElementById('job-progress');
            new MutationObserver(() => window.progressSeen.push(bar.value))
                .observe(bar, {attributes: true, attributeFilter: ['value']});
        }"""
    )
    page.click("#job-button")
    session.wait("voxgatePlayground.job.state === 'running' || voxgatePlayground.job.fraction > 0")
    session.shot("running")
    session.wait("['succeeded', 'failed', 'error'].includes(voxgatePlayground.job.state)")
    session.wait("!document.getElementById('job-result').hidden")
    session.shot("succeeded")
    job = session.state(".job")
    assert job["state"] == "succeeded", job["error"]
    assert job["polled"] is False  # progress came from the event stream
    assert job["fraction"] == 1
    assert job["segmentsTotal"] > 1
    assert job["segmentsDone"] == job["segmentsTotal"]
    assert page.evaluate("document.getElementById('job-progress').value") == 1
    assert "100%" in page.text_content("#job-progress-text")
    seen = page.evaluate("window.progressSeen")
    assert seen == sorted(seen)
    assert seen[-1] == 1
    # The links work: the audio (a WAV, the chosen format), the subtitles.
    audio = session.fetch(page.get_attribute("#job-audio-link", "href"))
    assert audio["status"] == 200
    assert audio["type"] == "audio/wav"
    assert bytes(audio["head"][:4]) == b"RIFF"
    srt = session.fetch(page.get_attribute("#job-srt-link", "href"))
    assert srt["status"] == 200
    assert "-->" in srt["text"]
    vtt = session.fetch(page.get_attribute("#job-vtt-link", "href"))
    assert vtt["text"].startswith("WEBVTT")
    # The player loads it.
    duration = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const a = document.getElementById('job-audio');
            a.addEventListener('loadedmetadata', () => resolve(a.duration), {once: true});
            a.addEventListener('error', () => reject(new Error('audio error')), {once: true});
            a.preload = 'metadata'; a.load();
        })"""
    )
    served = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
    assert duration == pytest.approx(served["progress"]["audio_seconds"], abs=0.05)
    assert session.errors == []


def test_job_progress_without_the_event_stream(session: Session) -> None:
    """A proxy that cuts the event stream: the page polls the job instead."""
    page = session.open()
    page.route("**/events", lambda route: route.abort("connectionreset"))
    page.fill("#job-text", "Polled, not streamed. Still it gets to the end. Every segment counts.")
    page.click("#job-button")
    session.wait("['succeeded', 'failed', 'error'].includes(voxgatePlayground.job.state)")
    session.wait("!document.getElementById('job-result').hidden")
    job = session.state(".job")
    assert job["state"] == "succeeded", job["error"]
    assert job["polled"] is True
    assert job["fraction"] == 1
    assert "100%" in page.text_content("#job-progress-text")
    session.shot("polled")


def test_cancel_a_job(session: Session, server: ServerProcess) -> None:
    page = session.open()
    page.select_option("#engine", "sim")  # real time: a segment takes seconds
    page.fill("#job-text", " ".join(f"Sentence number {i} of a long text." for i in range(30)))
    page.click("#job-button")
    session.wait("voxgatePlayground.job.state === 'running'")
    page.click("#job-cancel")
    session.wait("voxgatePlayground.job.state === 'cancelled'")
    session.shot("cancelled")
    job = session.state(".job")
    assert job["fraction"] < 1
    assert page.is_hidden("#job-result")
    assert page.is_enabled("#job-button")
    assert httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["state"] == "cancelled"
    assert session.errors == []


def test_errors_show_code_and_hint(session: Session, prompts: dict[str, bytes]) -> None:
    page = session.open()
    # Refused by the server: mode instruct without an instruction.
    page.select_option("#mode", "instruct")
    page.fill("#instruct", "")
    page.click("#speak-button")
    session.wait("voxgatePlayground.speak.state === 'error'")
    session.shot("speak-error")
    box = page.locator("#speak-error")
    assert box.get_attribute("data-code") == "instruct_required"
    assert box.get_attribute("role") == "alert"
    assert "instruct_required" in box.text_content()
    assert "Hint:" in box.text_content()
    # A prompt that is too short: the intake's code and hint.
    page.fill("#voice-name", "too short")
    page.fill("#voice-consent", "I agree.")
    page.set_input_files(
        "#voice-file",
        files=[{"name": "short.wav", "mimeType": "audio/wav", "buffer": prompts["short"]}],
    )
    page.click("#register-button")
    session.wait("voxgatePlayground.register.state === 'error'")
    session.shot("register-error")
    error = session.state(".register.error")
    assert error["code"] == "prompt_too_short"
    assert error["hint"]
    assert error["hint"] in page.text_content("#register-error")
    # A job that cannot run: no text.
    page.fill("#job-text", "   ")
    page.click("#job-button")
    session.wait("voxgatePlayground.job.state === 'error'")
    assert page.get_attribute("#job-error", "data-code") == "text_empty"
    session.shot("job-error")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "VOXGATE_AUTH": "on",
        "VOXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "VOXGATE_JOB_SEGMENT_CHARS": "40",
    }
    yield from _server(tmp_path_factory.mktemp("playground-auth"), env)


def test_api_key(browser: Any, auth_server: ServerProcess, artifacts: Path) -> None:
    """With authentication on the page still loads; the API answers
    auth_required until a key is entered; then everything, the job's event
    stream and downloads included, carries it."""
    s = Session(browser, auth_server.url, artifacts, "api-key")
    try:
        # Open without credentials: the page and its files; not the API.
        assert httpx.get(auth_server.url + "/static/app.js").status_code == 200
        assert httpx.get(auth_server.url + "/v1/engines").status_code == 401
        page = s.open()
        s.shot("no-key")
        assert page.get_attribute("#global-error", "data-code") == "auth_required"
        assert "Hint:" in page.text_content("#global-error")
        page.fill("#api-key", ADMIN_TOKEN)
        page.click("#key-form button[type=submit]")
        s.wait("voxgatePlayground.engines.length > 0 && voxgatePlayground.error === null")
        assert page.is_hidden("#global-error")
        assert page.evaluate("localStorage.getItem('voxgate.apiKey')") == ADMIN_TOKEN
        # It is remembered across loads.
        page.reload()
        page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
        assert page.input_value("#api-key") == ADMIN_TOKEN
        assert s.state(".error") is None
        page.fill("#text", "Authenticated speech.")
        page.click("#speak-button")
        s.wait("voxgatePlayground.speak.state === 'done'")
        page.click("#job-button")
        s.wait("['succeeded', 'failed', 'error'].includes(voxgatePlayground.job.state)")
        s.wait("!document.getElementById('job-result').hidden")
        s.shot("job-done")
        job = s.state(".job")
        assert job["state"] == "succeeded", job["error"]
        assert job["fraction"] == 1
        href = page.get_attribute("#job-audio-link", "href")
        assert href.startswith("blob:")  # fetched with the key
        assert bytes(s.fetch(href)["head"][:4]) == b"RIFF"
        # Forgetting the key: back to auth_required.
        page.click("#key-forget")
        s.wait("voxgatePlayground.error !== null")
        assert s.state(".error")["code"] == "auth_required"
    finally:
        s.context.close()


def test_playground_can_be_turned_off(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, {"VOXGATE_PLAYGROUND": "false"}) as server:
        root = httpx.get(server.url + "/", follow_redirects=False)
        assert root.status_code == 307
        assert root.headers["location"] == "/docs"
        assert httpx.get(server.url + "/static/app.js").status_code == 404


def test_page_files_are_small_and_plain() -> None:
    """No build step: what is in the package is what the browser runs."""
    web = Path(__file__).resolve().parents[2] / "src" / "voxgate" / "web"
    files = sorted(p.name for p in web.iterdir())
    assert "index.html" in files
    assert "app.js" in files
    for path in web.iterdir():
        text = path.read_text()
        assert len(text) < 40_000, f"{path.name} is large for a hand-written file"
        if path.suffix == ".js":
            assert "innerHTML" not in text, f"{path.name}: set text, never HTML"
