"""TensorFlow: autodiff derivatives, probe gradients, the fast path of the dense draws, reading
variables."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

# The same constants as keras_inits._sampling (the fast path must draw the same values).
_ERF_SQRT2 = math.erf(math.sqrt(2.0))
_SQRT2 = math.sqrt(2.0)


def to_numpy(value: Any) -> np.ndarray:
    """A variable or tensor as a NumPy array (``.numpy()`` is quiet on TensorFlow)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(keras.ops.convert_to_numpy(value))


def elementwise_derivative(function: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """``phi'`` by a ``tf.GradientTape`` (exact for kinked and float32 functions)."""

    def derivative(x: np.ndarray) -> np.ndarray:
        inputs = tf.constant(np.asarray(x, dtype=np.float64))
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = function(inputs)
        if not tf.is_tensor(outputs):
            raise TypeError("the activation did not return a TensorFlow tensor")
        gradient = tape.gradient(outputs, inputs)
        if gradient is None:
            raise TypeError("the activation is not differentiable by TensorFlow")
        return np.asarray(gradient.numpy(), dtype=np.float64)

    return derivative


# ----------------------------------------------------------------------------------------------
# Probe gradients.
# ----------------------------------------------------------------------------------------------


def without_gradients() -> contextlib.AbstractContextManager:
    """A context for a pass that needs no gradient: eager TensorFlow records none anyway."""
    return contextlib.nullcontext()


def _logits_shift(probabilities: Any, tap: Any, logits: Any) -> Any:
    """First-order change of the logits that turns ``probabilities`` into ``probabilities + tap``.

    Keras's crossentropy on TensorFlow reads the logits a softmax or sigmoid attached to its
    output (``_keras_logits``), so that output is off the gradient path. With the logits
    moved by this shift (0 in value), the loss still reads the logits, and the tap's
    gradient is ``d loss / d probabilities``: for a softmax ``z + log(p + t) - log(p)`` gives
    ``softmax = (p + t) / sum(p + t)`` (shift ``t / p``); for a sigmoid ``logit(p + t)``
    (shift ``t / p + t / (1 - p)``).
    """
    tiny = np.finfo(probabilities.dtype.as_numpy_dtype).tiny
    shift = tap / tf.maximum(probabilities, tiny)
    if bool(tf.reduce_all(tf.math.sigmoid(logits) == probabilities)):
        shift += tap / tf.maximum(1.0 - probabilities, tiny)
    return shift


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
    """
    taps: list[Any] = []
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        kernel_values = [tf.convert_to_tensor(variable.value) for variable in kernels]
        for value in kernel_values:
            tape.watch(value)

        def tap(tensor: Any) -> Any:
            zero = tf.zeros_like(tensor)
            tape.watch(zero)
            taps.append(zero)
            tapped = tensor + zero
            logits = getattr(tensor, "_keras_logits", None)
            if logits is not None:
                tapped._keras_logits = logits + _logits_shift(tensor, zero, logits)
            return tapped

        with keras.StatelessScope(state_mapping=list(zip(kernels, kernel_values))):
            loss, kept = run(tap)
    gradients = tape.gradient(
        loss, taps + kernel_values, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    as_float32 = [np.asarray(gradient.numpy(), dtype=np.float32) for gradient in gradients]
    values = [to_numpy(tensor) for tensor in kept]
    return values, as_float32[: len(taps)], as_float32[len(taps) :]


# ----------------------------------------------------------------------------------------------
# Fast path for the dense draws.
#
# In eager mode every op (the raw draw, `* (max - min) + min`, erfinv, the scale) writes a
# fresh full-size tensor; in a graph TensorFlow reuses the buffers, which makes the draws
# 1.3x-2x faster. The graphs below run the very ops of the generic path (`keras.random.*` on
# the TensorFlow backend is `tf.random.stateless_*` with the seed cast as Keras casts it), so
# they return the same values. Each is traced once per law and dtype (the shape is a tensor
# argument) and only used eagerly: inside an outer `tf.function` the generic path is already
# a graph, and keeps its static shape.
# ----------------------------------------------------------------------------------------------

_TF_GRAPHS: dict = {}


def _tensorflow_seed(seed):
    """The int32 seed pair Keras's TensorFlow backend passes to `tf.random.stateless_*`."""
    if isinstance(seed, keras.random.SeedGenerator):
        state = tf.convert_to_tensor(seed.next())
    else:
        state = tf.constant([seed, 0], dtype=tf.int64)
    if state.dtype != tf.int32:
        state = tf.cast(tf.math.floormod(state, tf.int32.max - 1), tf.int32)
    return state


def _tensorflow_graph(law: str, work_dtype: str):
    tf_dtype = tf.as_dtype(work_dtype)

    def draw(shape_tensor, seed_pair, scale):
        if law == "normal":
            return tf.random.stateless_normal(
                shape_tensor, seed=seed_pair, mean=0.0, stddev=scale, dtype=tf_dtype
            )
        if law == "uniform":
            return tf.random.stateless_uniform(
                shape_tensor, seed=seed_pair, minval=-scale, maxval=scale, dtype=tf_dtype
            )
        bound = tf.random.stateless_uniform(
            shape_tensor,
            seed=seed_pair,
            minval=tf.constant(-_ERF_SQRT2, tf_dtype),
            maxval=tf.constant(_ERF_SQRT2, tf_dtype),
            dtype=tf_dtype,
        )
        # `scale` arrives as sqrt(2) * stddev, rounded once as in the generic path.
        return tf.math.erfinv(bound) * scale

    signature = [
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([2], tf.int32),
        tf.TensorSpec([], tf_dtype),
    ]
    return tf.function(draw, input_signature=signature, autograph=False)


def fast_dense_draw(law: str, shape, scale: float, work_dtype: str, seed):
    """The generic draw of ``law`` run as one traced graph (eager mode only), else ``None``."""
    if not tf.executing_eagerly():
        return None
    key = (law, work_dtype)
    graph = _TF_GRAPHS.get(key)
    if graph is None:
        graph = _TF_GRAPHS[key] = _tensorflow_graph(law, work_dtype)
    shape_tensor = tf.constant(shape, dtype=tf.int32, shape=[len(shape)])
    if law == "truncated_normal":
        scale = _SQRT2 * scale
    scale_tensor = tf.constant(scale, dtype=work_dtype)
    values = graph(shape_tensor, _tensorflow_seed(seed), scale_tensor)
    return tf.ensure_shape(values, shape)
