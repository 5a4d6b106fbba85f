"""Layer-sequential unit-variance (LSUV) initialization, built on the probe pass.

No formula keeps the variance through depth for GELU, SiLU or Mish (their variance map is
unstable), and none removes the seed-to-seed spread of ReLU. Measuring the network on a
batch and rescaling each kernel, shallow to deep, does both (Mishkin & Matas, 2015).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Mapping

import keras
import numpy as np

from keras_inits._seeds import derive_seed
from keras_inits._probe import (
    NORMALIZATION_LAYER_TYPES,
    LayerProbe,
    LayerSelection,
    StateGuard,
    forward,
    batch_size,
    check_inputs,
    kernel_variables,
    select_layers,
    split_data,
)

__all__ = ["LSUV", "LSUVLayerReport", "lsuv"]

MIN_SAMPLES = 2



@dataclasses.dataclass(frozen=True)
class LSUVLayerReport:
    """What LSUV did to one layer.

    Attributes:
        iterations: How many rescalings were applied (0 when the layer was already in
            tolerance after the orthonormal pre-init).
        std_before: ``pre_std`` measured before the first rescaling (after the optional
            orthonormal pre-init).
        std_after: ``pre_std`` measured after the last rescaling.
        converged: Whether ``|std_after - target_std| < tol * target_std``.
    """

    iterations: int
    std_before: float
    std_after: float
    converged: bool


def lsuv(
    model: keras.Model,
    x: Any,
    *,
    target_std: float = 1.0,
    tol: float = 0.02,
    max_iter: int = 10,
    orthogonal: bool = True,
    layers: LayerSelection = None,
    seed: int | None = None,
) -> dict[str, LSUVLayerReport]:
    """Rescale every kernel, shallow to deep, until its layer's pre-activation std is ``target_std``.

    Mishkin & Matas (2015), "All you need is a good init". With ``orthogonal=True`` each
    kernel is first replaced by an orthonormal matrix (``keras.initializers.Orthogonal``;
    conv kernels flattened to ``(prod(shape[:-1]), shape[-1])``). Then, layer by layer in
    data-flow order, the model runs on ``x`` and the layer's ``pre_std`` is measured — the
    std of its output *before* its own fused activation, the statistic of that name in
    :func:`keras_inits.activation_statistics` (a ``Dense(activation="tanh")`` can never
    reach an output std of 1; its pre-activation can). The kernel is multiplied by
    ``target_std / pre_std``:

        W <- W * target_std / pre_std    until    |pre_std - target_std| < tol * target_std

    or ``max_iter`` rescalings were made. With a zero bias one rescaling is exact; a
    non-zero bias may need a few. Rescaling a layer does not change the layers before it,
    so when the walk ends every processed layer holds its measured ``pre_std``.

    Layers: by default every layer that owns a kernel (Dense, Conv1D/2D/3D, EinsumDense,
    layers inside nested and subclassed models...), found by the same probe as
    :func:`keras_inits.activation_statistics`; normalization layers are skipped. Biases
    are left alone. The probe runs in inference mode and leaves dropout and batch-norm
    state as it found it.

    Examples:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((64,))] +
    ...     [keras.layers.Dense(128, activation="gelu") for _ in range(20)])
    >>> x = np.random.default_rng(0).standard_normal((256, 64)).astype("float32")
    >>> report = lsuv(model, x, seed=0)
    >>> all(entry.converged for entry in report.values())
    True

    Or as a callback that runs once when training starts (put it *before*
    :class:`keras_inits.ActivationStatistics` so that step 0 shows its result)::

        model.fit(x, y, callbacks=[keras_inits.LSUV(x[:256]), ...])

    Args:
        model: A Keras model (built, or buildable by calling it on ``x``).
        x: The batch to measure on (at least 2 samples; a few hundred is typical).
        target_std: The std to reach, > 0.
        tol: Relative tolerance, > 0.
        max_iter: Maximum rescalings per layer, >= 1.
        orthogonal: Replace each kernel by an orthonormal one first, as in the paper.
        layers: Restrict to some layers: names/paths, layer classes or a predicate (as in
            ``activation_statistics``). Layers without a kernel are ignored.
        seed: Seed of the orthonormal pre-init (each kernel gets an independent stream
            derived from ``(seed, layer index)``); the same seed gives the same weights.
            ``None`` draws fresh ones.

    Returns:
        A dict from layer path to :class:`LSUVLayerReport`, shallow to deep.

    Raises:
        ValueError: for bad arguments, a batch of fewer than 2 samples, a model without
            kernels, or non-finite outputs during the iterations. In the last case every
            kernel is first restored to its value before the call (nothing is lost) and
            the message names the layer.

    Warns:
        UserWarning: naming each layer that did not converge within ``max_iter``.

    Reference:
        Mishkin & Matas, "All you need is a good init", ICLR 2016 (arXiv:1511.06422).
    """
    _check_arguments(target_std, tol, max_iter, orthogonal, seed)
    check_inputs(model, x)
    samples = batch_size(x)
    if samples < MIN_SAMPLES:
        raise ValueError(
            f"lsuv needs at least {MIN_SAMPLES} samples to estimate a std. "
            f"Received: x with {samples} sample(s)"
        )
    if not model.built:
        forward(model, x, training=False)
    ordered = _kernel_layers_in_depth_order(model, x, layers)
    original = {path: [variable.numpy() for variable in kernel_variables(layer)] for path, layer in ordered.items()}

    report: dict[str, LSUVLayerReport] = {}
    try:
        if orthogonal:
            _orthonormal_pre_init(ordered, seed)
        for path, layer in ordered.items():
            report[path] = _rescale_layer(model, x, path, layer, target_std, tol, max_iter)
    except _NonFinite as error:
        _restore(ordered, original)
        raise ValueError(
            f"lsuv stopped at layer {error.path!r}: its output is not finite (NaN or inf) "
            f"after {error.iterations} rescaling(s). Every kernel was restored to its value "
            "before the call. Check the inputs and the layers before it."
        ) from None
    except BaseException:
        _restore(ordered, original)
        raise

    failed = [path for path, entry in report.items() if not entry.converged]
    for path in failed:
        entry = report[path]
        warnings.warn(
            f"lsuv: layer {path!r} did not reach pre_std {target_std} within tol {tol} in "
            f"{max_iter} iteration(s): pre_std {entry.std_after:.4g} (was {entry.std_before:.4g}).",
            stacklevel=2,
        )
    return report


class LSUV(keras.callbacks.Callback):
    """Run :func:`lsuv` once, when training starts.

    Examples:

    >>> callbacks = [keras_inits.LSUV(x_train[:256], seed=0),
    ...              keras_inits.ActivationStatistics("logs", x_train[:256])]
    >>> model.fit(x_train, y_train, epochs=3, callbacks=callbacks)  # doctest: +SKIP

    Args:
        data: The probe batch: inputs, or an ``(x, y)`` tuple (``y`` is ignored).
        **lsuv_kwargs: Passed to :func:`lsuv` (``target_std``, ``tol``, ``max_iter``,
            ``orthogonal``, ``layers``, ``seed``). Checked at construction.

    Attributes:
        report: The report of :func:`lsuv`, ``None`` until it ran.
    """

    def __init__(self, data: Any, **lsuv_kwargs: Any) -> None:
        super().__init__()
        known = {"target_std", "tol", "max_iter", "orthogonal", "layers", "seed"}
        unknown = sorted(set(lsuv_kwargs) - known)
        if unknown:
            raise TypeError(f"LSUV got unexpected keyword arguments {unknown}. Accepted: {sorted(known)}")
        _check_arguments(
            lsuv_kwargs.get("target_std", 1.0),
            lsuv_kwargs.get("tol", 0.02),
            lsuv_kwargs.get("max_iter", 10),
            lsuv_kwargs.get("orthogonal", True),
            lsuv_kwargs.get("seed"),
        )
        self.x, _ = split_data(data)
        self.lsuv_kwargs = lsuv_kwargs
        self.report: dict[str, LSUVLayerReport] | None = None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.report is not None:
            return
        self.report = lsuv(self.model, self.x, **self.lsuv_kwargs)


def _check_arguments(target_std: Any, tol: Any, max_iter: Any, orthogonal: Any, seed: Any) -> None:
    for name, value in (("target_std", target_std), ("tol", tol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number. Received: {name}={value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0. Received: {name}={value!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int):
        raise TypeError(f"max_iter must be an int. Received: max_iter={max_iter!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1. Received: max_iter={max_iter!r}")
    if not isinstance(orthogonal, bool):
        raise TypeError(f"orthogonal must be True or False. Received: orthogonal={orthogonal!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None. Received: seed={seed!r}")


def _kernel_layers_in_depth_order(
    model: keras.Model, x: Any, layers: LayerSelection
) -> dict[str, keras.layers.Layer]:
    """The selected layers that own a kernel, in the order the data reaches them."""
    candidates = {
        path: layer
        for path, layer in select_layers(model, layers).items()
        if kernel_variables(layer) and not isinstance(layer, NORMALIZATION_LAYER_TYPES)
    }
    if not candidates:
        raise ValueError(
            "lsuv found no layer with a kernel to rescale. "
            f"Received: model={model.name!r}, layers={layers!r}"
        )
    with StateGuard(model), LayerProbe(candidates, pre_activations=False) as probe:
        forward(model, x, training=False)
    return {path: candidates[path] for path in probe.records}


def _orthonormal_pre_init(ordered: Mapping[str, keras.layers.Layer], seed: int | None) -> None:
    for index, layer in enumerate(ordered.values()):
        for variable in kernel_variables(layer):
            initializer = keras.initializers.Orthogonal(seed=derive_seed(seed, index))
            variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))


class _NonFinite(Exception):
    def __init__(self, path: str, iterations: int):
        super().__init__(path)
        self.path = path
        self.iterations = iterations


def _pre_std(model: keras.Model, x: Any, path: str, layer: keras.layers.Layer) -> float:
    """One probe pass, up to ``layer``: the std of its output before its fused activation."""
    with StateGuard(model), LayerProbe({path: layer}, stop_after=path) as probe:
        forward(model, x, training=False)
    record = probe.records[path]
    tensors = record.pre_activations if record.pre_activations is not None else record.outputs
    values = np.concatenate([np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64).ravel() for t in tensors])
    if not np.all(np.isfinite(values)):
        return math.nan
    return float(values.std())


def _rescale_layer(
    model: keras.Model,
    x: Any,
    path: str,
    layer: keras.layers.Layer,
    target_std: float,
    tol: float,
    max_iter: int,
) -> LSUVLayerReport:
    std = std_before = _pre_std(model, x, path, layer)
    iterations = 0
    while True:
        if not math.isfinite(std):
            raise _NonFinite(path, iterations)
        if abs(std - target_std) < tol * target_std or std == 0.0 or iterations >= max_iter:
            break
        factor = target_std / std
        for variable in kernel_variables(layer):
            variable.assign(variable * keras.ops.cast(factor, variable.dtype))
        iterations += 1
        std = _pre_std(model, x, path, layer)
    converged = abs(std - target_std) < tol * target_std
    return LSUVLayerReport(iterations, std_before, std, converged)


def _restore(ordered: Mapping[str, keras.layers.Layer], original: Mapping[str, list[np.ndarray]]) -> None:
    for path, layer in ordered.items():
        for variable, value in zip(kernel_variables(layer), original[path]):
            variable.assign(value)
