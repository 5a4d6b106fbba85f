"""JAX: autodiff derivatives, reading variables.

JAX computes in float32 unless x64 is enabled. The derivative below runs under the
``jax.enable_x64(True)`` context, which switches 64-bit types on for that block only and
leaves the user's global ``jax_enable_x64`` setting as it was.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import keras
import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """A variable or tensor as a NumPy array."""
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(keras.ops.convert_to_numpy(value))


def elementwise_derivative(function: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """``phi'`` by ``jax.grad`` in float64 (exact for kinked functions).

    ``phi`` is element-wise, so the gradient of ``sum(phi(x))`` is ``phi'(x)`` entry by entry.
    The function must keep float64 for a float64 result: Keras ops that cast to float32 on
    JAX (``keras.ops.tanh``) give a float32-accurate derivative.
    """

    def total(inputs: Any) -> Any:
        outputs = function(inputs)
        if not isinstance(outputs, jax.Array):
            raise TypeError("the activation did not return a JAX array")
        return jnp.sum(outputs)

    gradient_of_total = jax.grad(total)

    def derivative(x: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            inputs = jnp.asarray(np.asarray(x, dtype=np.float64), dtype=jnp.float64)
            gradient = gradient_of_total(inputs)
            return np.asarray(gradient, dtype=np.float64)

    return derivative


def fast_dense_draw(law: str, shape, scale: float, work_dtype: str, seed):
    """No fast path on this backend: the generic keras.random draw is used."""
    return None
