"""Where engines keep a registered voice's features between restarts.

Extracting a prompt's features is the main cost of a zero-shot call. An
engine that can reuse them (CosyVoice's ``add_zero_shot_spk``) computes them
once and saves them here, under the voice; after a restart it loads them
instead of extracting again. Deleting a voice deletes every engine's
features for it in one call.
"""

from __future__ import annotations

from voxgate.store.blobs import BlobStore, check_key

PREFIX = "voices/features"


class BlobFeatureStore:
    """:class:`voxgate.engines.base.FeatureStore` on a blob store.

    Keys: ``voices/features/<voice id>/<engine's key>``; the engine's key says
    which model and which prompt version (transcript) the features are for."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def _key(self, voice_id: str, key: str) -> str:
        return check_key(f"{PREFIX}/{voice_id}/{key}")

    def load(self, voice_id: str, key: str) -> bytes | None:
        try:
            return self._blobs.get(self._key(voice_id, key))
        except KeyError:
            return None

    def save(self, voice_id: str, key: str, data: bytes) -> None:
        self._blobs.put(self._key(voice_id, key), data)

    def delete_voice(self, voice_id: str) -> int:
        return self._blobs.delete_prefix(check_key(f"{PREFIX}/{voice_id}") + "/")
