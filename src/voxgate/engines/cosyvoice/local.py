"""``cosyvoice``: CosyVoice 1, 2 or 3 loaded in this process.

Installed with ``pip install 'voxgate[cosyvoice]'`` plus upstream's code (it is
not on PyPI; docs/engines.md has the steps). The model is loaded from a
**local** directory through upstream's ``AutoModel``, which picks the class
(``CosyVoice``, ``CosyVoice2``, ``CosyVoice3``) from the config file in it.

    [engines.cosyvoice]
    kind = "cosyvoice"
    options = { model_dir = "/models/CosyVoice2-0.5B", repo_dir = "/opt/CosyVoice",
                gpu = 0, fp16 = true, load_trt = true, concurrency = 4 }

What the adapter does around upstream, and why:

* **no downloads**: a ``model_dir`` that is not a directory here (a ModelScope
  id such as ``iic/CosyVoice2-0.5B``) is refused with the command to fetch it;
* **options per version**: ``load_jit`` / ``load_trt`` / ``load_vllm`` /
  ``fp16`` / ``trt_concurrent`` are passed only where the version's class
  takes them (CosyVoice3 has no ``load_jit``); asking for one it lacks is a
  configuration error, not a silent no-op;
* **one GPU per engine**, chosen with ``gpu`` through ``CUDA_VISIBLE_DEVICES``
  before CUDA starts: upstream moves tensors to ``cuda`` (the current device)
  from threads it creates itself, so a per-thread device choice would not hold;
* **threads it owns**: calls run in ``concurrency`` threads
  (:class:`~voxgate.engines.threaded.BlockingStreams`); a cancelled request
  stops the model's LLM thread and frees its slot (:mod:`.guards`);
* **the hop-length drift bug** is neutralised per call (:mod:`.guards`);
* **speed**: upstream refuses ``speed`` with streaming, and its non-streamed
  speed change delays all audio to the end of each segment. voxgate always
  streams from the model and changes tempo itself (pitch preserved), so
  ``speed`` works with streaming and first audio is not delayed;
* **prompt rules**: the v2/v3 prefixes are added here (:mod:`.texts`);
* **prompt features**: a registered voice's features are extracted once
  (:mod:`.speakers`); a request's own prompt once per request, not once per
  segment;
* **cached speaker + instruct**: upstream ignores the instruction when
  ``inference_instruct2`` gets a cached ``zero_shot_spk_id``; instruct calls
  therefore always pass the prompt audio (correct, at the cost of extracting
  its features);
* **long text with tags**: upstream does not split text containing ``<|`` and
  ``|>``; voxgate's pipeline has already split it into segments, one model
  call each.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import importlib
import inspect
import io
import logging
import os
import queue
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from voxgate.audio.pcm import Samples
from voxgate.audio.prompt import PromptAudio
from voxgate.diagnostics import Check, fail, ok, warn
from voxgate.engines.base import (
    AudioChunk,
    Capabilities,
    Engine,
    EngineRequest,
    Mode,
    Notice,
    Speaker,
)
from voxgate.engines.cosyvoice.guards import RequestModel, install_thread_hook
from voxgate.engines.cosyvoice.profile import (
    CONFIG_FILES,
    MODEL_FILES,
    ModelProfile,
    make_profile,
    speakers_from_names,
)
from voxgate.engines.cosyvoice.speakers import Source, SpeakerCache
from voxgate.engines.cosyvoice.texts import (
    PROMPT_RATE_CAP,
    prompt_wav,
    require_transcript,
    upstream_texts,
)
from voxgate.engines.threaded import BlockingStreams
from voxgate.errors import EngineError, EngineUnavailable
from voxgate.text.cosyvoice_syntax import Texts, Version, apply

log = logging.getLogger(__name__)

CLASS_NAMES: dict[int, str] = {1: "CosyVoice", 2: "CosyVoice2", 3: "CosyVoice3"}
LOAD_FLAGS = ("load_jit", "load_trt", "load_vllm", "fp16", "trt_concurrent")
INSTALL_HINT = (
    "Install upstream CosyVoice (docs/engines.md): git clone --recursive "
    "https://github.com/FunAudioLLM/CosyVoice, pip install -r requirements.txt, "
    "then set the engine's repo_dir option to the clone."
)


def model_version(model_dir: Path) -> Version:
    """The version AutoModel would pick: the config file in the directory."""
    for version, filename in CONFIG_FILES.items():
        if (model_dir / filename).is_file():
            return version  # type: ignore[return-value]
    raise ValueError(
        f"{model_dir} holds no {', '.join(CONFIG_FILES.values())}: not a CosyVoice model "
        "directory (download the whole model, not single files)"
    )


def model_fingerprint(model_dir: Path, version: int) -> str:
    """Which model features were extracted with: its version and the identity
    of its feature extractors (a new checkpoint gets new features)."""
    digest = hashlib.sha1(str(model_dir.resolve()).encode())
    for name in ("campplus.onnx", f"speech_tokenizer_v{version}.onnx"):
        path = model_dir / name
        if path.exists():
            digest.update(f"{name}:{path.stat().st_size}".encode())
    return f"cosyvoice{version}-{digest.hexdigest()[:12]}"


def check_model_dir(value: str | os.PathLike[str]) -> Path:
    """A local model directory, or a clear refusal (nothing is downloaded)."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    text = str(value)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if looks_like_hub_id:
        raise ValueError(
            f"model_dir {text!r} looks like a ModelScope/Hugging Face id, and voxgate never "
            "downloads models at run time. Download it once, e.g. "
            f"`modelscope download --model {text} --local_dir /models/{text.split('/')[-1]}`, "
            "and set model_dir to that directory."
        )
    raise ValueError(f"model_dir {text!r} is not a directory")


class CosyVoiceEngine(Engine):
    kind = "cosyvoice"

    def __init__(
        self,
        name: str = "cosyvoice",
        *,
        model_dir: str,
        repo_dir: str | None = None,
        gpu: int | str | None = None,
        concurrency: int = 2,
        modes: Sequence[str] | None = None,
        stream: bool = True,
        text_frontend: bool = True,
        cached_voices: int = 256,
        **load_flags: Any,
    ) -> None:
        super().__init__(name)
        unknown = set(load_flags) - set(LOAD_FLAGS)
        if unknown:
            raise TypeError(
                f"engine {name!r} (cosyvoice): unknown options {sorted(unknown)}; known: "
                "model_dir, repo_dir, gpu, concurrency, modes, stream, text_frontend, "
                f"cached_voices, {', '.join(LOAD_FLAGS)}"
            )
        self.model_dir = check_model_dir(model_dir)
        self.version = model_version(self.model_dir)
        self.repo_dir = Path(repo_dir).expanduser() if repo_dir else None
        self.gpu = None if gpu is None else str(gpu)
        self.load_flags = load_flags
        self._modes = list(modes) if modes is not None else None
        self._stream = stream
        self._text_frontend = text_frontend
        self._cached_voices = cached_voices
        self._streams = BlockingStreams(name, concurrency)
        self._model: Any = None
        self._initial_hop: int | None = None
        self._cache: SpeakerCache | None = None
        self._fingerprint = ""
        # Until the model is loaded: v1 checkpoints ship SFT speakers, v2/v3 none.
        self.profile: ModelProfile = make_profile(
            self.version,
            modes=self._modes,
            variant=self.model_dir.name,
            speakers=["?"] if self.version == 1 else [],
        )
        self._speakers: tuple[Speaker, ...] = ()
        self._capabilities = self._make_capabilities()

    def _make_capabilities(self) -> Capabilities:
        # Upstream takes a generator of text (bi-streaming) on v2/v3, not with vLLM.
        text_streaming = self.version >= 2 and not self.load_flags.get("load_vllm")
        return self.profile.capabilities(
            concurrency=self._streams.concurrency,
            streaming=self._stream,
            text_streaming=text_streaming,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def speakers(self) -> Sequence[Speaker]:
        return self._speakers

    def describe(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "model_version": self.version,
            "model_class": type(self._model).__name__ if self._model is not None else None,
            "load_flags": self.load_flags,
            "gpu": self.gpu,
            "threads_busy": self._streams.busy,
            "voice_features": {
                "cached": len(self._cache) if self._cache else 0,
                "extracted": self._cache.extracted if self._cache else 0,
                "restored": self._cache.restored if self._cache else 0,
            },
        }

    # -- loading -------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except EngineUnavailable:
            raise
        except Exception as exc:
            raise EngineUnavailable(
                f"engine {self.name}: loading CosyVoice from {self.model_dir} failed: {exc}",
                hint="Run `voxgate doctor` for what is missing.",
            ) from exc
        install_thread_hook()
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        self._streams.shutdown()

    def _import_upstream(self) -> Any:
        if self.repo_dir is not None:
            for path in (self.repo_dir / "third_party" / "Matcha-TTS", self.repo_dir):
                if path.is_dir() and str(path) not in sys.path:
                    sys.path.insert(0, str(path))
        try:
            return importlib.import_module("cosyvoice.cli.cosyvoice")
        except ImportError as exc:
            raise EngineUnavailable(
                f"engine {self.name}: cannot import upstream CosyVoice ({exc})", hint=INSTALL_HINT
            ) from exc

    def _select_gpu(self) -> None:
        if self.gpu is None:
            return
        current = os.environ.get("CUDA_VISIBLE_DEVICES")
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized() and current != self.gpu:
            raise EngineUnavailable(
                f"engine {self.name}: gpu={self.gpu} asked, but CUDA already started in this "
                f"process with CUDA_VISIBLE_DEVICES={current!r}",
                hint="Run one voxgate process (or worker) per GPU.",
            )
        os.environ["CUDA_VISIBLE_DEVICES"] = self.gpu

    def _load(self) -> None:
        self._select_gpu()
        module = self._import_upstream()
        cls = getattr(module, CLASS_NAMES[self.version])
        accepted = set(inspect.signature(cls.__init__).parameters)
        refused = sorted(set(self.load_flags) - accepted)
        if refused:
            raise EngineUnavailable(
                f"engine {self.name}: {CLASS_NAMES[self.version]} does not take {refused}",
                hint=f"Its options are {sorted(accepted & set(LOAD_FLAGS))}.",
            )
        log.info("engine %s: loading %s from %s", self.name, cls.__name__, self.model_dir)
        model = module.AutoModel(model_dir=str(self.model_dir), **self.load_flags)
        self._model = model
        self._initial_hop = getattr(model.model, "token_hop_len", None)
        self._cache = SpeakerCache(model.frontend.spk2info, self._cached_voices)
        self._fingerprint = model_fingerprint(self.model_dir, self.version)
        names = [str(s) for s in model.list_available_spks()]
        self._speakers = speakers_from_names(names)
        self.profile = make_profile(
            self.version,
            speakers=names,
            modes=self._modes,
            sample_rate=int(model.sample_rate),
            variant=self.model_dir.name,
        )
        self._capabilities = self._make_capabilities()
        modes = ",".join(sorted(self.profile.modes))
        log.info(
            "engine %s: %s ready, %d Hz, modes %s, %d speakers",
            *(self.name, cls.__name__, model.sample_rate, modes, len(names)),
        )

    # -- diagnosis (voxgate doctor) --------------------------------------------

    async def diagnose(self) -> list[Check]:
        return await asyncio.to_thread(self._diagnose)

    def _diagnose(self) -> list[Check]:
        checks = [self._check_files()]
        try:
            self._select_gpu()
            module = self._import_upstream()
        except EngineUnavailable as exc:
            checks.append(fail("package cosyvoice", exc.message, INSTALL_HINT))
            module = None
        else:
            checks.append(ok("package cosyvoice", f"imported from {module.__file__}"))
        if module is not None:
            checks.append(self._check_flags(getattr(module, CLASS_NAMES[self.version])))
        checks.extend(self._check_gpu())
        return checks

    def _check_files(self) -> Check:
        present = {p.name: p for p in self.model_dir.iterdir()}
        missing = [f for f in MODEL_FILES[self.version] if f not in present]
        if missing:
            return fail(
                "model files",
                f"{self.model_dir} lacks {', '.join(missing)}",
                "Download the complete model directory (modelscope download --model ...).",
            )
        size = sum(p.stat().st_size for p in present.values() if p.is_file()) / 1e9
        return ok("model files", f"CosyVoice {self.version} in {self.model_dir}, {size:.1f} GB")

    def _check_flags(self, cls: Any) -> Check:
        accepted = set(inspect.signature(cls.__init__).parameters)
        refused = sorted(set(self.load_flags) - accepted)
        if refused:
            usable = sorted(accepted & set(LOAD_FLAGS))
            return fail("load options", f"{cls.__name__} does not take {refused}", f"Use {usable}.")
        return ok("load options", f"{self.load_flags or 'defaults'} for {cls.__name__}")

    def _check_gpu(self) -> list[Check]:
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            return [fail("package torch", "not installed", "pip install 'voxgate[cosyvoice]'")]
        checks = [ok("package torch", torch.__version__)]
        if not torch.cuda.is_available():
            flags = [
                k for k in ("load_jit", "load_trt", "load_vllm", "fp16") if self.load_flags.get(k)
            ]
            off = f"; upstream switches {flags} off" if flags else ""
            detail = f"CUDA is not available: CosyVoice would run on the CPU, far slower{off}"
            fix = "Install a CUDA build of torch and the NVIDIA driver; check nvidia-smi."
            return [*checks, warn("GPU", detail, fix)]
        props = torch.cuda.get_device_properties(0)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
        memory = props.total_memory / 2**30
        checks.append(ok("GPU", f"{props.name}, {memory:.0f} GiB (CUDA_VISIBLE_DEVICES={visible})"))
        for flag, package in (("load_trt", "tensorrt"), ("load_vllm", "vllm")):
            if not self.load_flags.get(flag):
                continue
            try:
                importlib.import_module(package)
            except ImportError:
                fix = f"pip install {package} (docs/engines.md has the versions)"
                checks.append(fail(f"package {package}", f"{flag} needs it", fix))
            else:
                checks.append(ok(f"package {package}", f"installed, for {flag}"))
        if self.load_flags.get("load_vllm") and not os.access(self.model_dir, os.W_OK):
            fix = "Make the model directory writable, or copy it somewhere writable."
            checks.append(
                fail("model directory", "load_vllm exports into it; it is read-only", fix)
            )
        return checks

    # -- synthesis -----------------------------------------------------------

    def check(self, request: EngineRequest) -> list[Notice]:
        require_transcript(request, self.name)
        return []

    async def _synthesize(self, request: EngineRequest) -> AsyncIterator[AudioChunk]:
        if self._model is None:
            raise EngineUnavailable(f"engine {self.name} is not loaded")
        if request.segments:
            async for segment, samples in self._streams.stream(
                lambda stop: self._generate(request, stop)
            ):
                yield AudioChunk(samples, segment)
        if request.text_stream is not None:
            async for samples in self._streamed_text(request):
                yield AudioChunk(samples, len(request.segments))

    async def _streamed_text(self, request: EngineRequest) -> AsyncIterator[Samples]:
        """Text that is still arriving, handed to upstream as a generator of
        pieces (its bi-streaming input): the model starts speaking before the
        text is complete. The pieces cross from the event loop to the engine
        thread through a queue."""
        if not self.capabilities.text_streaming:
            raise EngineError(f"engine {self.name} cannot take text while it arrives")
        assert request.text_stream is not None
        pieces: queue.Queue[str | None] = queue.Queue()

        async def feed(source: AsyncIterator[str]) -> None:
            try:
                async for piece in source:
                    if piece:
                        pieces.put(piece)
            finally:
                pieces.put(None)

        feeder = asyncio.create_task(feed(request.text_stream))
        try:
            async for _, samples in self._streams.stream(
                lambda stop: self._generate_streamed(request, pieces, stop)
            ):
                yield samples
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)

    def _generate(
        self, request: EngineRequest, stop: threading.Event
    ) -> Iterator[tuple[int, Samples]]:
        """Runs in an engine thread: one upstream call per segment."""
        model = copy.copy(self._model)  # a shallow copy whose .model is this call's view
        model.model = RequestModel(self._model.model, self._initial_hop, stop)
        try:
            with ExitStack() as stack:
                spk_id = self._prompt_speaker(stack, model, request)
                for segment in request.segments:
                    texts = upstream_texts(self.version, request, segment)
                    outputs = self._call(model, request, texts, spk_id)
                    try:
                        for out in outputs:
                            yield segment.index, _samples(out)
                            if stop.is_set():
                                return
                    finally:
                        outputs.close()
        except AssertionError as exc:  # upstream checks its inputs with assert
            raise EngineError(f"CosyVoice refused the request: {exc}") from exc
        except Exception as exc:
            raise EngineError(f"CosyVoice failed: {exc!r}") from exc

    def _generate_streamed(
        self, request: EngineRequest, pieces: queue.Queue[str | None], stop: threading.Event
    ) -> Iterator[tuple[int, Samples]]:
        """Runs in an engine thread: one upstream call fed by ``pieces``."""
        model = copy.copy(self._model)
        model.model = RequestModel(self._model.model, self._initial_hop, stop)
        prompt_text = request.prompt.text if request.prompt else None
        # The control text a v3 model needs in front of the text (and the
        # instruction and transcript as usual) comes from the same rules.
        mode = request.mode.value
        texts = apply(self.version, mode, "", prompt_text=prompt_text, instruct=request.instruct)

        def text() -> Iterator[str]:
            if texts.tts_text:
                yield texts.tts_text
            while not stop.is_set():
                try:
                    piece = pieces.get(timeout=0.05)
                except queue.Empty:
                    continue
                if piece is None:
                    return
                yield piece

        try:
            with ExitStack() as stack:
                spk_id = self._prompt_speaker(stack, model, request)
                outputs = self._call(model, request, texts, spk_id, text=text())
                try:
                    for out in outputs:
                        yield 0, _samples(out)
                        if stop.is_set():
                            return
                finally:
                    outputs.close()
        except AssertionError as exc:
            raise EngineError(f"CosyVoice refused the request: {exc}") from exc
        except Exception as exc:
            raise EngineError(f"CosyVoice failed: {exc!r}") from exc

    def _prompt_speaker(self, stack: ExitStack, model: Any, request: EngineRequest) -> str:
        """A ``zero_shot_spk_id`` holding the prompt's features, or ``""``.

        Registered voices are kept (up to ``cached_voices``) and saved to the
        feature store; a request's own prompt is registered for the request
        when it has several segments. Never for instruct: upstream would drop
        the instruction.
        """
        prompt = request.prompt
        if prompt is None or self._cache is None:
            return ""
        if request.mode not in (Mode.ZERO_SHOT, Mode.CROSS_LINGUAL):
            return ""
        if prompt.voice_id:
            return stack.enter_context(self._voice_features(model, prompt))
        if len(request.segments) < 2:
            return ""
        spk_id = f"voxgate-request:{request.request_id}"
        stack.callback(self._cache.forget, spk_id)
        transcript = self._transcript(prompt)
        wav = prompt_wav(request)

        def register() -> Source:
            model.add_zero_shot_spk(transcript, io.BytesIO(wav), spk_id)
            return "extracted"

        return stack.enter_context(self._cache.use(spk_id, register))

    def _transcript(self, prompt: PromptAudio) -> str:
        """The transcript as the model conditions on it (v3 adds its prefix)."""
        return apply(self.version, "zero_shot", "", prompt_text=prompt.text).prompt_text

    def _voice_features(self, model: Any, prompt: PromptAudio) -> AbstractContextManager[str]:
        """A registered voice's features, held for a call: in the model already,
        else restored from the feature store, else extracted and saved there.
        The id names the voice and the transcript the features were made with."""
        assert self._cache is not None
        assert prompt.voice_id is not None
        voice_id = prompt.voice_id
        transcript = self._transcript(prompt)
        digest = hashlib.sha1(transcript.encode()).hexdigest()[:10]
        spk_id = f"voxgate:{voice_id}:{digest}"
        key = f"{self._fingerprint}-{digest}.pt"
        store = self.features

        def register() -> Source:
            import torch

            saved = store.load(voice_id, key) if store is not None else None
            if saved is not None:
                entry = torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True)
                model.frontend.spk2info[spk_id] = entry
                return "restored"
            wav = prompt.wav(min(prompt.sample_rate, PROMPT_RATE_CAP))
            model.add_zero_shot_spk(transcript, io.BytesIO(wav), spk_id)
            if store is not None:
                buffer = io.BytesIO()
                torch.save(model.frontend.spk2info[spk_id], buffer)
                store.save(voice_id, key, buffer.getvalue())
            return "extracted"

        return self._cache.use(spk_id, register)

    async def prepare_voice(self, prompt: PromptAudio) -> bool:
        """Extract (or restore) a registered voice's features now, in one of
        the engine's threads, so its first request does not wait for them."""
        if self._model is None or self._cache is None or prompt.voice_id is None:
            return False
        if not self.profile.modes & {Mode.ZERO_SHOT, Mode.CROSS_LINGUAL}:
            return False
        model = self._model

        def produce(stop: threading.Event) -> Iterator[bool]:
            with self._voice_features(model, prompt):
                yield True

        async for _ in self._streams.stream(produce):
            pass
        return True

    async def forget_voice(self, voice_id: str) -> None:
        if self._cache is not None:
            self._cache.drop_prefix(f"voxgate:{voice_id}:")

    def _call(
        self, model: Any, request: EngineRequest, texts: Texts, spk_id: str, text: Any = None
    ) -> Any:
        """The upstream generator for one segment (or for ``text``, a generator
        of pieces). With ``spk_id`` the cached features replace the prompt
        (upstream's documented calling pattern)."""
        common = {"stream": self._stream, "speed": 1.0, "text_frontend": self._text_frontend}
        speaker = request.speaker.id if request.speaker else ""
        text = texts.tts_text if text is None else text
        if request.mode == Mode.SFT:
            return model.inference_sft(text, speaker, **common)
        if request.mode == Mode.INSTRUCT and self.version == 1:
            return model.inference_instruct(text, speaker, texts.instruct_text, **common)
        if request.mode == Mode.INSTRUCT:  # never a cached id: upstream drops the instruction
            wav = io.BytesIO(prompt_wav(request))
            return model.inference_instruct2(text, texts.instruct_text, wav, **common)
        cached = {"zero_shot_spk_id": spk_id, **common}
        source: Any = "" if spk_id else io.BytesIO(prompt_wav(request))
        if request.mode == Mode.ZERO_SHOT:
            transcript = "" if spk_id else texts.prompt_text
            return model.inference_zero_shot(text, transcript, source, **cached)
        return model.inference_cross_lingual(text, source, **cached)


def _samples(output: Any) -> Samples:
    """Upstream yields ``{'tts_speech': FloatTensor[1, N]}`` on the CPU."""
    tensor = output["tts_speech"]
    array = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor
    samples: Samples = np.asarray(array, dtype=np.float32).reshape(-1)
    return samples
