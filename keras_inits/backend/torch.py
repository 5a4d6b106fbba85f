"""PyTorch: autodiff derivatives, reading variables."""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import torch


def to_numpy(value: Any) -> np.ndarray:
    """A variable or tensor as a NumPy array."""
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(keras.ops.convert_to_numpy(value))


def elementwise_derivative(function: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """``phi'`` by ``torch.autograd.grad`` in float64 (exact for kinked functions).

    ``phi`` is element-wise, so the gradient of ``sum(phi(x))`` is ``phi'(x)`` entry by entry.
    """

    def derivative(x: np.ndarray) -> np.ndarray:
        values = keras.ops.convert_to_tensor(np.asarray(x, dtype=np.float64), dtype="float64")
        inputs = values.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            outputs = function(inputs)
            if not isinstance(outputs, torch.Tensor):
                raise TypeError("the activation did not return a torch tensor")
            if not outputs.requires_grad:
                raise TypeError("the activation is not differentiable by torch")
            (gradient,) = torch.autograd.grad(outputs.sum(), inputs)
        return gradient.detach().cpu().numpy().astype(np.float64)

    return derivative


def fast_dense_draw(law: str, shape, scale: float, work_dtype: str, seed):
    """No fast path on this backend: the generic keras.random draw is used."""
    return None
