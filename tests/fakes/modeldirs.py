"""Model directories laid out as the real ones (files the stand-in checks for)."""

from __future__ import annotations

from pathlib import Path

import torch

BUILTIN_SPEAKERS = ["中文女", "中文男", "日语男", "粤语女", "英文女", "英文男", "韩语女"]


def make_model_dir(root: Path, version: int, speakers: list[str] | None = None) -> Path:
    """A directory AutoModel accepts: the yaml naming the version, weights, spk2info."""
    names = {1: "CosyVoice-300M-SFT", 2: "CosyVoice2-0.5B", 3: "Fun-CosyVoice3-0.5B"}
    path = root / names[version]
    path.mkdir(parents=True, exist_ok=True)
    yaml = {1: "cosyvoice.yaml", 2: "cosyvoice2.yaml", 3: "cosyvoice3.yaml"}[version]
    rate = 22050 if version == 1 else 24000
    (path / yaml).write_text(f"sample_rate: {rate}\nallowed_special: all\n")
    for weight in (
        "llm.pt",
        "flow.pt",
        "hift.pt",
        "campplus.onnx",
        f"speech_tokenizer_v{version}.onnx",
    ):
        (path / weight).write_bytes(b"")
    if speakers is None:
        speakers = BUILTIN_SPEAKERS if version == 1 else []
    if speakers:
        # Embeddings whose sums differ modulo the stand-in's tone classes, so
        # each speaker sounds different and a mix-up shows in the audio.
        spk2info = {
            name: {"embedding": torch.full((1, 192), 0.0123 * (i + 1))}
            for i, name in enumerate(speakers)
        }
        torch.save(spk2info, path / "spk2info.pt")
    return path
