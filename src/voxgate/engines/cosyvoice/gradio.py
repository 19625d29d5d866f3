"""``cosyvoice-gradio``: CosyVoice's Gradio web UI (upstream ``webui.py``) as an engine.

The web UI is often the only thing a team has running on its GPU box, so
voxgate can drive it like a browser would, through ``gradio_client`` (the
optional extra ``voxgate[gradio]``). Its one endpoint, ``/generate_audio``,
takes ten inputs in a fixed order (text, mode label, SFT speaker, prompt text,
uploaded prompt, recorded prompt, instruction, seed, stream, speed) and
answers with a *streaming* ``gr.Audio``. What that means on the wire is what
shapes this module:

* Gradio does not send the samples. Each chunk the UI yields is peak-normalized
  to full scale, re-encoded to AAC by ffmpeg on the UI's host, and appended to
  an HLS playlist; the client only learns the playlist's address from each
  intermediate output. This engine follows the playlist, fetches each new
  ``.aac`` segment, and decodes the ADTS frames with one continuous PyAV
  decoder (so segment boundaries are seamless), dropping the encoder's
  1024-sample priming. The audio is therefore lossy and its level is not the
  model's: it matches the model's output in shape and timing, not bit for bit.
  Gradio's encoder also keeps a chunk back until the next one comes, so the
  first audio leaves once the model has made its second chunk (or finished).
  With ``stream = false`` the UI asks the model for whole sentences.
* The UI's own speaker list (its SFT dropdown, read from the app's config by
  the health probe) replaces the version's default one unless ``speakers`` is
  given; the probe also notices a restarted UI and reconnects.
* ``gradio_client`` is synchronous: a call runs in one of the engine's threads
  (:class:`~voxgate.engines.threaded.BlockingStreams`), which polls the job
  and the playlist and stops (cancelling the Gradio job, which frees the UI's
  queue slot) as soon as the consumer goes away.
* The UI queues at most 4 waiting events and runs 2 at once
  (``demo.queue(max_size=4, default_concurrency_limit=2)``), hence the default
  ``concurrency = 2``; a full queue is answered as retryable.
* The UI's instruct mode calls v1's ``inference_instruct`` with an SFT speaker;
  it has no ``inference_instruct2`` path, so v2/v3 models lose ``instruct`` here.

    [engines.webui]
    kind = "cosyvoice-gradio"
    options = { url = "http://gpu-host:8000/", version = 1, modes = ["sft", "instruct"] }
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import av
import httpx
import numpy as np

from voxgate.audio.pcm import Samples, sanitize
from voxgate.audio.resample import StreamResampler
from voxgate.engines.base import EngineRequest, Mode
from voxgate.engines.cosyvoice.profile import make_profile, speakers_from_names
from voxgate.engines.cosyvoice.remote import CosyVoiceRemote
from voxgate.engines.cosyvoice.texts import prompt_wav, upstream_texts
from voxgate.engines.remote import RemoteFailure, classify_httpx, classify_status
from voxgate.engines.threaded import BlockingStreams
from voxgate.errors import EngineUnavailable
from voxgate.text.split import Segment

log = logging.getLogger(__name__)

# The web UI's mode radio, by voxgate mode (upstream's inference_mode_list).
MODE_LABELS: dict[Mode, str] = {
    Mode.SFT: "预训练音色",
    Mode.ZERO_SHOT: "3s极速复刻",
    Mode.CROSS_LINGUAL: "跨语种复刻",
    Mode.INSTRUCT: "自然语言控制",
}
SPEAKER_INPUT = 2  # index of the SFT speaker dropdown among generate_audio's inputs
AAC_PRIMING = 1024  # samples ffmpeg's AAC encoder puts before the audio (ADTS cannot say)
POLL_S = 0.02  # how often a call looks at its Gradio job while waiting
# Gradio's event stream sends a heartbeat every 15 s while a job waits; a read
# timeout below that would cut the stream of a job that is merely queued.
MIN_STREAM_READ_S = 60.0
_QUEUED = frozenset({"STARTING", "JOINING_QUEUE", "IN_QUEUE", "SENDING_DATA"})
# Gradio's own input validation: the request is wrong, trying again will not help.
_REJECTED = re.compile(r"not in the list of choices|failed validation", re.IGNORECASE)


def _import_gradio_client() -> Any:
    """The optional dependency, imported only by engines that use it."""
    # gradio_client reports every Client it makes to Hugging Face unless this
    # is set (its analytics_enabled=False does not switch that off); a gateway
    # must not call out. Set it to True to opt in.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio_client
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine kind cosyvoice-gradio needs the gradio_client package ({exc})",
            hint="Install the extra: pip install 'voxgate[gradio]'",
        ) from None
    return gradio_client


def dropdown_choices(config: Mapping[str, Any], api_name: str) -> list[str] | None:
    """The SFT speaker choices of ``api_name`` in a Gradio app's ``/config``,
    or None when the app has no such endpoint (or it takes no dropdown there)."""
    name = api_name.lstrip("/")
    dependency = next(
        (d for d in config.get("dependencies", []) if d.get("api_name") == name), None
    )
    if dependency is None or len(dependency.get("inputs", [])) <= SPEAKER_INPUT:
        return None
    component_id = dependency["inputs"][SPEAKER_INPUT]
    component: Mapping[str, Any] = next(
        (c for c in config.get("components", []) if c.get("id") == component_id), {}
    )
    if component.get("type") != "dropdown":
        return None
    names = []
    for choice in component.get("props", {}).get("choices") or []:
        value = choice[1] if isinstance(choice, list | tuple) else choice
        if isinstance(value, str) and value:  # the UI lists '' when it has none
            names.append(value)
    return names


class QueueFull(RemoteFailure):
    """The UI is up and busy: retry soon; the session saw no event, keep it."""


def classify(exc: BaseException) -> RemoteFailure:
    """Whatever a Gradio call raised, as a retry decision."""
    if isinstance(exc, RemoteFailure):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        return classify_status(exc.response.status_code, exc.response.text, exc.response.headers)
    if isinstance(exc, httpx.HTTPError):
        return classify_httpx(exc)
    kind = type(exc).__name__
    message = str(exc) or kind
    if kind == "QueueError":  # the UI's queue (max_size) is full: come back soon
        return QueueFull(
            f"the web UI's queue is full: {message}",
            kind="unavailable",
            retryable=True,
            retry_after=1.0,
        )
    if kind == "ValidationError" or (kind == "AppError" and _REJECTED.search(message)):
        return RemoteFailure(f"the web UI refused the inputs: {message}", kind="rejected",
                             retryable=False)  # fmt: skip
    if kind == "AppError":
        # gr.Error, or any exception in the app (its message hidden unless the
        # UI runs with show_error): like a 5xx, worth another try before audio.
        return RemoteFailure(f"the web UI failed: {message}", kind="protocol", retryable=True)
    if isinstance(exc, concurrent.futures.CancelledError):
        return RemoteFailure("the web UI closed the event stream", kind="protocol",
                             retryable=True)  # fmt: skip
    if "Server stopped" in message:
        return RemoteFailure(f"the web UI stopped: {message}", kind="unavailable", retryable=True)
    return RemoteFailure(f"{kind}: {message}", kind="protocol", retryable=True)


class AdtsDecoder:
    """ADTS AAC bytes, fed segment by segment, to float32 mono at ``rate``.

    One decoder for the whole stream: Gradio feeds one encoder per output, so
    frames overlap across segment boundaries and only decode cleanly in order.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._codec = av.CodecContext.create("aac", "r")
        self._skip = AAC_PRIMING
        self._resampler: StreamResampler | None = None

    def feed(self, data: bytes) -> Samples:
        pieces = [self._frames(packet) for packet in self._codec.parse(data)]
        return self._out(pieces)

    def flush(self) -> Samples:
        last = self._out([self._frames(None)])
        if self._resampler is None:
            return last
        tail = np.clip(self._resampler.flush(), -1.0, 1.0)
        return np.concatenate([last, tail]).astype(np.float32, copy=False)

    def _frames(self, packet: Any) -> Samples:
        out = []
        for frame in self._codec.decode(packet):
            array = frame.to_ndarray()
            channels = len(frame.layout.channels)
            if frame.format.is_planar:
                mono = array.reshape(channels, -1).mean(axis=0)
            else:
                mono = array.reshape(-1, channels).mean(axis=1)
            if self._resampler is None:
                self._resampler = StreamResampler(frame.sample_rate, self.rate)
            out.append(sanitize(mono))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _out(self, pieces: list[Samples]) -> Samples:
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        if self._skip:
            dropped = min(self._skip, samples.size)
            samples = samples[dropped:]
            self._skip -= dropped
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        # Gradio normalizes each chunk to full scale, and AAC overshoots it.
        return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


class CosyVoiceGradioEngine(CosyVoiceRemote):
    kind = "cosyvoice-gradio"
    probe_name = "CosyVoice Gradio web UI"

    def __init__(
        self,
        name: str = "cosyvoice-gradio",
        *,
        api_name: str = "/generate_audio",
        stream: bool = True,
        speakers: Iterable[str] | None = None,
        modes: Iterable[str] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("concurrency", 2)  # the UI's default_concurrency_limit
        # With stream off the UI yields one chunk per sentence: no audio
        # leaves before a whole sentence is synthesized.
        self.streaming = bool(stream)
        super().__init__(name, speakers=speakers, modes=modes, **options)
        self.api_name = "/" + api_name.lstrip("/")
        self.stream = bool(stream)
        self._explicit_modes = modes is not None
        self._learn_speakers = speakers is None
        self._drop_unreachable_modes()
        # Idle connections, one Gradio session each; see _acquire.
        self._idle: list[Any] = []
        self._generation = 0  # bumped when the UI restarts: older clients are dropped
        self._pool_lock = threading.Lock()
        self._gradio: Any = None
        self._threads: BlockingStreams | None = None
        self._http: httpx.Client | None = None
        self._probe_client: httpx.AsyncClient | None = None

    # -- profile -------------------------------------------------------------

    def _drop_unreachable_modes(self) -> None:
        """v2/v3 instruct needs ``inference_instruct2`` (a prompt, no speaker),
        which the UI does not call: its instruct mode is v1's, with a speaker."""
        if self.profile.version >= 2 and Mode.INSTRUCT in self.profile.modes:
            if self._explicit_modes:
                log.warning(
                    "engine %s: mode instruct dropped: CosyVoice's web UI only has v1's "
                    "inference_instruct (SFT speaker + instruction), not v%d's "
                    "inference_instruct2",
                    self.name,
                    self.profile.version,
                )
            self._set_profile(self.profile.modes - {Mode.INSTRUCT}, [s.id for s in self._speakers])

    def _set_profile(self, modes: Iterable[Mode], speakers: list[str]) -> None:
        self.profile = make_profile(
            self.profile.version,
            speakers=speakers,
            modes=[m.value for m in modes],
            sample_rate=self.profile.sample_rate,
        )
        self._speakers = speakers_from_names(speakers)
        self._capabilities = self.profile.capabilities(
            concurrency=self.options.concurrency, streaming=self.streaming, text_streaming=False
        )

    def _learned(self, names: list[str]) -> None:
        """The UI's own speaker list replaces the version's default one."""
        self._learn_speakers = False
        if names == [s.id for s in self._speakers]:
            return
        modes = set(self.profile.modes)
        if names and not self._explicit_modes:
            modes.add(Mode.SFT)
        if not names:  # sft, and v1's instruct, speak with an SFT speaker
            modes -= {Mode.SFT, Mode.INSTRUCT}
        log.info("engine %s: the web UI offers speakers %s", self.name, names)
        self._set_profile(modes, names)

    # -- lifecycle -----------------------------------------------------------

    async def _open(self) -> None:
        self._gradio = _import_gradio_client()
        self._threads = BlockingStreams(self.name, self.options.concurrency)
        self._http = httpx.Client(
            timeout=self.options.httpx_timeout(), limits=self.options.httpx_limits()
        )
        # The probe is one small GET: it gets the connect timeout for everything.
        self._probe_client = httpx.AsyncClient(timeout=self.options.connect_timeout_s)

    async def start(self) -> None:
        await super().start()
        if self.health.ok:
            # Connecting reads the app's config and API info: done now, not
            # on the first request's clock. A failure here is retried then.
            try:
                client, generation = await asyncio.to_thread(self._acquire)
                self._release(client, generation, reusable=True)
            except RemoteFailure as failure:
                log.warning("engine %s: cannot connect to the web UI yet: %s", self.name, failure)

    async def _aclose(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
        self._drop_idle()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._probe_client is not None:
            await self._probe_client.aclose()
            self._probe_client = None

    @property
    def base_url(self) -> str:
        url = self.options.url
        return url if url.endswith("/") else url + "/"

    async def _probe(self) -> None:
        # The app's config is what gradio_client reads first: one cheap GET
        # that proves a Gradio app answers, has our endpoint, and lists the
        # SFT speakers the UI offers.
        if self._probe_client is None:
            raise RuntimeError(f"engine {self.name} is not started")
        response = await self._probe_client.get(urllib.parse.urljoin(self.base_url, "config"))
        if response.status_code != 200:
            raise RuntimeError(f"GET config: HTTP {response.status_code}")
        config = response.json()
        choices = dropdown_choices(config, self.api_name)
        if choices is None:
            raise RuntimeError(
                f"the Gradio app has no endpoint {self.api_name} taking a speaker dropdown; "
                "is it CosyVoice's webui.py?"
            )
        if self._learn_speakers:
            self._learned(choices)
        # A restarted UI is a new app (new app_id), maybe laid out differently:
        # calls connect afresh instead of using the old layout.
        with self._pool_lock:
            known = {c.config.get("app_id") for c in self._idle}
        if known - {config.get("app_id")}:
            self._drop_idle()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "api_name": self.api_name, "stream": self.stream}

    # -- one call --------------------------------------------------------------

    def inputs(self, request: EngineRequest, segment: Segment, prompt: Any) -> list[Any]:
        """generate_audio's ten inputs, in the UI's order."""
        texts = upstream_texts(self.profile.version, request, segment)
        speaker = request.speaker.id if request.speaker is not None else ""
        if not speaker and self._speakers:
            speaker = self._speakers[0].id  # the dropdown refuses values it does not list
        mode = request.mode
        return [
            texts.tts_text,
            MODE_LABELS[mode],
            speaker,
            texts.prompt_text if mode == Mode.ZERO_SHOT else "",
            prompt if mode in (Mode.ZERO_SHOT, Mode.CROSS_LINGUAL) else None,
            None,  # prompt_wav_record: the microphone
            texts.instruct_text if mode == Mode.INSTRUCT else "",
            request.seed,
            self.stream,
            1.0,  # speed: voxgate stretches tempo itself (the UI's only works unstreamed)
        ]

    async def _call(self, request: EngineRequest, segment: Segment) -> AsyncIterator[Samples]:
        if self._threads is None:
            raise RuntimeError(f"engine {self.name} is not started")
        async for samples in self._threads.stream(lambda stop: self._run(request, segment, stop)):
            yield samples

    # -- connections -----------------------------------------------------------
    #
    # Gradio's /cancel stops every running event of the caller's *session* for
    # that endpoint, not just the one named: calls that shared a session would
    # die with the one a client gave up on. So each call has a session (a
    # gradio_client.Client) to itself, taken from a pool of at most
    # ``concurrency`` idle ones, and only a call that ended cleanly gives its
    # client back.

    def _acquire(self) -> tuple[Any, int]:
        with self._pool_lock:
            generation = self._generation
            if self._idle:
                return self._idle.pop(), generation
        return self._connect(), generation

    def _release(self, client: Any, generation: int, *, reusable: bool) -> None:
        if reusable:
            # Its event stream closes right after its last event; a new event
            # joining before that would be cut with it.
            deadline = time.monotonic() + 0.2
            while getattr(client, "stream_open", False) and time.monotonic() < deadline:
                time.sleep(0.01)
            reusable = not getattr(client, "stream_open", False)
        with self._pool_lock:
            if (
                reusable
                and generation == self._generation
                and len(self._idle) < self.options.concurrency
            ):
                self._idle.append(client)
                return
        client.close()

    def _drop_idle(self) -> None:
        with self._pool_lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()

    def _connect(self) -> Any:
        """A new session: reads the app's config and API info (two GETs)."""
        base = self.options.httpx_timeout()
        timeout = httpx.Timeout(
            connect=base.connect,
            read=max(self.options.read_timeout_s, MIN_STREAM_READ_S),
            write=base.write,
            pool=base.pool,
        )
        try:
            client = self._gradio.Client(
                self.base_url,
                token=False,  # never send a locally saved Hugging Face token
                verbose=False,
                download_files=False,  # outputs are playlists, read here
                max_workers=4,  # one call at a time: its job and the job's helpers
                httpx_kwargs={"timeout": timeout},
                analytics_enabled=False,
            )
        except Exception as exc:
            raise classify(exc) from None
        info = client.view_api(print_info=False, return_format="dict")
        if self.api_name not in info["named_endpoints"]:
            client.close()
            raise RemoteFailure(
                f"the Gradio app has no endpoint {self.api_name}", kind="unavailable",
                retryable=False,
            )  # fmt: skip
        return client

    # -- one call, in one of the engine's threads --------------------------------

    def _run(
        self, request: EngineRequest, segment: Segment, stop: threading.Event
    ) -> Iterator[Samples]:
        client, generation = self._acquire()
        folder: str | None = None
        job: Any = None
        failed = reusable = False
        try:
            prompt = None
            if request.mode in (Mode.ZERO_SHOT, Mode.CROSS_LINGUAL):
                # The UI's upload takes a file; it is sent when the job starts,
                # so the file lives until the job is over.
                folder = tempfile.mkdtemp(prefix="voxgate-gradio-")
                path = os.path.join(folder, "prompt.wav")
                with open(path, "wb") as f:
                    f.write(prompt_wav(request))
                prompt = self._gradio.handle_file(path)
            args = self.inputs(request, segment, prompt)
            try:
                job = client.submit(*args, api_name=self.api_name)
            except Exception as exc:
                failure = classify(exc)
                if failure.kind != "unavailable":
                    failure = RemoteFailure(str(failure), kind="rejected", retryable=False)
                raise failure from None
            yield from self._follow(client, job, stop)
            reusable = True
        except RemoteFailure as failure:
            failed = True
            reusable = isinstance(failure, QueueFull)  # its session never got an event
            raise
        finally:
            if job is not None and not job.done():
                # The UI stops the generator and frees its slot, once the
                # model's current step returns: for a consumer that left, this
                # thread (and the engine's slot) waits for that; an error (a
                # stuck UI timing out) reaches the caller now.
                if failed:
                    threading.Thread(target=job.cancel, name="voxgate-gradio-cancel",
                                     daemon=True).start()  # fmt: skip
                else:
                    job.cancel()
            self._release(client, generation, reusable=reusable)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def _follow(self, client: Any, job: Any, stop: threading.Event) -> Iterator[Samples]:
        """The audio of one job: follow its playlist until Gradio ends it."""
        http = self._http
        if http is None:
            raise RuntimeError(f"engine {self.name} is not started")
        decoder = AdtsDecoder(self.profile.sample_rate)
        playlist: str | None = None
        outputs_seen = 0
        consumed = 0
        ended = False
        read_timeout = self.options.read_timeout_s
        deadline = time.monotonic() + read_timeout
        while not stop.is_set():
            done = job.done()
            outputs = job.outputs()
            grew = len(outputs) > outputs_seen
            if grew:
                outputs_seen = len(outputs)
                playlist = self._playlist_url(client, outputs[-1])
            if done and job.exception() is not None:
                raise classify(job.exception())
            if playlist is None:
                if done:
                    raise RemoteFailure("the web UI finished without an audio stream",
                                        kind="protocol", retryable=True)  # fmt: skip
            elif not ended and (grew or done):
                names, ended = self._fetch_playlist(http, playlist)
                for name in names[consumed:]:
                    samples = decoder.feed(self._fetch(http, urllib.parse.urljoin(playlist, name)))
                    consumed += 1
                    if samples.size:
                        deadline = time.monotonic() + read_timeout
                        yield samples
                    if stop.is_set():
                        return
            if ended and done:
                # Only now: Gradio also ends the playlist of a run that failed
                # or was dropped, without its last frames.
                tail = decoder.flush()
                if tail.size:
                    yield tail
                return
            if job.status().code.value in _QUEUED:
                deadline = time.monotonic() + read_timeout  # waiting for the UI's queue
            elif time.monotonic() > deadline:
                raise RemoteFailure(
                    f"no audio from the web UI for {read_timeout:g} s",
                    kind="timeout",
                    retryable=True,
                )
            time.sleep(POLL_S)

    def _playlist_url(self, client: Any, output: Any) -> str:
        if isinstance(output, list) and output and isinstance(output[0], BaseException):
            raise classify(output[0])  # gradio_client failed to read this output
        if not isinstance(output, dict) or not output.get("is_stream"):
            raise RemoteFailure(
                f"{self.api_name} answered {str(output)[:200]!r}, not a streamed audio "
                "output; is it CosyVoice's webui.py (gr.Audio(streaming=True))?",
                kind="protocol",
                retryable=False,
            )
        path = output.get("path") or ""
        if path.endswith(".m3u8"):
            # Built from the address voxgate uses: the app's own idea of its
            # root URL is wrong behind a proxy.
            return urllib.parse.urljoin(str(client.src_prefixed), "stream/" + path)
        url = output.get("url")
        if not isinstance(url, str) or not url:
            raise RemoteFailure(f"a streamed output without an address: {output!r}",
                                kind="protocol", retryable=False)  # fmt: skip
        return urllib.parse.urljoin(str(client.src_prefixed), url)

    @staticmethod
    def _fetch(http: httpx.Client, url: str) -> bytes:
        try:
            response = http.get(url)
        except httpx.HTTPError as exc:
            raise classify_httpx(exc) from None
        if response.status_code != 200:
            raise classify_status(response.status_code, response.text, response.headers)
        return response.content

    def _fetch_playlist(self, http: httpx.Client, url: str) -> tuple[list[str], bool]:
        """The segment names of an HLS playlist, and whether it is complete."""
        text = self._fetch(http, url).decode("utf-8", "replace")
        names = [line.strip() for line in text.splitlines() if line.strip()]
        segments = [line for line in names if not line.startswith("#")]
        return segments, "#EXT-X-ENDLIST" in names
