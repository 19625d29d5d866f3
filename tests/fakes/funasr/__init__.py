"""A stand-in for FunASR's ``funasr`` package (modelscope/FunASR at commit
3c58cb5, funasr 1.4.3; checked against the 1.4.16 wheel), for voxgate's
tests of the ``sensevoice`` transcriber.

It cannot run SenseVoiceSmall: there are no weights here (about 900 MB, from
ModelScope) and no torch model is built. What is real, that is, follows
upstream's interface exactly, as far as voxgate depends on it:

* the import paths ``funasr.AutoModel`` and
  ``funasr.utils.postprocess_utils.rich_transcription_postprocess``;
* ``AutoModel(**kwargs)`` with upstream's keywords (``model``,
  ``trust_remote_code``, ``remote_code``, ``device``, ``disable_update``,
  ``disable_pbar``, ``hub``, ...), a ``cuda`` device silently falling back to
  the CPU when CUDA is unavailable (always, here), ``model_path`` and ``kwargs``;
* ``generate(input, input_len=None, progress_callback=None, **cfg)`` with
  ``cache``, ``language`` ("auto", "zh", "en", "yue", "ja", "ko", "nospeech";
  anything else is treated as "auto", as upstream's model does) and
  ``use_itn``, returning ``[{"key": ..., "text": ...}]`` where the text leads
  with SenseVoice's tags: ``<|en|><|NEUTRAL|><|Speech|><|withitn|>Hello.``;
* runtime options are written into the model's shared ``kwargs`` on every
  call, as upstream's ``AutoModel.inference`` does: concurrent calls on one
  instance are not safe, which is why the adapter keeps one per thread.

What is fake:

* recognition: the stand-in "hears" only recordings a test taught it
  (:func:`funasr.standin.teach` writes a table into the model directory,
  keyed by a fingerprint of the 16 kHz audio); anything else comes back as
  SenseVoice's no-speech output, tags and no words. Table entries can also
  make a call slow (``delay_s``, a blocking sleep like a model's forward
  pass) or fail (``error``);
* loading: the directory must hold the files the real model has
  (``model.pt``, ``config.yaml`` naming ``SenseVoiceSmall``,
  ``configuration.json``, ``am.mvn``, ``chn_jpn_yue_eng_ko_spectok.bpe.model``);
  upstream would load a directory without ``model.pt`` with random weights
  and only print a line, the stand-in refuses it so a test cannot pass on
  half a model. A name instead of a directory is refused too (upstream
  downloads it), as is ``trust_remote_code=True`` (upstream imports
  ``model.py`` from the working directory) and a ``vad_model``;
* inputs: float32 numpy arrays (one, or a list) only, no paths, URLs, bytes.

Written for voxgate's tests; no upstream code is copied. On ``sys.path`` only
in tests (tests/fakes), so it can never shadow a real installation elsewhere.
"""

from funasr.auto.auto_model import AutoModel

__version__ = "1.4.3"
__all__ = ["AutoModel"]
