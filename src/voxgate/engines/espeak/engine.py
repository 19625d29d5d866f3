"""The embedded engine: espeak-ng from the ``espeakng-loader`` wheel.

Needs nothing but pip. Synthesis runs in children of a zygote process
(:mod:`voxgate.engines.espeak.zygote`), so requests never share library
state, run in parallel, and cannot crash the server. This side of the engine
is asyncio only: it hands each request a socketpair and reads frames.

What it honours natively: speed (espeak's 80-450 wpm, the pipeline stretches
beyond that), pitch (semitones mapped onto espeak's pitch scale), volume,
``<strong>`` as SSML emphasis, event tags as pauses, ARPAbet as espeak
phonemes. Instructions are read for prosody cues (:mod:`voxgate.text.style`);
what it cannot do is reported, never dropped silently.

It cannot clone a voice. In the cloning modes (zero_shot, cross_lingual) it
*matches* one instead: a speaker variant of the prompt's gender, with the
prompt's median pitch, pitch range and pace
(:mod:`voxgate.engines.espeak.matching`), and says so in a notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any
from xml.sax.saxutils import escape

import espeakng_loader
import numpy as np

from voxgate import errors
from voxgate.audio.pcm import Samples, from_s16le
from voxgate.diagnostics import Check, fail, ok
from voxgate.engines.base import (
    AudioChunk,
    Capabilities,
    Engine,
    EngineRequest,
    Mode,
    Notice,
    Speaker,
)
from voxgate.engines.espeak import zygote
from voxgate.engines.espeak.catalog import (
    LANGUAGES,
    SPEAKERS,
    normalize_language,
    variant_of,
)
from voxgate.engines.espeak.matching import Match, VoiceMatcher, language_speaker, request_language
from voxgate.engines.espeak.render import needs_kana, render_segment
from voxgate.errors import EngineError, EngineTimeout, EngineUnavailable, RequestError
from voxgate.text.markup import Event, Feature, Span, parse
from voxgate.text.split import split
from voxgate.text.style import StyleCues, interpret

log = logging.getLogger(__name__)

RATE_NORMAL, RATE_MIN, RATE_MAX = 175, 80, 450
INSTRUCT_HINT = (
    "The embedded espeak engine reads prosody cues: slow/fast, loud/soft, "
    "high/low pitch, happy/sad/angry/calm, Cantonese/Mandarin, British/American "
    "(in English or Chinese, e.g. 慢一点, 用悲伤的语气). Real style control needs a "
    "CosyVoice engine."
)
PROMPT_MODES = frozenset({Mode.ZERO_SHOT, Mode.CROSS_LINGUAL})
VOICE_MATCHED = Notice(
    "voice_matched",
    "espeak cannot clone a voice; it matched the prompt's pitch and pace only "
    "(real cloning needs a CosyVoice engine)",
)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


class EspeakEngine(Engine):
    kind = "espeak"

    def __init__(
        self,
        name: str = "espeak",
        *,
        concurrency: int | None = None,
        timeout_s: float = 60.0,
        buffer_ms: int = 500,
    ) -> None:
        super().__init__(name)
        self._concurrency = concurrency or max(4, 2 * (os.cpu_count() or 1))
        self._timeout_s = timeout_s
        self._buffer_ms = buffer_ms
        self._slots = asyncio.Semaphore(self._concurrency)
        self._host: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._host_lock = asyncio.Lock()
        self._sample_rate = 22050
        self._version = ""
        self._capabilities = self._make_capabilities()
        self._matcher = VoiceMatcher(self._speak)

    def _make_capabilities(self) -> Capabilities:
        return Capabilities(
            modes=frozenset({Mode.SFT, Mode.INSTRUCT}) | PROMPT_MODES,
            languages=frozenset(LANGUAGES),
            sample_rate=self._sample_rate,
            streaming=True,
            max_concurrency=self._concurrency,
            speed_range=(RATE_MIN / RATE_NORMAL, RATE_MAX / RATE_NORMAL),
            pitch=True,
            volume=True,
            markup=frozenset({Feature.EVENTS, Feature.EMPHASIS, Feature.ARPABET}),
            max_segment_chars=250,
            prompt_modes=PROMPT_MODES,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def speakers(self) -> Sequence[Speaker]:
        return SPEAKERS

    def describe(self) -> dict[str, Any]:
        return {"library": "libespeak-ng", "version": self._version, "host_pid": self.host_pid}

    async def diagnose(self) -> list[Check]:
        """Start the host and speak a word: proves the wheel's library and data."""
        library = espeakng_loader.get_library_path()
        try:
            await self.start()
            request = EngineRequest("doctor", Mode.SFT, split(parse("voxgate")), None)
            samples = sum([len(c.samples) async for c in self.synthesize(request)])
        except Exception as exc:
            fix = "pip install --force-reinstall espeakng-loader"
            return [fail("libespeak-ng", f"{library} does not speak: {exc}", fix)]
        finally:
            await self.close()
        seconds = samples / self._sample_rate
        return [ok("libespeak-ng", f"{self._version} from {library}; spoke {seconds:.2f} s")]

    @property
    def host_pid(self) -> int | None:
        return self._host.pid if self._host else None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        await self._ensure_host()
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        async with self._host_lock:
            await asyncio.to_thread(self._stop_host)

    def _stop_host(self) -> None:
        if self._ctl is not None:
            self._ctl.close()  # the zygote exits on EOF
            self._ctl = None
        if self._host is not None:
            try:
                self._host.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._host.kill()
                self._host.wait()
            self._host = None

    async def _ensure_host(self) -> socket.socket:
        """Start the zygote if it is not running (first use, or after a crash)."""
        async with self._host_lock:
            if self._host is not None and self._host.poll() is None and self._ctl is not None:
                return self._ctl
            if self._host is not None:
                log.warning("espeak host exited (code %s); restarting", self._host.returncode)
                await asyncio.to_thread(self._stop_host)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._host = await asyncio.to_thread(self._spawn, theirs)
            finally:
                theirs.close()
            ours.setblocking(False)
            try:
                hello = await asyncio.wait_for(self._read_hello(ours), timeout=30)
            except (TimeoutError, OSError, ValueError) as exc:
                ours.close()
                raise EngineUnavailable(
                    f"espeak host did not start: {exc!r}",
                    hint="Run `voxgate doctor`; check that espeakng-loader is installed.",
                ) from exc
            if "error" in hello:
                ours.close()
                raise EngineUnavailable(
                    f"espeak host failed to load libespeak-ng: {hello['error']}",
                    hint="Reinstall it: pip install --force-reinstall espeakng-loader",
                )
            self._sample_rate = int(hello["sample_rate"])
            self._version = str(hello.get("version", ""))
            self._capabilities = self._make_capabilities()
            self._ctl = ours
            return ours

    def _spawn(self, theirs: socket.socket) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxgate.engines.espeak.zygote",
                str(theirs.fileno()),
                espeakng_loader.get_library_path(),
                espeakng_loader.get_data_path(),
                str(self._buffer_ms),
            ],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )

    async def _read_hello(self, sock: socket.socket) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        head = await _sock_recv_exact(loop, sock, zygote.LENGTH.size)
        (n,) = zygote.LENGTH.unpack(head)
        return dict(json.loads(await _sock_recv_exact(loop, sock, n)))

    async def _submit(self, payload: bytes, fd: int) -> None:
        """Send one request and the child's socket to the zygote without blocking."""
        ctl = await self._ensure_host()
        loop = asyncio.get_running_loop()
        pending = memoryview(zygote.LENGTH.pack(len(payload)) + payload)
        fd_sent = False
        while pending:
            try:
                if fd_sent:
                    n = ctl.send(pending)
                else:
                    n = socket.send_fds(ctl, [pending], [fd])
                    fd_sent = True
                pending = pending[n:]
            except BlockingIOError:
                writable: asyncio.Future[None] = loop.create_future()
                loop.add_writer(ctl.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(ctl.fileno())
            except OSError as exc:
                raise EngineUnavailable(f"espeak host unreachable: {exc}") from exc

    # -- requests ----------------------------------------------------------

    def _cues(self, request: EngineRequest) -> StyleCues:
        return interpret(request.instruct) if request.instruct else StyleCues()

    def check(self, request: EngineRequest) -> list[Notice]:
        notices: list[Notice] = []
        if request.language and normalize_language(request.language) is None:
            raise RequestError(
                f"espeak engine {self.name!r} does not speak language {request.language!r}",
                code=errors.LANGUAGE_UNSUPPORTED,
                hint="Supported: " + ", ".join(sorted(LANGUAGES)),
                param="language",
            )
        if request.instruct:
            cues = self._cues(request)
            if not cues.understood and request.mode is Mode.INSTRUCT:
                raise RequestError(
                    f"engine {self.name!r} understood nothing in the instruction",
                    code=errors.INSTRUCT_UNSUPPORTED,
                    hint=INSTRUCT_HINT,
                    param="instruct",
                )
            if not cues.understood:
                notices.append(
                    Notice("instructions_ignored", "espeak found no prosody cue in the instruction")
                )
            elif cues.leftover:
                notices.append(
                    Notice(
                        "instructions_partial",
                        "applied " + ", ".join(cues.applied) + "; the rest was not understood",
                    )
                )
            else:
                notices.append(Notice("instructions_applied", ", ".join(cues.applied)))
            if cues.dialect:
                notices.append(
                    Notice("dialect_unavailable", "espeak cannot speak the requested dialect")
                )
        if request.prompt is not None and request.mode in PROMPT_MODES:
            notices.append(VOICE_MATCHED)
        if any(_has_events(s.nodes) for s in request.segments):
            notices.append(
                Notice("markup_approximated", "event tags such as [laughter] are spoken as pauses")
            )
        return notices

    def _speaker_for(self, request: EngineRequest, match: Match | None) -> Speaker:
        if match:
            return match.speaker
        if request.speaker:
            return request.speaker
        if request.prompt is not None and request.mode in PROMPT_MODES:
            return language_speaker(request_language(request))  # no voice in the prompt
        speaker = self.default_speaker()
        assert speaker is not None
        return speaker

    def _payload(self, request: EngineRequest, match: Match | None = None) -> bytes:
        speaker = self._speaker_for(request, match)
        base = LANGUAGES[speaker.language]
        variant = variant_of(speaker)
        cues = self._cues(request)
        override = normalize_language(request.language) or cues.language
        segments = [render_segment(s, base, variant, override) for s in request.segments]
        rate = RATE_NORMAL * request.speed * cues.rate * (match.rate_factor if match else 1.0)
        params = {
            "rate": round(_clamp(rate, RATE_MIN, RATE_MAX)),
            "pitch": round(_clamp(50 + 50 * (request.pitch + cues.pitch) / 12, 0, 100)),
            "range": round(_clamp(50 * cues.range, 0, 100)),
            "volume": round(_clamp(100 * request.volume * cues.volume, 0, 200)),
        }
        if match:  # the pitch shift and range cue are already in the match
            params["pitch"], params["range"] = match.pitch, match.range
        body = {
            "segments": [{"voice": s.voice, "ssml": s.ssml} for s in segments],
            "params": params,
            "seed": request.seed,
            "timeout_s": self._timeout_s,
        }
        return json.dumps(body).encode()

    async def _match(self, request: EngineRequest) -> Match | None:
        if request.prompt is None or request.mode not in PROMPT_MODES:
            return None
        cues = self._cues(request)
        return await self._matcher.match(
            request, request.prompt, pitch_shift=request.pitch + cues.pitch, range_scale=cues.range
        )

    async def _speak(
        self, voice: str, text: str, pitch: int, range_: int, rate: int
    ) -> tuple[Samples, int]:
        """Plain text in one espeak voice: the matcher's calibration phrases."""
        params = {"rate": rate, "pitch": pitch, "range": range_, "volume": 100}
        segments = [{"voice": voice, "ssml": escape(text)}]
        body = {"segments": segments, "params": params, "seed": 0, "timeout_s": self._timeout_s}
        async with contextlib.aclosing(self._run(json.dumps(body).encode())) as stream:
            chunks = [c.samples async for c in stream]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32), self._sample_rate

    async def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        match = await self._match(request)
        speaker = self._speaker_for(request, match)
        override = normalize_language(request.language)
        base = LANGUAGES[speaker.language]
        if any(needs_kana(s, base, override) for s in request.segments):
            payload = await asyncio.to_thread(self._payload, request, match)  # kanji reader is slow
        else:
            payload = self._payload(request, match)
        async with contextlib.aclosing(self._run(payload)) as stream:  # closed with ours
            async for chunk in stream:
                yield chunk

    async def _run(self, payload: bytes) -> AsyncGenerator[AudioChunk, None]:
        """One payload through a zygote child, within the engine's capacity."""
        async with self._slots:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                await self._submit(payload, theirs.fileno())
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            try:
                reader, writer = await asyncio.open_connection(sock=ours)
            except BaseException:
                ours.close()
                raise
            try:
                segment = 0
                while True:
                    kind, body = await self._read_frame(reader)
                    if kind == zygote.AUDIO:
                        if body:
                            yield AudioChunk(from_s16le(body), segment)
                    elif kind == zygote.SEGMENT_DONE:
                        segment += 1
                    elif kind == zygote.DONE:
                        return
                    elif kind == zygote.ERROR:
                        raise EngineError(f"espeak failed: {body.decode(errors='replace')}")
            finally:
                writer.close()  # the child sees EPIPE on its next write and exits

    async def _read_frame(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        try:
            async with asyncio.timeout(self._timeout_s):  # no Task per read, unlike wait_for
                head = await reader.readexactly(zygote.FRAME.size)
                kind, n = zygote.FRAME.unpack(head)
                body = await reader.readexactly(n)
        except TimeoutError as exc:
            raise EngineTimeout(
                f"espeak produced nothing for {self._timeout_s:.0f} s",
                hint="Retry; if it persists, report the text that caused it.",
            ) from exc
        except asyncio.IncompleteReadError as exc:
            raise EngineError(
                "espeak worker exited mid-synthesis",
                hint="Retry the request; the engine restarts its worker automatically.",
            ) from exc
        return kind, body


def _has_events(nodes: tuple[Any, ...]) -> bool:
    return any(
        isinstance(n, Event)
        or (isinstance(n, Span) and (n.name == "laughter" or _has_events(n.children)))
        for n in nodes
    )


async def _sock_recv_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise ValueError("connection closed")
        buf += chunk
    return bytes(buf)
