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
from jax.experimental import multihost_utils


#: Eager JAX operations return before their result is computed; arrays are immutable.
ASYNC_DISPATCH = True


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

    ``jax.grad`` of the loss with respect to zero "taps" added to the probed outputs and
    to the kernels' values, read through a ``keras.StatelessScope`` (as
    ``model.stateless_call`` does). The taps' shapes come from one ``jax.eval_shape`` of
    the same pass first (tracing only, no arithmetic).

    Args:
        run: ``run(tap) -> (loss, kept)``: runs the probed forward pass and the loss with
            ``tap`` applied to every recorded floating output (the pass goes on with what
            ``tap`` returns); ``kept`` is a flat list of the tensors to return as values.
        kernels: The kernel variables whose gradients are wanted (trainable or not).

    Returns:
        ``(values, tap_gradients, kernel_gradients)``: ``kept`` as NumPy arrays, and one
        float32 NumPy array per tap (in the order ``tap`` was called) and per kernel.
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


def float64_available() -> bool:
    """Whether JAX can hold float64 values: only with its 64-bit mode (``jax_enable_x64``) on."""
    return bool(jax.config.read("jax_enable_x64"))


# ----------------------------------------------------------------------------------------------
# Multi-process runs (jax.distributed).
# ----------------------------------------------------------------------------------------------

#: ``broadcast_one_to_all`` sums the source's values with zeros from every other process; as
#: unsigned integers of the values' width (a 64-bit value as two 32-bit words, which JAX
#: keeps without x64) that sum is exact, bits included (-0.0, NaN payloads).
_UNSIGNED_BY_WIDTH = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}


def is_chief() -> bool:
    """Whether this is process 0 of a ``jax.distributed`` run (``True`` single-process)."""
    return jax.process_index() == 0


def broadcast_from_chief(variables: Sequence[Any]) -> None:
    """Give every process of a ``jax.distributed`` run process 0's values, bit for bit.

    ``jax.experimental.multihost_utils.broadcast_one_to_all`` of the values' bits (as
    unsigned integers), then an ``assign`` on every process. Every process must call it with
    the same variables in the same order. A no-op when ``jax.process_count() == 1``.

    Args:
        variables: The Keras variables to make identical on every process.
    """
    if jax.process_count() < 2 or not variables:
        return
    values = [np.ascontiguousarray(to_numpy(variable)) for variable in variables]
    bits = [value.view(_UNSIGNED_BY_WIDTH[value.dtype.itemsize]) for value in values]
    received = multihost_utils.broadcast_one_to_all(bits)
    for variable, value, word in zip(variables, values, received):
        restored = np.ascontiguousarray(np.asarray(word)).view(value.dtype).reshape(value.shape)
        variable.assign(restored)
