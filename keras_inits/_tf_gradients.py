"""Gradient statistics for the probe: the package's one ``tf.GradientTape``.

Everything TensorFlow-specific about gradients lives here, so that another backend needs
one more function of the same shape (e.g. ``jax.vjp``) and nothing else changes.

The tape records one eager forward pass of the model with every monitored layer wrapped by
:class:`keras_inits._probe.LayerProbe`; each recorded output is ``tape.watch``-ed as it is
produced, so ``d loss / d output`` exists even for layers that sit before any variable.
Kernels are watched explicitly, so frozen (non-trainable) kernels get a gradient too.
Nothing is applied: no optimizer is involved and no weight changes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import keras
import numpy as np

from keras_inits._probe import LayerProbe, ProbeRecord, kernel_variables, to_float32


def make_loss_function(
    model: keras.layers.Layer, x: Any, y: Any, loss: Any = None
) -> Callable[[Any], Any]:
    """Return ``y_pred -> scalar loss`` from ``loss=`` or, if ``None``, the compiled loss.

    Raises:
        ValueError: if ``loss`` is ``None`` and the model has no compiled loss.
    """
    if loss is not None:
        loss_function = keras.losses.get(loss)
        if loss_function is None or not callable(loss_function):
            raise ValueError(
                "`loss` must be a loss name, function or keras.losses.Loss. "
                f"Received: loss={loss!r}"
            )

        def explicit_loss(y_pred: Any) -> Any:
            return keras.ops.mean(loss_function(y, y_pred))

        return explicit_loss

    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
        raise ValueError(
            "`gradients=True` needs a loss: compile the model with one or pass `loss=`. "
            "Received: loss=None and a model without a compiled loss"
        )

    def compiled_loss(y_pred: Any) -> Any:
        return model.compute_loss(x=x, y=y, y_pred=y_pred)

    return compiled_loss


def probe_with_gradients(
    model: keras.layers.Layer,
    x: Any,
    y: Any,
    layers: Mapping[str, keras.layers.Layer],
    *,
    loss: Any = None,
    training: bool = False,
    pre_activations: bool = True,
    forward: Callable[[keras.layers.Layer, Any, bool], Any],
) -> dict[str, ProbeRecord]:
    """One probe pass under a ``tf.GradientTape``.

    Args:
        model: The model.
        x: Inputs.
        y: Targets.
        layers: Mapping from path to layer to record.
        loss: Optional loss overriding the compiled one.
        training: Training-mode forward pass.
        pre_activations: Record fused-activation inputs too.
        forward: ``(model, x, training) -> y_pred``, the probe's forward call.

    Returns:
        The probe records, with ``output_gradients`` (one float32 array per floating
        output) and ``kernel_gradients`` (one per kernel variable) filled in.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "`gradients=True` is implemented for the TensorFlow backend only. "
            f"Received: backend={keras.backend.backend()!r}"
        )
    import tensorflow as tf

    loss_function = make_loss_function(model, x, y, loss)
    kernels = {path: kernel_variables(layer) for path, layer in layers.items()}
    watched_kernels = [variable.value for variables in kernels.values() for variable in variables]

    with tf.GradientTape(watch_accessed_variables=False) as tape:
        for kernel in watched_kernels:
            tape.watch(kernel)

        def watch(tensor: Any) -> None:
            if tensor.dtype.is_floating:
                tape.watch(tensor)

        with LayerProbe(layers, pre_activations=pre_activations, watch=watch) as probe:
            y_pred = forward(model, x, training)
        loss_value = loss_function(y_pred)

    records = probe.records
    output_targets: list[Any] = []
    owners: list[str] = []
    for path, record in records.items():
        for tensor in record.outputs:
            if tensor.dtype.is_floating:
                output_targets.append(tensor)
                owners.append(path)
    kernel_targets = [variable.value for path in records for variable in kernels[path]]
    gradients = tape.gradient(
        loss_value,
        output_targets + kernel_targets,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    output_gradients = gradients[: len(output_targets)]
    kernel_gradients = gradients[len(output_targets) :]

    per_layer: dict[str, list[np.ndarray]] = {path: [] for path in records}
    for path, gradient in zip(owners, output_gradients):
        per_layer[path].append(to_float32(gradient))
    position = 0
    for path, record in records.items():
        record.output_gradients = tuple(per_layer[path])
        count = len(kernels[path])
        record.kernel_gradients = tuple(
            to_float32(gradient) for gradient in kernel_gradients[position : position + count]
        )
        position += count
    return records
