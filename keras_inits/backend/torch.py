"""torch: interim module of the backend seam (autodiff derivative and gradients to come)."""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """A variable or tensor as a NumPy array."""
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(keras.ops.convert_to_numpy(value))


def elementwise_derivative(function: Callable) -> Callable[[np.ndarray], np.ndarray] | None:
    """Not yet by autodiff on this backend: None (finite differences are used)."""
    return None


def fast_dense_draw(law: str, shape, scale: float, work_dtype: str, seed):
    """No fast path on this backend: the generic keras.random draw is used."""
    return None


def float64_available() -> bool:
    """PyTorch always has float64 tensors."""
    return True
