"""JAX: autodiff derivatives, probe gradients, reading variables.

JAX computes in float32 unless x64 is enabled. The derivative below runs under the
``jax.enable_x64(True)`` context, which switches 64-bit types on for that block only and
leaves the user's global ``jax_enable_x64`` setting as it was.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

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

    gradient_of_total = jax.jit(jax.grad(total))

    def derivative(x: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            inputs = jnp.asarray(np.asarray(x, dtype=np.float64), dtype=jnp.float64)
            gradient = gradient_of_total(inputs)
            return np.asarray(gradient, dtype=np.float64)

    return derivative


def fast_dense_draw(law: str, shape, scale: float, work_dtype: str, seed):
    """No fast path on this backend: the generic keras.random draw is used."""
    return None


def without_gradients() -> contextlib.AbstractContextManager:
    """A context for a pass that needs no gradient: eager JAX records none anyway."""
    return contextlib.nullcontext()


def loss_gradients(
    run: Callable[[Callable[[Any], Any]], tuple[Any, list[Any]]], kernels: Sequence[Any]
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """One differentiated probe pass: the values, ``d loss / d tap`` and ``d loss / d kernel``.

    Args:
        run: ``run(tap) -> (loss, kept)``: runs the probed forward pass and the loss with
            ``tap`` applied to every recorded floating output (the pass goes on with what
            ``tap`` returns); ``kept`` is a flat list of the tensors to return as values.
        kernels: The kernel variables whose gradients are wanted (trainable or not).

    Returns:
        ``(values, tap_gradients, kernel_gradients)``: ``kept`` as NumPy arrays, and one
        float32 NumPy array per tap (in the order ``tap`` was called) and per kernel.

    ``jax.grad`` of the loss with respect to zero "taps" added to the probed outputs and
    to the kernels' values, read through a ``keras.StatelessScope`` (as
    ``model.stateless_call`` does). The taps' shapes come from one ``jax.eval_shape`` of
    the same pass first (tracing only, no arithmetic).
    """
    shapes: list[jax.ShapeDtypeStruct] = []

    def record_shape(tensor: Any) -> Any:
        shapes.append(jax.ShapeDtypeStruct(tensor.shape, tensor.dtype))
        return tensor

    def stateless_run(tap: Callable[[Any], Any], kernel_values: list[Any]) -> tuple[Any, list]:
        with keras.StatelessScope(state_mapping=list(zip(kernels, kernel_values))):
            return run(tap)

    kernel_values = [variable.value for variable in kernels]
    jax.eval_shape(lambda values: stateless_run(record_shape, values), kernel_values)
    zeros = [jnp.zeros(shape.shape, shape.dtype) for shape in shapes]

    def loss_and_values(taps: list[Any], values: list[Any]) -> tuple[Any, list]:
        remaining = iter(taps)
        return stateless_run(lambda tensor: tensor + next(remaining), values)

    gradient = jax.grad(loss_and_values, argnums=(0, 1), has_aux=True)
    (tap_gradients, kernel_gradients), kept = gradient(zeros, kernel_values)
    return (
        [to_numpy(value) for value in kept],
        [np.asarray(value, dtype=np.float32) for value in tap_gradients],
        [np.asarray(value, dtype=np.float32) for value in kernel_gradients],
    )
