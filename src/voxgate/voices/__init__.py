"""Voices: names resolved to engine speakers (:mod:`.directory`), and the
voice library of registered voices cloned from prompts (:mod:`.library`)."""

from voxgate.voices.directory import ResolvedVoice, VoiceDirectory

__all__ = ["ResolvedVoice", "VoiceDirectory"]
