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


#: Eager TensorFlow operations run synchronously on the CPU.
ASYNC_DISPATCH = False


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

    A ``tf.GradientTape`` watches zero "taps" added to the probed outputs and the kernels'
    values, read through a ``keras.StatelessScope`` (so frozen kernels get a gradient too
    and no variable is written). An output carrying ``_keras_logits`` keeps them, moved by
    the tap (see :func:`_logits_shift`).

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


def float64_available() -> bool:
    """TensorFlow always has float64 tensors."""
    return True


# ----------------------------------------------------------------------------------------------
# Multi-worker runs (tf.distribute.MultiWorkerMirroredStrategy).
#
# TensorFlow broadcasts a variable's *initial* value to every worker, but an `assign` made
# after the build (lsuv, reinitialize) stays on the worker that made it. The broadcast below
# is an all-reduce SUM of "the value on the chief, zeros elsewhere", summed as integers
# (the values' bits), so every worker receives the chief's values bit for bit (-0.0 and NaN
# payloads included, which a float sum with zeros would not keep).
# ----------------------------------------------------------------------------------------------

_CHIEF_JOB = "chief"
_WORKER_JOB = "worker"
_EVALUATOR_JOB = "evaluator"
#: The all-reduce sums 32-bit words: a 16- or 8-bit value is widened to one, a 64-bit value
#: is two.
_WORD_BYTES = 4


def _resolver_is_chief(resolver: Any) -> bool:
    """TensorFlow's rule (``multi_worker_util.is_chief``) on a cluster resolver.

    The task of type ``"chief"`` is the chief; a cluster without one has worker 0 as its
    chief; an ``"evaluator"`` is a chief of its own (it is not part of the training
    cluster). A process that is not part of any cluster is the chief.
    """
    task_type = resolver.task_type
    if not task_type:
        return True
    if task_type in (_CHIEF_JOB, _EVALUATOR_JOB):
        return True
    jobs = resolver.cluster_spec().jobs
    return task_type == _WORKER_JOB and int(resolver.task_id) == 0 and _CHIEF_JOB not in jobs


def _training_workers(resolver: Any) -> int:
    """How many processes train together: the chief and the workers of the cluster."""
    cluster = resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in (_CHIEF_JOB, _WORKER_JOB) if job in cluster.jobs)


def is_chief() -> bool:
    """Whether this process is the chief of a multi-worker run (the one that writes files).

    The cluster is the current strategy's (``strategy.cluster_resolver``) inside a
    ``strategy.scope()``; outside one (``fit`` runs its callbacks outside it) it is read from
    ``TF_CONFIG``, as ``tf.distribute.MultiWorkerMirroredStrategy`` reads it by default. The
    chief is the task of type ``"chief"``, or worker 0 when the cluster has no chief, as
    TensorFlow decides it. ``True`` without a multi-worker cluster.

    Returns:
        ``True`` on the chief and in a single-process run, ``False`` on the other workers.
    """
    if tf.distribute.has_strategy():
        resolver = tf.distribute.get_strategy().cluster_resolver
    else:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return resolver is None or _resolver_is_chief(resolver)


def _strategy_of(variables: Sequence[Any]) -> Any:
    """The strategy the variables are mirrored by (built in its scope), else the current one."""
    for variable in variables:
        value = getattr(variable, "value", variable)
        if isinstance(value, tf.distribute.DistributedValues):
            return value.distribute_strategy
    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    return None


def _to_words(value: Any) -> Any:
    """The bits of ``value`` as a flat int32 tensor (32-bit words; narrower values widened)."""
    if value.dtype == tf.bool:
        words = tf.cast(value, tf.int32)
    elif value.dtype.size == 1:
        words = tf.cast(tf.bitcast(value, tf.uint8), tf.int32)
    elif value.dtype.size == 2:
        words = tf.cast(tf.bitcast(value, tf.int16), tf.int32)
    else:
        words = tf.bitcast(value, tf.int32)
    return tf.reshape(words, [-1])


def _from_words(words: Any, dtype: Any, shape: Any) -> Any:
    """The inverse of :func:`_to_words`: a tensor of ``dtype`` and ``shape`` from its words."""
    if dtype == tf.bool:
        return tf.reshape(tf.cast(words, tf.bool), shape)
    if dtype.size == 1:
        return tf.reshape(tf.bitcast(tf.cast(words, tf.uint8), dtype), shape)
    if dtype.size == 2:
        return tf.reshape(tf.bitcast(tf.cast(words, tf.int16), dtype), shape)
    if dtype.size == _WORD_BYTES:
        return tf.reshape(tf.bitcast(words, dtype), shape)
    words_per_value = dtype.size // _WORD_BYTES
    return tf.bitcast(tf.reshape(words, list(shape) + [words_per_value]), dtype)


def broadcast_from_chief(variables: Sequence[Any]) -> None:
    """Give every worker of a multi-worker run the chief's values of ``variables``, bit for bit.

    Under ``tf.distribute.MultiWorkerMirroredStrategy`` an ``assign`` after the build stays
    local. This sums, across the workers, the chief's values and zeros from every other
    worker (one collective all-reduce of their bits as int32 words: exact), and assigns the
    sum everywhere. Every worker must call it, with the same variables in the same order
    (a collective waits for all of them). It runs eagerly, inside or outside
    ``strategy.scope()`` (the strategy is the one the variables were built under, else the
    current one). A no-op without a ``MultiWorkerMirroredStrategy`` (other strategies keep
    one copy of a variable, or one worker's copies in step) or with one worker.

    Args:
        variables: The variables (Keras or TensorFlow) to make identical on every worker.
    """
    variables = list(variables)
    strategy = _strategy_of(variables) if variables else None
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return  # one copy per variable (parameter servers) or one worker: nothing to send
    resolver = strategy.cluster_resolver
    if resolver is None or _training_workers(resolver) < 2:
        return
    values = [tf.convert_to_tensor(getattr(variable, "value", variable)) for variable in variables]
    words = [_to_words(value) for value in values]
    flat = tf.concat(words, axis=0)
    # Only the chief's first local replica contributes its values; every other replica adds 0.
    contributes = [_resolver_is_chief(resolver)]

    def local_part(context: tf.distribute.experimental.ValueContext) -> Any:
        part = flat if contributes[0] else tf.zeros_like(flat)
        contributes[0] = False
        return part

    parts = strategy.experimental_distribute_values_from_function(local_part)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, parts, axis=None)
    received = tf.split(total, [int(word.shape[0]) for word in words])
    for variable, value, word in zip(variables, values, received):
        variable.assign(_from_words(word, value.dtype, value.shape))
