"""A stand-in for FunAudioLLM/CosyVoice (upstream commit ace7c47), for tests.

It cannot run a neural model: there are no weights and no GPU here. It follows
the upstream *interface* exactly, the parts an adapter depends on: module
layout (``cosyvoice.cli.cosyvoice.AutoModel``, ``CosyVoice``, ``CosyVoice2``,
``CosyVoice3``), constructor and method signatures, the generators yielding
``{'tts_speech': FloatTensor[1, N]}`` on CPU, sample rates (22050 for v1, 24000
for v2/v3), the text frontend's splitting rules (no splitting when the text
contains ``<|`` and ``|>``), ``spk2info`` and ``add_zero_shot_spk``, and the
model's streaming loop with its per-request dictionaries, LLM thread, 0.1 s
polling and shared ``token_hop_len``.

It reproduces the upstream bugs an adapter must guard against:

* ``CosyVoice2Model.tts`` grows the shared ``token_hop_len`` on every streamed
  chunk and never resets it (25 -> 50 -> 100 tokens across requests);
* ``speed != 1.0`` with ``stream=True`` fails an assertion;
* ``inference_instruct2`` with a cached ``zero_shot_spk_id`` ignores the
  instruction (the cached prompt text replaces it).

Instead of a model, tokens and audio are deterministic functions of the text,
the prompt text and the speaker embedding: a test can tell which of them the
output depended on. Written for voxgate's tests; no upstream code is copied.

Knobs (environment): ``FAKE_COSYVOICE_POLL_S`` (upstream's 0.1 s poll),
``FAKE_COSYVOICE_TOKEN_S`` (time per generated speech token).
"""
