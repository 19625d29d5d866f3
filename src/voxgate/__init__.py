"""voxgate: a production serving gateway for CosyVoice-class speech models."""

__version__ = "0.1.0"
