"""CosyVoice's official server API, served by voxgate for drop-in migration."""
