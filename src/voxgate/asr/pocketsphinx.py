"""``pocketsphinx``: the embedded recognizer, CMU PocketSphinx from its wheel.

It needs nothing but pip (the wheel ships a US English model), which makes it
the default; it is also English only and rough. On voxgate's own espeak
speech it gets about a quarter of the words right ("one two three four five
six and the i can" for the numbers one to ten); on natural speech it does
better, but its transcript is a draft a person should check, and the voice
library says so.

    [asr]
    kind = "pocketsphinx"
    options = { concurrency = 1 }   # model_dir, language: another CMUSphinx model

**Worker processes, one Decoder each** (:mod:`voxgate.asr.sphinx_worker`).
A Decoder is not thread-safe, so it is never shared; building one takes
about 0.3 s and tens of MB, so not one per call either. And it holds the GIL
for the whole utterance (measured: a 3 s prompt stalls every other thread of
the process for over a second; fed in small pieces it still stalls for the
final search), so a thread of ours would stall the event loop. Each of
``concurrency`` workers builds its Decoder once and decodes one prompt at a
time. The library also ends its process on a fatal error (a damaged model
file calls ``exit``): in a worker, that costs the worker, not the server. A
worker that died, or whose caller gave up (it is killed rather than left
decoding for nobody), is replaced by the next call that needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.asr import sphinx_worker
from voxgate.asr.audio import NO_WORDS
from voxgate.asr.base import Transcriber, Transcript, TranscriptionUnavailable, language_code
from voxgate.audio.pcm import Samples
from voxgate.diagnostics import Check, fail, ok
from voxgate.errors import EngineUnavailable

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'pocketsphinx>=5.0' (a voxgate dependency: reinstall voxgate)"
OTHER_LANGUAGES = (
    "sensevoice (zh, en, yue, ja, ko) or faster-whisper (any language) transcribe it: "
    "set [asr] kind (docs/voices.md)"
)
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """A CMUSphinx model: acoustic model directory, language model, dictionary."""

    hmm: Path
    lm: Path
    dict: Path


def find_model_files(model_dir: Path) -> ModelFiles:
    """The files a Decoder needs, in the layout CMUSphinx models ship in (the
    wheel's ``en-us``: ``en-us/``, ``en-us.lm.bin``, ``cmudict-en-us.dict``)."""
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a directory")
    hmms = [model_dir] if (model_dir / "mdef").is_file() else []
    hmms += sorted(d for d in model_dir.iterdir() if (d / "mdef").is_file())
    lms = [
        f
        for pattern in ("*.lm.bin", "*.lm", "*.lm.dmp", "*.DMP")
        for f in sorted(model_dir.glob(pattern))
        if "phone" not in f.name  # en-us-phone.lm.bin is for phoneme decoding
    ]
    dicts = sorted(model_dir.glob("*.dict")) + sorted(model_dir.glob("*.dic"))
    missing = [
        what
        for what, found in (
            ("an acoustic model (a directory holding mdef)", hmms),
            ("a language model (*.lm.bin)", lms),
            ("a pronunciation dictionary (*.dict)", dicts),
        )
        if not found
    ]
    if missing:
        raise ValueError(f"{model_dir} lacks {', '.join(missing)}")
    return ModelFiles(hmms[0], lms[0], dicts[0])


class WorkerGone(Exception):
    """The worker process ended (crashed, was killed, or failed to start)."""


class _Worker:
    """One worker process and its pipes; used by one call at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, files: ModelFiles) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            sphinx_worker.__name__,
            str(files.hmm),
            str(files.lm),
            str(files.dict),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(proc)
        try:
            hello = await worker._read()
        except BaseException:
            await worker.stop()
            raise
        if not hello.get("ready"):
            await worker.stop()
            raise WorkerGone(str(hello.get("error", hello)))
        return worker

    async def decode(self, samples: Samples, sample_rate: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        data = np.ascontiguousarray(samples, dtype="<f4")
        try:
            self.proc.stdin.write(sphinx_worker.REQUEST.pack(sample_rate, data.size))
            self.proc.stdin.write(data.tobytes())
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerGone(f"its worker process ended ({exc})") from exc
        return await self._read()

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            head = await self.proc.stdout.readexactly(sphinx_worker.LENGTH.size)
            (length,) = sphinx_worker.LENGTH.unpack(head)
            message = json.loads(await self.proc.stdout.readexactly(length))
        except asyncio.IncompleteReadError as exc:
            code = await self.proc.wait()
            raise WorkerGone(f"its worker process ended (exit status {code})") from exc
        return dict(message)

    async def stop(self) -> None:
        """End of input ends a worker; one that does not listen is killed."""
        if self.proc.returncode is not None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.kill()
            await self.proc.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


class PocketsphinxTranscriber(Transcriber):
    kind = "pocketsphinx"

    def __init__(
        self,
        *,
        model_dir: str | None = None,
        language: str = "en",
        concurrency: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError("asr pocketsphinx: concurrency must be at least 1")
        code = language_code(language)
        if code is None:
            raise ValueError("asr pocketsphinx: language must name the model's language")
        self.model_dir = Path(model_dir).expanduser() if model_dir else None  # None: the wheel's
        self.language = code
        self.concurrency = concurrency
        self._files: ModelFiles | None = None
        # One entry per slot: a worker ready to decode, or None where one must
        # be (re)started by the call that takes the slot.
        self._slots: asyncio.Queue[_Worker | None] = asyncio.Queue()
        self._workers: set[_Worker] = set()  # all running workers
        self._busy: set[_Worker] = set()  # those decoding a prompt now
        self._reaping: set[asyncio.Task[None]] = set()
        self._not_loaded = "it is not started"

    @property
    def languages(self) -> frozenset[str]:
        return frozenset({self.language})

    @property
    def busy(self) -> int:
        """Workers decoding a prompt now."""
        return len(self._busy)

    def _unsupported(self, language: str) -> str:
        only = f"pocketsphinx transcribes {self.language} only"
        return f"{only}, not {language!r}; {OTHER_LANGUAGES}"

    # -- lifecycle ---------------------------------------------------------------------

    def _import(self) -> Any:
        try:
            return importlib.import_module("pocketsphinx")
        except ImportError as exc:
            raise EngineUnavailable(
                f"asr pocketsphinx: cannot import pocketsphinx ({exc})", hint=INSTALL_HINT
            ) from exc

    def _model_dir(self) -> Path:
        if self.model_dir is not None:
            return self.model_dir
        return Path(self._import().get_model_path()) / "en-us"

    def _locate(self) -> ModelFiles:
        self._import()
        try:
            return find_model_files(self._model_dir())
        except ValueError as exc:
            raise EngineUnavailable(
                f"asr pocketsphinx: {exc}",
                hint="Set model_dir to a CMUSphinx model directory, or leave it unset "
                "for the model in the pocketsphinx wheel.",
            ) from exc

    async def start(self) -> None:
        try:
            files = await asyncio.to_thread(self._locate)
        except EngineUnavailable as exc:
            self._not_loaded = f"loading it failed: {exc.message}"
            raise
        spawned = await asyncio.gather(
            *(_Worker.spawn(files) for _ in range(self.concurrency)), return_exceptions=True
        )
        workers = [w for w in spawned if isinstance(w, _Worker)]
        problems = [e for e in spawned if not isinstance(e, _Worker)]
        if problems:
            await asyncio.gather(*(w.stop() for w in workers))
            self._not_loaded = f"loading it failed: {problems[0]}"
            raise EngineUnavailable(
                f"asr pocketsphinx: starting a worker with the model in "
                f"{files.hmm.parent} failed: {problems[0]}",
                hint="Run `voxgate doctor`; the model directory may be incomplete.",
            )
        self._files = files
        for worker in workers:
            self._workers.add(worker)
            self._slots.put_nowait(worker)
        log.info("asr pocketsphinx: %d worker(s), model %s", self.concurrency, files.hmm)

    async def close(self) -> None:
        self._files = None
        self._not_loaded = "it is closed"
        workers, self._workers = list(self._workers), set()
        for worker in self._busy:  # a prompt still decoding ends with its worker
            worker.kill()
        await asyncio.gather(*(w.stop() for w in workers), *self._reaping)

    # -- transcription -------------------------------------------------------------------

    async def transcribe(
        self, samples: Samples, sample_rate: int, language: str | None = None
    ) -> Transcript:
        self._requested_language(language)
        if self._files is None:
            raise TranscriptionUnavailable(f"pocketsphinx cannot transcribe: {self._not_loaded}")
        reply = await self._decode(np.asarray(samples), sample_rate)
        if "unavailable" in reply:
            raise TranscriptionUnavailable(str(reply["unavailable"]))
        if "error" in reply:
            log.warning("asr pocketsphinx failed on a prompt: %s", reply["error"])
            raise TranscriptionUnavailable(f"pocketsphinx failed: {reply['error']}")
        text = str(reply.get("text", "")).strip()
        if not text:
            raise TranscriptionUnavailable(NO_WORDS)
        # Its posterior probability of the whole word sequence shrinks with
        # every word and says little about the words: no confidence rather
        # than a misleading one.
        return Transcript(text, self.language, self.kind)

    async def _decode(self, samples: Samples, sample_rate: int) -> dict[str, Any]:
        """A prompt decoded by a worker of its own, at most ``concurrency`` at once."""
        worker = await self._slots.get()
        try:
            files = self._files
            if files is None:
                raise TranscriptionUnavailable(
                    f"pocketsphinx cannot transcribe: {self._not_loaded}"
                )
            if worker is None:
                worker = await self._spawn(files)
            self._busy.add(worker)
            try:
                reply = await worker.decode(samples, sample_rate)
            except WorkerGone as exc:
                self._retire(worker)
                worker = None
                raise TranscriptionUnavailable(f"pocketsphinx failed: {exc}") from exc
            except BaseException:  # cancelled: stop decoding for nobody
                self._retire(worker, kill=True)
                worker = None
                raise
            self._busy.discard(worker)
            if "error" in reply:  # the library failed: its decoder may be in any state
                self._retire(worker)
                worker = None
            return reply
        finally:
            self._slots.put_nowait(worker)

    async def _spawn(self, files: ModelFiles) -> _Worker:
        try:
            worker = await _Worker.spawn(files)
        except (WorkerGone, OSError) as exc:
            raise TranscriptionUnavailable(f"pocketsphinx failed to start a worker: {exc}") from exc
        self._workers.add(worker)
        return worker

    def _retire(self, worker: _Worker, *, kill: bool = False) -> None:
        """Forget a worker and reap its process in the background."""
        self._workers.discard(worker)
        self._busy.discard(worker)
        if kill:
            worker.kill()
        task = asyncio.get_running_loop().create_task(worker.stop())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    # -- diagnosis (voxgate doctor) --------------------------------------------------------

    async def diagnose(self) -> list[Check]:
        return await asyncio.to_thread(self._diagnose)

    def _diagnose(self) -> list[Check]:
        try:
            self._import()
        except EngineUnavailable as exc:
            return [fail("package pocketsphinx", exc.message, INSTALL_HINT)]
        checks = [ok("package pocketsphinx", importlib.metadata.version("pocketsphinx"))]
        model_dir = self._model_dir()
        try:
            files = find_model_files(model_dir)
        except ValueError as exc:
            fix = "Point model_dir at a complete CMUSphinx model, or unset it for the wheel's."
            return [*checks, fail("model files", str(exc), fix)]
        detail = f"{files.hmm.name} + {files.lm.name} + {files.dict.name} in {model_dir}"
        checks.append(ok("model files", detail))
        scope = f"{self.language} only (rough); {self.concurrency} worker process(es)"
        checks.append(ok("languages", scope))
        return checks
