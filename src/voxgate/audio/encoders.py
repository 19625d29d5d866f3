"""Incremental encoders for the six output formats (DESIGN rule 5).

An encoder takes float32 mono chunks at its sample rate and returns bytes as
they become available. In *stream* mode every returned piece can be sent at
once and the concatenation is a valid file that decodes completely. In
*whole* mode nothing is returned until :meth:`Encoder.finish`, which gives a
file with exact lengths in its headers (WAV sizes, FLAC STREAMINFO).

Choices that matter to clients:

* WAV streams carry one header whose sizes say "unknown" (0xFFFFFFFF), the
  convention ffmpeg, browsers and Python's ``wave`` read to the end of data.
* MP3 never carries a Xing/Info frame: a streamed one cannot know its frame
  count, and a wrong count makes iOS players report zero duration. Streamed
  and whole MP3 responses are therefore byte-identical.
* Opus goes in Ogg with short pages so audio leaves as it is encoded; the Ogg
  pre-skip and final granule make it decode to the exact sample count.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
from abc import ABC, abstractmethod

import av
import numpy as np
from av.audio.stream import AudioStream

from voxgate.audio.formats import AudioFormat, info
from voxgate.audio.pcm import Samples, clip, to_s16le


class Encoder(ABC):
    """Thread-safe by construction: every call takes the encoder's lock, so a
    request that is abandoned while a worker thread is encoding can close the
    encoder without freeing native state under it (that crashed the process)."""

    # True where encoding costs real CPU time (compressing codecs): the
    # pipeline then runs it in worker threads instead of the event loop.
    cpu_bound: bool = False

    def __init__(self, fmt: AudioFormat, sample_rate: int, *, whole: bool) -> None:
        self.format = fmt
        self.sample_rate = sample_rate
        self.whole = whole
        self.media_type = info(fmt).media_type
        self.samples_in = 0
        self._lock = threading.Lock()
        self._done = False

    def encode(self, samples: Samples) -> bytes:
        with self._lock:
            if self._done:
                raise RuntimeError("encoder already finished or closed")
            self.samples_in += samples.size
            return self._encode(samples)

    def finish(self) -> bytes:
        """Flush everything; the returned bytes complete the file."""
        with self._lock:
            if self._done:
                raise RuntimeError("encoder already finished or closed")
            self._done = True
            return self._finish()

    def close(self) -> None:
        """Release native resources without producing output (on abort).
        Waits for an encode in progress on another thread; idempotent."""
        with self._lock:
            if not self._done:
                self._done = True
                self._close()

    @abstractmethod
    def _encode(self, samples: Samples) -> bytes: ...

    @abstractmethod
    def _finish(self) -> bytes: ...

    def _close(self) -> None:  # noqa: B027 - only native encoders hold resources
        pass


class PcmEncoder(Encoder):
    """Headerless s16le mono: what OpenAI's ``pcm`` and CosyVoice's servers send."""

    def __init__(self, sample_rate: int, *, whole: bool = False) -> None:
        super().__init__(AudioFormat.PCM, sample_rate, whole=whole)
        self._held: list[bytes] = []

    def _encode(self, samples: Samples) -> bytes:
        data = to_s16le(samples)
        if self.whole:
            self._held.append(data)
            return b""
        return data

    def _finish(self) -> bytes:
        data = b"".join(self._held)
        self._held.clear()
        return data


UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte PCM WAV header; ``None`` writes the streaming "unknown" sizes."""
    if data_bytes is None:
        riff_size = data_size = UNKNOWN_SIZE
    else:
        data_size = data_bytes
        riff_size = min(36 + data_bytes, UNKNOWN_SIZE)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


class WavEncoder(Encoder):
    def __init__(self, sample_rate: int, *, whole: bool = False) -> None:
        super().__init__(AudioFormat.WAV, sample_rate, whole=whole)
        self._pcm = PcmEncoder(sample_rate, whole=whole)
        self._header_sent = False

    def _encode(self, samples: Samples) -> bytes:
        data = self._pcm.encode(samples)
        if self.whole or self._header_sent:
            return data
        self._header_sent = True
        return wav_header(self.sample_rate, None) + data

    def _finish(self) -> bytes:
        if self.whole:
            data = self._pcm.finish()
            return wav_header(self.sample_rate, len(data)) + data
        if not self._header_sent:  # an empty stream is still a valid file
            self._header_sent = True
            return wav_header(self.sample_rate, None)
        return b""


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file for PyAV: we take bytes as they come."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buf += b
        return len(b)

    def take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


_CODECS: dict[AudioFormat, tuple[str, str, dict[str, str], dict[str, str]]] = {
    # format -> (muxer, encoder, muxer options, encoder options)
    #
    # Encoder effort is set for speech at these bit rates, where the default
    # search spends 2-4x the CPU for no audible gain (measured on espeak speech,
    # see bench/RESULTS.md): LAME -q 7, Opus complexity 5, AAC's fast coder.
    AudioFormat.MP3: (
        "mp3",
        "libmp3lame",
        {"write_xing": "0", "id3v2_version": "0"},
        {"compression_level": "7"},
    ),
    AudioFormat.OPUS: ("ogg", "libopus", {"page_duration": "100000"}, {"compression_level": "5"}),
    AudioFormat.AAC: ("adts", "aac", {}, {"aac_coder": "fast"}),
    AudioFormat.FLAC: ("flac", "flac", {}, {}),
}


def _bit_rate(fmt: AudioFormat, sample_rate: int) -> int | None:
    if fmt is AudioFormat.FLAC:
        return None
    if fmt is AudioFormat.OPUS:
        return 32_000 if sample_rate <= 24_000 else 48_000
    return 64_000 if sample_rate <= 24_000 else 96_000


class AvEncoder(Encoder):
    """MP3, Opus, AAC and FLAC through PyAV's muxers and encoders."""

    cpu_bound = True

    def __init__(
        self,
        fmt: AudioFormat,
        sample_rate: int,
        *,
        whole: bool = False,
        codec_options: dict[str, str] | None = None,
    ) -> None:
        super().__init__(fmt, sample_rate, whole=whole)
        muxer, codec, options, tuned = _CODECS[fmt]
        codec_options = tuned if codec_options is None else codec_options
        # Whole FLAC is written seekably so STREAMINFO gets its totals; every
        # other format is the same bytes either way.
        self._seekable = whole and fmt is AudioFormat.FLAC
        self._file: io.BytesIO | _Sink = io.BytesIO() if self._seekable else _Sink()
        # bitexact: no random Ogg serial, no version strings, so the same audio
        # always encodes to the same bytes (caches and ETags rely on it).
        self._container = av.open(
            self._file, mode="w", format=muxer, options={"fflags": "+bitexact", **options}
        )
        stream = self._container.add_stream(codec, rate=sample_rate, options=codec_options)
        assert isinstance(stream, AudioStream)
        self._stream: AudioStream = stream
        self._stream.layout = "mono"
        bit_rate = _bit_rate(fmt, sample_rate)
        if bit_rate:
            self._stream.bit_rate = bit_rate
        # Prefer float input where the encoder takes it: no conversion, and LAME
        # is about 20% faster on float than on its default int32 input.
        names = [f.name for f in self._stream.codec_context.codec.audio_formats or []]
        floats = [n for n in names if n in ("flt", "fltp")]
        self._sample_format = (floats or names or ["flt"])[0]
        self._pts = 0
        self._held: list[bytes] = []
        self._closed = False

    def _frame(self, samples: Samples) -> av.AudioFrame:
        fmt = self._sample_format
        if fmt in ("flt", "fltp"):
            arr = np.ascontiguousarray(clip(samples), dtype=np.float32).reshape(1, -1)
        elif fmt in ("s16", "s16p"):
            ints = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)
            arr = ints.reshape(1, -1)
        elif fmt in ("s32", "s32p"):
            ints32 = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int32) << 16
            arr = ints32.reshape(1, -1)
        else:  # pragma: no cover - codecs above only offer these
            raise RuntimeError(f"unexpected sample format {fmt}")
        frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.size
        return frame

    def _take(self) -> bytes:
        if self._seekable:
            return b""
        assert isinstance(self._file, _Sink)
        data = self._file.take()
        if self.whole:
            self._held.append(data)
            return b""
        return data

    def _encode(self, samples: Samples) -> bytes:
        if samples.size == 0:
            return b""
        for packet in self._stream.encode(self._frame(samples)):
            self._container.mux(packet)
        return self._take()

    def _finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._closed = True
        if self._seekable:
            assert isinstance(self._file, io.BytesIO)
            return self._file.getvalue()
        tail = self._take()
        if self.whole:
            data = b"".join(self._held)
            self._held.clear()
            return data
        return tail

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._container.close()


def make_encoder(fmt: AudioFormat, sample_rate: int, *, whole: bool = False) -> Encoder:
    if fmt is AudioFormat.PCM:
        return PcmEncoder(sample_rate, whole=whole)
    if fmt is AudioFormat.WAV:
        return WavEncoder(sample_rate, whole=whole)
    return AvEncoder(fmt, sample_rate, whole=whole)
