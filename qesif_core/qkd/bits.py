"""Validation of bit strings shared by the post-processing steps (Cascade, privacy amplification)."""

from __future__ import annotations

import numpy as np


def as_bits(bits: np.ndarray, name: str) -> np.ndarray:
    """``bits`` as a contiguous 1-D uint8 array of 0/1 values; ``name`` says which input was wrong."""
    array = np.ascontiguousarray(bits, dtype=np.uint8)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D bit array, got shape {array.shape}")
    if array.size and array.max() > 1:
        raise ValueError(f"{name} must hold only 0/1 values")
    return array
