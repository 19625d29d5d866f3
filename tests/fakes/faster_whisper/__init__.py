"""A stand-in for ``faster_whisper`` (SYSTRAN/faster-whisper 1.2.1, commit
65882ee), for voxgate's tests of the ``faster-whisper`` transcriber.

It cannot run Whisper: there are no CTranslate2 weights here (hundreds of MB
to 3 GB, from the Hugging Face Hub) and no ctranslate2 package. What is real,
that is, follows upstream's interface exactly, as far as voxgate depends on it:

* ``from faster_whisper import WhisperModel``; ``WhisperModel(model_size_or_path,
  device="auto", device_index=0, compute_type="default", cpu_threads=0,
  num_workers=1, download_root=None, local_files_only=False, files=None,
  revision=None, use_auth_token=None, **model_kwargs)``;
* ``supported_languages`` (every Whisper code for a multilingual model, only
  ``en`` for an English-only one) and ``model.is_multilingual``;
* ``transcribe(audio, language=None, task="transcribe", ..., beam_size=5, ...)``
  with upstream's full keyword list and defaults, returning ``(segments, info)``:
  ``segments`` a lazy generator of ``Segment`` dataclasses (``text`` with
  Whisper's leading space, ``avg_logprob``, ``no_speech_prob``, ...), whose
  decoding happens while it is read; ``info`` a ``TranscriptionInfo`` with
  ``language``, ``language_probability`` (1 when the language was given),
  ``duration``, ...;
* an unknown language code is a ``ValueError``; an English-only model asked
  for another language logs a warning and transcribes as English anyway;
* concurrent ``transcribe`` calls from several threads are allowed, at most
  ``num_workers`` decoding at once (CTranslate2 queues the rest).

What is fake:

* recognition: the stand-in "hears" only recordings a test taught it
  (:func:`faster_whisper.standin.teach` writes a table into the model
  directory, keyed by a fingerprint of the 16 kHz audio); anything else gives
  no segments. Entries can make decoding slow (``delay_s``, blocking sleeps
  spread over the segments) or fail (``error``);
* loading: the directory must hold ``model.bin``, ``config.json`` and
  ``vocabulary.*`` (CTranslate2 fails without them) and ``tokenizer.json``
  (upstream would download one from the Hub; the stand-in refuses). A size
  name or Hub id is refused (upstream downloads it). ``config.json``'s
  ``lang_ids`` tell a multilingual model from an English-only one, where
  CTranslate2 looks at the vocabulary. There is no GPU: ``device="cuda"``
  fails as CTranslate2 does without one, and ``float16`` on the CPU is refused
  as CTranslate2 refuses it;
* inputs: float32 numpy arrays at 16 kHz only (no files, no ``decode_audio``);
  ``transcription_options`` is a plain dict of the call's options, and VAD,
  word timestamps and translation are not simulated. The two list defaults
  of ``transcribe`` (``temperature``, ``suppress_tokens``) are written as
  tuples of the same values.

Written for voxgate's tests; no upstream code is copied. On ``sys.path`` only
in tests (tests/fakes).
"""

from faster_whisper.transcribe import Segment, TranscriptionInfo, WhisperModel, Word
from faster_whisper.utils import available_models

__version__ = "1.2.1"
__all__ = [
    "Segment",
    "TranscriptionInfo",
    "WhisperModel",
    "Word",
    "__version__",
    "available_models",
]
