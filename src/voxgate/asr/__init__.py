"""Speech recognition for voice prompts sent without a transcript.

CosyVoice's zero-shot cloning reads the prompt's transcript alongside its
audio; a user who registers a voice from a recording often has none. voxgate
then asks a recognizer, the way CosyVoice's own demo asks SenseVoice. The kind
is chosen with ``[asr] kind`` (:func:`voxgate.asr.base.build_transcriber`):

* ``pocketsphinx``: embedded, English only, rough; needs nothing but pip;
* ``sensevoice``: FunASR's SenseVoiceSmall from a local directory (zh, en,
  yue, ja, ko), what CosyVoice's demo uses;
* ``faster-whisper``: a local CTranslate2 Whisper model, any language;
* ``none``: no recognizer; voices without a transcript stay without one.

A recognizer is a helper, never a gate: when it cannot transcribe a prompt it
raises :class:`voxgate.asr.base.TranscriptionUnavailable` with the reason, and
the voice is registered without a transcript. This package imports nothing on
its own: pocketsphinx's worker processes import only the modules they need.
"""
