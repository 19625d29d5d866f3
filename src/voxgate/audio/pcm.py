"""Sample conversions shared by every engine and encoder.

Engines hand over float32 mono samples nominally in [-1, 1]. Nothing that is
not finite and in range may reach an encoder: a NaN or an infinity from a
misbehaving model becomes silence as soon as it arrives (a full-scale click
would be worse), and peaks are clipped, never wrapped around, at the encoder,
after resampling and tempo changes (which can overshoot on their own).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Samples = NDArray[np.float32]

_INT16_SCALE = 32768.0


def sanitize(samples: NDArray[np.floating] | NDArray[np.integer]) -> Samples:
    """Finite float32 samples: NaN and infinities become silence (copying only
    if there are any). Range is the encoders' business (see :func:`clip`)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x


def clip(samples: Samples) -> Samples:
    """Samples limited to [-1, 1] for an encoder that takes floats."""
    out: Samples = np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
    return out


def to_s16le(samples: Samples) -> bytes:
    """Float samples to little-endian int16 bytes, rounded and saturated."""
    scaled = np.rint(samples * _INT16_SCALE)
    np.clip(scaled, -32768, 32767, out=scaled)
    data: bytes = scaled.astype("<i2").tobytes()
    return data


def from_s16le(data: bytes | bytearray | memoryview) -> Samples:
    """Little-endian int16 bytes to float32 samples in [-1, 1)."""
    ints = np.frombuffer(data, dtype="<i2")
    out: Samples = (ints.astype(np.float32) / _INT16_SCALE).astype(np.float32, copy=False)
    return out


def apply_gain(samples: Samples, gain: float) -> Samples:
    if gain == 1.0:
        return samples
    out: Samples = np.clip(samples * np.float32(gain), -1.0, 1.0).astype(np.float32, copy=False)
    return out


def silence(n: int) -> Samples:
    return np.zeros(n, dtype=np.float32)
