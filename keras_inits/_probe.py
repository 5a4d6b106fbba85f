"""The probe pass: run a model once and capture what chosen layers produce.

This is the one mechanism behind :func:`keras_inits.activation_statistics`, the
:class:`keras_inits.ActivationStatistics` callback and the data-dependent LSUV initializer.
It answers "run the model on ``x`` and give me each monitored layer's output and
pre-activation", for layers of Sequential, Functional, nested and subclassed models alike.

How it works. ``layer.output`` only exists for layers of Functional graphs, so instead of a
feature-extractor model the probe wraps ``layer.call`` *on the instance* for the duration of
one eager forward pass (``object.__setattr__(layer, "call", wrapper)``, undone with
``object.__delattr__``, which keeps Keras's attribute tracker out of it). ``Layer.__call__``
looks ``self.call`` up on the instance, so the wrapper sees every call, however deep. For a
layer with a fused activation (``Dense(..., activation="tanh")``, ``Conv*``, ``EinsumDense``,
``Activation``) the probe also swaps ``layer.activation`` for a wrapper that records its
input, the pre-activation. Everything is restored in ``finally``.

Conventions (shared by every user of the probe):

* **Paths** are relative to the model passed in: ``dense_3`` for its own layers,
  ``inner/dense_3`` for a layer of a nested model (or of any custom layer) named ``inner``.
  A layer reachable by several paths (a shared layer) gets the first one found.
* **Which call is recorded**: the *first* call of a layer during the pass. A layer called
  twice (shared weights, siamese towers) is measured on its first call only; later calls run
  normally and are not recorded. ``ProbeRecord.call_count`` says how often it ran.
* **Several outputs**: every tensor in the output structure is recorded (flattened in
  ``keras.tree`` order). Statistics treat them as one vector per sample (concatenated).
* **Order**: records come in completion order of their first call, which is data-flow order
  (shallow to deep) for any model, subclassed ones included.
* **Recurrent layers** (``keras.layers.RNN`` and its subclasses, ``Bidirectional``) are
  leaves: the layer is monitored as a whole and its cell is not descended into (a cell runs
  once per time step).
* **State**: the pass leaves the model as it found it. Non-trainable variables (batch-norm
  moving statistics, seed-generator states, RNN states) and metric variables are snapshotted
  and any that changed are restored; no optimizer is involved. Weights are never written.

Examples:

>>> import numpy as np, keras
>>> from keras_inits._probe import LayerProbe, run_probe, select_layers
>>> model = keras.Sequential([keras.Input((8,)),
...                           keras.layers.Dense(4, activation="tanh", name="hidden")])
>>> records = run_probe(model, np.ones((2, 8), "float32"))
>>> list(records), records["hidden"].outputs[0].shape
(['hidden'], (2, 4))

A lower-level use, e.g. inside an LSUV loop that calls the model itself:

>>> layers = select_layers(model)
>>> with LayerProbe(layers) as probe:
...     _ = model(np.ones((2, 8), "float32"), training=False)
>>> probe.records["hidden"].pre_activations[0].shape
TensorShape([2, 4])
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import re
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import keras
import numpy as np

from keras_inits import backend
from keras_inits.model import graph

#: What ``layers=`` accepts: a path, a layer class, a predicate, or a sequence of paths/classes.
LayerSelection = Union[
    None, str, type, Callable[[keras.layers.Layer], bool], Sequence[Union[str, type]]
]

#: Standalone activation layers, monitored by default next to every layer that owns a kernel.
ACTIVATION_LAYER_TYPES: tuple[type, ...] = graph.ACTIVATION_LAYER_TYPES

#: Layers that re-standardize their input: LSUV leaves them alone, and what follows them
#: sees a unit-variance linear input whatever came before (``reinitialize``).
NORMALIZATION_LAYER_TYPES: tuple[type, ...] = graph.NORMALIZATION_LAYER_TYPES

#: Layers treated as leaves: monitored as a whole, never descended into.
LEAF_LAYER_TYPES: tuple[type, ...] = graph.LEAF_LAYER_TYPES


# --------------------------------------------------------------------------------------
# Finding layers (the walk itself is keras_inits.model.graph's)
# --------------------------------------------------------------------------------------


def _children(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Direct sub-layers of ``layer`` in Keras's order (see :func:`keras_inits.model.graph.children`)."""
    return graph.children(layer)


def walk_layers(model: keras.layers.Layer) -> dict[str, keras.layers.Layer]:
    """Every layer inside ``model`` (not ``model`` itself), keyed by its path.

    Depth first, in Keras's own order of each container; recurrent layers are leaves
    (:func:`keras_inits.model.graph.walk`).

    Args:
        model: A Keras model (or any layer with sub-layers).

    Returns:
        A dict from path (``"dense"``, ``"inner/dense_3"``) to layer.

    Examples:

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")],
    ...                          name="inner")
    >>> outer = keras.Sequential([keras.Input((3,)), inner])
    >>> list(walk_layers(outer))
    ['inner', 'inner/d']
    """
    return graph.walk(model)


def _own_variables(layer: keras.layers.Layer) -> list[Any]:
    """Variables created by ``layer`` itself, not by its sub-layers."""
    return graph.own_variables(layer)


def kernel_variables(layer: keras.layers.Layer) -> list[Any]:
    """The kernel variables of a layer: weights whose graph role multiplies the input.

    Kernels, recurrent, depthwise and pointwise kernels and attention projections
    (:data:`keras_inits.model.graph.KERNEL_ROLES`; embedding tables are not kernels). A
    layer's own variables only, except for recurrent leaves, whose cells own them. Empty
    for layers without a kernel.
    """
    return [weight.variable for weight in graph.layer_weights(layer) if weight.is_kernel]


def is_default_monitored(layer: keras.layers.Layer) -> bool:
    """True for standalone activation layers and layers that own a kernel or an embedding table."""
    if isinstance(layer, ACTIVATION_LAYER_TYPES):
        return True
    if isinstance(layer, keras.Model):
        return False
    return any(weight.role in graph.DRAWN_ROLES for weight in graph.layer_weights(layer))


def _format_available(paths: Iterable[str]) -> str:
    return ", ".join(repr(path) for path in paths) or "(none)"


def select_layers(
    model: keras.layers.Layer, layers: LayerSelection = None
) -> dict[str, keras.layers.Layer]:
    """Resolve a ``layers=`` argument to the layers to monitor, keyed by path.

    Args:
        model: The model to look into. It must be built (its sub-layers must own their
            variables) for the default selection to find layers with a kernel.
        layers: ``None`` for the default (every layer that owns a kernel or an embedding
            table, plus standalone activation layers); a path such as ``"inner/dense_3"``
            (a bare layer name is accepted too when it is unique); a layer class; a
            predicate ``layer -> bool``; or a sequence of paths and classes.

    Returns:
        A dict from path to layer, in the order of :func:`walk_layers`.

    Raises:
        ValueError: for an unknown name (the message lists the available paths), an
            argument of the wrong type, or a selection that matches no layer.
        TypeError: if ``layers`` is not one of the accepted types.

    Examples:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"),
    ...                           keras.layers.Dropout(0.5, name="drop"),
    ...                           keras.layers.Dense(1, name="b")])
    >>> list(select_layers(model))
    ['a', 'b']
    >>> list(select_layers(model, ["b", keras.layers.Dropout]))
    ['drop', 'b']
    """
    check_selection(layers)
    every = walk_layers(model)
    if layers is None:
        chosen = {path: layer for path, layer in every.items() if is_default_monitored(layer)}
        if not chosen:
            raise ValueError(
                "The model has no layer to monitor: no layer owns a kernel or an embedding "
                "table and there is no "
                "standalone activation layer. Pass `layers=` to choose layers explicitly. "
                f"Received: model={model.name!r} with layers [{_format_available(every)}]"
            )
        return chosen

    if isinstance(layers, str) or isinstance(layers, type):
        items: list[Any] = [layers]
    elif callable(layers):
        chosen = {path: layer for path, layer in every.items() if layers(layer)}
        if not chosen:
            raise ValueError(
                "The predicate passed as `layers=` matched no layer. Available layers: "
                f"[{_format_available(every)}]. Received: layers={layers!r}"
            )
        return chosen
    elif isinstance(layers, Sequence):
        items = list(layers)
    else:
        raise TypeError(
            "`layers` must be None, a layer path, a layer class, a predicate, or a sequence "
            f"of paths and classes. Received: layers={layers!r}"
        )
    if not items:
        raise ValueError(f"`layers` selects no layer. Received: layers={layers!r}")

    wanted: set[int] = set()
    for item in items:
        if isinstance(item, str):
            wanted.add(id(_layer_by_name(every, item, layers)))
        elif isinstance(item, type) and issubclass(item, keras.layers.Layer):
            matches = [layer for layer in every.values() if isinstance(layer, item)]
            if not matches:
                raise ValueError(
                    f"No layer of class {item.__name__} in the model. Available layers: "
                    f"[{_format_available(every)}]. Received: layers={layers!r}"
                )
            wanted.update(id(layer) for layer in matches)
        else:
            raise TypeError(
                "Items of `layers` must be layer paths (str) or layer classes. "
                f"Received: layers={layers!r}"
            )
    return {path: layer for path, layer in every.items() if id(layer) in wanted}


def check_selection(layers: Any) -> None:
    """Checks the type of a ``layers=`` argument (which names exist needs the model).

    Raises:
        TypeError: If ``layers`` is not None, a path, a layer class, a predicate or a
            sequence of paths and layer classes.
        ValueError: If it is an empty sequence.
    """
    if layers is None or isinstance(layers, str) or _is_layer_class(layers):
        return
    if isinstance(layers, type) or isinstance(layers, (bool, np.bool_)):
        raise TypeError(
            "`layers` must be None, a layer path, a layer class, a predicate, or a sequence "
            f"of paths and classes. Received: layers={layers!r}"
        )
    if callable(layers):
        return
    if not isinstance(layers, Sequence):
        raise TypeError(
            "`layers` must be None, a layer path, a layer class, a predicate, or a sequence "
            f"of paths and classes. Received: layers={layers!r}"
        )
    if not layers:
        raise ValueError(f"`layers` selects no layer. Received: layers={layers!r}")
    for item in layers:
        if not isinstance(item, str) and not _is_layer_class(item):
            raise TypeError(
                "Items of `layers` must be layer paths (str) or layer classes. "
                f"Received: layers={layers!r}"
            )


def _is_layer_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, keras.layers.Layer)


def _layer_by_name(
    every: Mapping[str, keras.layers.Layer], name: str, argument: Any
) -> keras.layers.Layer:
    if name in every:
        return every[name]
    by_name = [layer for layer in every.values() if layer.name == name]
    if len(by_name) == 1:
        return by_name[0]
    raise ValueError(
        f"Unknown layer {name!r}. Available layers: [{_format_available(every)}]. "
        f"Received: layers={argument!r}"
    )


# --------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ProbeRecord:
    """What one layer produced on its first call during a probe pass.

    Attributes:
        path: The layer's path relative to the probed model.
        layer: The layer itself.
        outputs: Every tensor of the layer's output structure, in ``keras.tree.flatten``
            order. Backend tensors inside a :class:`LayerProbe`; float32 NumPy arrays after
            :func:`run_probe`.
        pre_activations: The input(s) of the layer's fused activation on that call, or
            ``None`` when the layer has no (non-linear) ``activation`` attribute.
        call_count: How many times the layer ran during the pass.
        output_gradients: ``d loss / d output`` per output (float32 NumPy), when gradients
            were asked for.
        kernel_gradients: ``d loss / d kernel`` per kernel variable (float32 NumPy), when
            gradients were asked for; an empty tuple for a layer without a kernel.
    """

    path: str
    layer: keras.layers.Layer
    outputs: tuple[Any, ...] = ()
    pre_activations: tuple[Any, ...] | None = None
    call_count: int = 0
    output_gradients: tuple[np.ndarray, ...] | None = None
    kernel_gradients: tuple[np.ndarray, ...] | None = None


def is_floating(tensor: Any) -> bool:
    """Whether a backend tensor (or array) holds floating-point values."""
    dtype = getattr(tensor, "dtype", None)
    if dtype is None:
        return False
    return keras.backend.is_float_dtype(keras.backend.standardize_dtype(dtype))


def _is_linear(function: Any) -> bool:
    return function is None or function is keras.activations.linear


def has_swappable_activation(layer: keras.layers.Layer) -> bool:
    """True when the layer applies a non-linear ``activation`` attribute the probe can swap."""
    if isinstance(layer, LEAF_LAYER_TYPES):
        return False
    function = vars(layer).get("activation")
    return callable(function) and not _is_linear(function)


class ProbeStopped(BaseException):
    """Ends a forward pass early, once the layer named by ``stop_after`` has run.

    A ``BaseException`` so that no ``except Exception`` on the way (Keras's traceback
    filter, :func:`forward`) turns it into an error; :class:`LayerProbe` swallows it.
    """


class LayerProbe:
    """Context manager that records the first call of each given layer.

    On entry, wraps ``layer.call`` (and ``layer.activation`` where the layer has a fused,
    non-linear activation) on every given layer instance; on exit, puts the originals back,
    also when the forward pass raised. Run the model *eagerly* inside the block.

    Args:
        layers: Mapping from path to layer, e.g. from :func:`select_layers`.
        pre_activations: Whether to record the inputs of fused activations.
        tap: Optional callable applied to every recorded floating output tensor as it is
            produced; the forward pass goes on with the tensor it returns (of the same value).
            The backends' gradient passes add a zero "tap" there, whose gradient is
            ``d loss / d output`` (see :func:`gradient_pass`).
        on_record: Optional callable given each :class:`ProbeRecord` as soon as its layer's
            first call has returned (outputs and pre-activations as backend tensors). It
            may reduce the record and drop its tensors: the statistics are computed this
            way while the pass goes on, so that only one layer's output is held at a time.
        stop_after: Path of a layer after whose first call the forward pass is abandoned
            (the rest of the model does not run; the block ends normally). LSUV measures
            one layer at a time this way, at half the cost of full passes on average.

    Attributes:
        records: Dict from path to :class:`ProbeRecord`, in completion order of each
            layer's first call. Layers that never ran are absent.
        tapped_paths: The path of the layer of each tensor given to ``tap``, in order.

    Examples:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    >>> with LayerProbe({"d": model.layers[0]}) as probe:
    ...     _ = model(np.ones((4, 3), "float32"))
    >>> probe.records["d"].outputs[0].shape
    TensorShape([4, 2])
    """

    def __init__(
        self,
        layers: Mapping[str, keras.layers.Layer],
        *,
        pre_activations: bool = True,
        tap: Callable[[Any], Any] | None = None,
        on_record: Callable[[ProbeRecord], None] | None = None,
        stop_after: str | None = None,
    ) -> None:
        self._layers = dict(layers)
        if stop_after is not None and stop_after not in self._layers:
            raise ValueError(
                f"`stop_after` must be one of the probed paths {list(self._layers)}. "
                f"Received: stop_after={stop_after!r}"
            )
        self._pre_activations = pre_activations
        self._tap = tap
        self._on_record = on_record
        self._stop_after = stop_after
        self._undo: list[Callable[[], None]] = []
        self.records: dict[str, ProbeRecord] = {}
        self.tapped_paths: list[str] = []

    def __enter__(self) -> "LayerProbe":
        self.records = {}
        self.tapped_paths = []
        try:
            for path, layer in self._layers.items():
                self._install(path, layer)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> bool:
        self._restore()
        return exc_type is not None and issubclass(exc_type, ProbeStopped)

    # -- installation --------------------------------------------------------------

    def _install(self, path: str, layer: keras.layers.Layer) -> None:
        record = ProbeRecord(path=path, layer=layer)
        state = {"in_first_call": False}
        original_call = layer.call
        had_own_call = "call" in vars(layer)

        def recording_call(*args: Any, **kwargs: Any) -> Any:
            record.call_count += 1
            first = record.call_count == 1
            if first:
                state["in_first_call"] = True
            try:
                outputs = original_call(*args, **kwargs)
            finally:
                if first:
                    state["in_first_call"] = False
            if first:
                if self._tap is not None:
                    outputs = keras.tree.map_structure(
                        lambda tensor: self._tap_floating(path, tensor), outputs
                    )
                record.outputs = tuple(t for t in keras.tree.flatten(outputs) if t is not None)
                self.records[path] = record
                if self._on_record is not None:
                    self._on_record(record)
                if path == self._stop_after:
                    raise ProbeStopped(path)
            return outputs

        # Keep the wrapper looking like the original to code that inspects signatures.
        try:
            signature = inspect.signature(original_call)
            recording_call.__signature__ = signature  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            pass
        object.__setattr__(layer, "call", recording_call)

        def undo_call() -> None:
            if had_own_call:
                object.__setattr__(layer, "call", original_call)
            else:
                object.__delattr__(layer, "call")

        self._undo.append(undo_call)

        if self._pre_activations and has_swappable_activation(layer):
            original_activation = layer.activation

            # Looks like the original (its name gives the bounds the statistics read).
            @functools.wraps(original_activation)
            def recording_activation(inputs: Any, *args: Any, **kwargs: Any) -> Any:
                if state["in_first_call"] and record.pre_activations is None:
                    record.pre_activations = tuple(keras.tree.flatten(inputs))
                return original_activation(inputs, *args, **kwargs)

            object.__setattr__(layer, "activation", recording_activation)
            self._undo.append(
                lambda: object.__setattr__(layer, "activation", original_activation)
            )

    def _tap_floating(self, path: str, tensor: Any) -> Any:
        if tensor is None or not is_floating(tensor):
            return tensor
        self.tapped_paths.append(path)
        return self._tap(tensor)

    def _restore(self) -> None:
        while self._undo:
            undo = self._undo.pop()
            undo()


# --------------------------------------------------------------------------------------
# Leaving the model as it was found
# --------------------------------------------------------------------------------------


class StateGuard:
    """Snapshot a model's mutable non-weight state and restore what changed.

    Covers non-trainable variables (batch-norm moving statistics, RNN states,
    seed-generator states) and metric variables (a compiled loss may update its trackers).
    Variables that did not change are not written back.
    """

    def __init__(self, model: keras.layers.Layer) -> None:
        self._model = model
        self._saved: list[tuple[Any, np.ndarray]] = []

    def __enter__(self) -> "StateGuard":
        variables = list(self._model.non_trainable_variables)
        variables += list(getattr(self._model, "metrics_variables", []))
        seen: set[int] = set()
        self._saved = []
        for variable in variables:
            if id(variable) in seen:
                continue
            seen.add(id(variable))
            self._saved.append((variable, np.array(backend.current().to_numpy(variable), copy=True)))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for variable, value in self._saved:
            current = backend.current().to_numpy(variable)
            if current.shape != value.shape or not np.array_equal(current, value, equal_nan=True):
                variable.assign(value)
        self._saved = []


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _shape_of(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    return tuple(None if dim is None else int(dim) for dim in shape)


def check_inputs(model: keras.layers.Layer | None, x: Any, *, argument: str = "x") -> None:
    """Raise a clear ``ValueError`` when ``x`` is empty or does not fit the model's inputs.

    Shapes are checked against ``model.inputs`` where the model has them (Sequential and
    Functional models); subclassed models are checked by running them. With
    ``model=None`` only the batch itself is checked (arrays, at least one sample).
    """
    flat = keras.tree.flatten(x)
    if not flat:
        raise ValueError(f"`{argument}` holds no arrays. Received: {argument}={x!r}")
    for value in flat:
        shape = _shape_of(value)
        if shape is None or len(shape) == 0:
            raise ValueError(
                f"`{argument}` must be an array (or a structure of arrays) with a batch "
                f"dimension. Received: {argument} of type {type(value).__name__}"
            )
        if shape[0] == 0:
            raise ValueError(
                f"`{argument}` is an empty batch (0 samples). "
                f"Received: {argument} with shape {shape}"
            )
    if model is None:
        return
    try:
        inputs = list(model.inputs) if isinstance(model, keras.Model) else []
    except (AttributeError, ValueError):
        inputs = []
    if not inputs or isinstance(x, dict) or len(inputs) != len(flat):
        return
    for expected, value in zip(inputs, flat):
        expected_shape = tuple(expected.shape)
        shape = _shape_of(value)
        # The batch axis is free: Keras may build an unbuilt model with the first training
        # batch's size (jax, torch), and any probe batch size must still fit.
        fits = len(shape) == len(expected_shape) and all(
            want is None or want == got for want, got in zip(expected_shape[1:], shape[1:])
        )
        if not fits:
            raise ValueError(
                f"`{argument}` does not fit the model's input: expected shape "
                f"{expected_shape} (None = any size). Received: {argument} with shape {shape}"
            )


def check_targets(x: Any, y: Any) -> None:
    """Raise a clear ``ValueError`` unless ``y`` holds arrays, one target per sample of ``x``."""
    check_inputs(None, y, argument="y")
    samples = batch_size(x)
    for value in keras.tree.flatten(y):
        shape = _shape_of(value)
        if shape[0] != samples:
            raise ValueError(
                f"`y` must hold one target per sample of `x` ({samples} samples). "
                f"Received: y with shape {shape}"
            )


def split_data(data: Any) -> tuple[Any, Any]:
    """``(x, y)`` from a probe batch given as ``x`` or as a tuple ``(x, y)``.

    A 1-tuple is ``(x,)``; any other tuple length is an error (several inputs go in a list
    or dict). Shared by the ``ActivationStatistics`` and ``LSUV`` callbacks.
    """
    if isinstance(data, tuple):
        if len(data) == 2:
            return data[0], data[1]
        if len(data) == 1:
            return data[0], None
        raise ValueError(
            "`data` must be inputs, or a tuple (x, y). For a model with several inputs pass "
            f"them as a list or dict. Received: data, a tuple of {len(data)} elements"
        )
    return data, None


def batch_size(x: Any) -> int:
    """Number of samples in ``x`` (the leading dimension of its first array)."""
    return int(_shape_of(keras.tree.flatten(x)[0])[0])


def to_float32(value: Any, *, view: bool = False) -> np.ndarray:
    """A backend tensor or array as a float32 NumPy array.

    ``view=True`` for an immutable tensor (JAX's, see ``ASYNC_DISPATCH``): NumPy's read-only
    view of its buffer where the backend gives one (a CPU array), not a copy.
    """
    if not isinstance(value, np.ndarray):
        value = np.asarray(value) if view else keras.ops.convert_to_numpy(value)
    return np.asarray(value, dtype=np.float32)


# --------------------------------------------------------------------------------------
# One call that does it all
# --------------------------------------------------------------------------------------


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_MAX_REASON_LENGTH = 400


def _error_summary(error: Exception) -> str:
    """The informative part of an error message, without Keras's call-context wrapper."""
    lines = []
    for line in _ANSI_ESCAPE.sub("", str(error)).splitlines():
        line = line.strip()
        if not line or line.startswith(("Exception encountered when calling",
                                        "Arguments received by", "\u2022")):
            continue
        lines.append(line)
    summary = " ".join(lines) or type(error).__name__
    if len(summary) > _MAX_REASON_LENGTH:
        summary = summary[: _MAX_REASON_LENGTH - 3] + "..."
    return summary


def forward(model: keras.layers.Layer, x: Any, training: bool) -> Any:
    """Run ``model`` eagerly; turn a deep backend error into a short ``ValueError``."""
    try:
        return model(x, training=training)
    except Exception as error:  # noqa: BLE001 - re-raised with a readable message
        shapes = [_shape_of(value) for value in keras.tree.flatten(x)]
        summary = _error_summary(error)
        raise ValueError(
            f"The model could not run on the probe batch: {type(error).__name__}: {summary}. "
            f"Received: x with shape(s) {shapes if len(shapes) > 1 else shapes[0]}"
        ) from None


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------


def make_loss_function(
    model: keras.layers.Layer, x: Any, y: Any, loss: Any = None
) -> Callable[[Any], Any]:
    """Return ``y_pred -> scalar loss`` from ``loss=`` or, if ``None``, the compiled loss.

    Raises:
        ValueError: if ``loss`` is not a loss, or is ``None`` and the model has no compiled
            loss.
    """
    if loss is not None:
        try:
            loss_function = keras.losses.get(loss)
        except (ValueError, TypeError):
            loss_function = None
        if loss_function is None or not callable(loss_function):
            raise ValueError(
                "`loss` must be a loss name, function or keras.losses.Loss. "
                f"Received: loss={loss!r}"
            )

        def explicit_loss(y_pred: Any) -> Any:
            return keras.ops.mean(_compare(loss_function, y, y_pred))

        return explicit_loss

    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
        raise ValueError(
            "`gradients=True` needs a loss: compile the model with one or pass `loss=`. "
            "Received: loss=None and a model without a compiled loss"
        )

    def compiled_loss(y_pred: Any) -> Any:
        return _compare(lambda y, y_pred: model.compute_loss(x=x, y=y, y_pred=y_pred), y, y_pred)

    return compiled_loss


def _compare(loss_function: Callable[[Any, Any], Any], y: Any, y_pred: Any) -> Any:
    """``loss_function(y, y_pred)``; a failure (targets that do not fit) as a short ValueError."""
    try:
        return loss_function(y, y_pred)
    except Exception as error:  # noqa: BLE001 - re-raised with a readable message
        shapes = [_shape_of(value) for value in keras.tree.flatten(y)]
        predicted = [_shape_of(value) for value in keras.tree.flatten(y_pred)]
        raise ValueError(
            f"The loss could not compare `y` with the model's output (shape(s) {predicted}): "
            f"{type(error).__name__}: {_error_summary(error)}. "
            f"Received: y with shape(s) {shapes if len(shapes) > 1 else shapes[0]}"
        ) from None


def gradient_pass(
    model: keras.layers.Layer,
    x: Any,
    y: Any,
    layers: Mapping[str, keras.layers.Layer],
    *,
    loss: Any = None,
    training: bool = False,
    pre_activations: bool = True,
) -> dict[str, ProbeRecord]:
    """One probe pass that also gives ``d loss / d output`` and ``d loss / d kernel``.

    The backend-neutral half of the gradients: the loss (``loss=`` or the compiled one),
    the probe and the bookkeeping are here; the differentiation is the active backend's
    ``loss_gradients(run, kernels)`` (TensorFlow ``GradientTape``, JAX ``jax.grad``, torch
    ``torch.autograd.grad``). ``run(tap)`` runs the probed forward pass and the loss with
    ``tap`` applied to every recorded floating output, and returns the loss and every
    recorded tensor; the backend adds a zero tap to each output (so layers that sit before
    any variable get ``d loss / d output`` too), reads the kernels through a
    ``keras.StatelessScope`` (so frozen kernels get a gradient and no variable is written)
    and returns the tensors' values with the gradients of the taps and the kernels. Nothing
    is applied: no optimizer is involved and no weight changes.

    Args:
        model: The model.
        x: Inputs.
        y: Targets.
        layers: Mapping from path to layer to record.
        loss: Optional loss overriding the compiled one.
        training: Training-mode forward pass.
        pre_activations: Record fused-activation inputs too.

    Returns:
        The probe records (NumPy values), with ``output_gradients`` (one float32 array per
        floating output) and ``kernel_gradients`` (one per kernel variable) filled in.
    """
    loss_function = make_loss_function(model, x, y, loss)
    kernels = {path: kernel_variables(layer) for path, layer in layers.items()}
    # A variable shared by two layers is differentiated once and reported for both.
    unique: dict[int, Any] = {}
    for variables in kernels.values():
        for variable in variables:
            unique.setdefault(id(variable), variable)
    flat_kernels = list(unique.values())
    last: dict[str, Any] = {}

    def run(tap: Callable[[Any], Any]) -> tuple[Any, list[Any]]:
        with LayerProbe(layers, pre_activations=pre_activations, tap=tap) as probe:
            y_pred = forward(model, x, training)
        loss_value = loss_function(y_pred)
        kept: list[Any] = []
        for record in probe.records.values():
            kept.extend(record.outputs)
            kept.extend(record.pre_activations or ())
        last["records"] = probe.records
        last["owners"] = probe.tapped_paths
        return loss_value, kept

    kept, output_gradients, kernel_gradients = backend.current().loss_gradients(
        run, flat_kernels
    )
    records: dict[str, ProbeRecord] = last["records"]
    values = iter(kept)
    for record in records.values():
        record.outputs = tuple(next(values) for _ in record.outputs)
        if record.pre_activations is not None:
            record.pre_activations = tuple(next(values) for _ in record.pre_activations)
    per_layer: dict[str, list[np.ndarray]] = {path: [] for path in records}
    for path, gradient in zip(last["owners"], output_gradients):
        per_layer[path].append(gradient)
    by_variable = dict(zip(unique, kernel_gradients))
    for path, record in records.items():
        record.output_gradients = tuple(per_layer[path])
        record.kernel_gradients = tuple(by_variable[id(v)] for v in kernels[path])
    return records


#: How many monitored layers behind the pass a record is reduced on an ``ASYNC_DISPATCH``
#: backend (JAX): the outputs of this many layers are held unreduced. Two, not one: the
#: in-fit write of the seed MLP took 0.947 of the time (paired median over 200
#: interleaved passes, 11.35 against 12.05 ms), for a third layer's output held.
_ASYNC_LAG = 2


def run_probe(
    model: keras.layers.Layer,
    x: Any,
    layers: LayerSelection | Mapping[str, keras.layers.Layer] = None,
    *,
    training: bool = False,
    pre_activations: bool = True,
    y: Any = None,
    gradients: bool = False,
    loss: Any = None,
    on_record: Callable[[ProbeRecord], None] | None = None,
) -> dict[str, ProbeRecord]:
    """Run ``model`` once on ``x`` and return what each monitored layer produced.

    The reusable entry point of the probe (used by ``activation_statistics``, the
    ``ActivationStatistics`` callback and LSUV). Checks ``x``, builds an unbuilt model with
    one plain call, runs one eager forward pass with every monitored layer wrapped (see the
    module docstring for the conventions), restores the model, and converts everything to
    float32 NumPy.

    Args:
        model: A Keras model: Sequential, Functional, subclassed, nested.
        x: The probe batch: an array, or a list/dict of arrays for multi-input models.
        layers: A ``layers=`` selection (see :func:`select_layers`) or an already resolved
            mapping from path to layer.
        training: Run in training mode (dropout active, batch-norm in batch mode). The
            default is inference mode; either way the model's state is restored after.
        pre_activations: Record the inputs of fused activations.
        y: Targets, needed with ``gradients=True``.
        gradients: Also compute ``d loss / d output`` per layer and ``d loss / d kernel``
            (see :func:`gradient_pass`). The outputs are then all kept until the backward
            pass has run.
        loss: A loss (name, function or ``keras.losses.Loss``) to use instead of the
            model's compiled loss for gradients.
        on_record: Optional callable given each record (float32 NumPy values), in
            completion order: without gradients, as soon as its layer has run, except on
            JAX (``ASYNC_DISPATCH``), where it comes once the next two monitored layers
            (``_ASYNC_LAG``) have been called or the pass has ended, so that JAX computes
            them while this one is reduced, with read-only views of JAX's buffers as its
            arrays; with ``gradients=True``, after the backward pass. It may drop the
            record's arrays (``record.outputs = ()``) once it has reduced them, so that a
            pass without gradients holds one layer's float32 outputs at a time (three on
            JAX).

    Returns:
        A dict from path to :class:`ProbeRecord`, shallow to deep. Selected layers that did
        not run during the pass are absent.

    Raises:
        ValueError: bad ``x`` (empty, wrong shape), unknown layer names, nothing to
            monitor, or ``gradients=True`` without ``y`` or a loss.

    Examples:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    >>> run_probe(model, np.ones((4, 3), "float32"))["d"].outputs[0].dtype
    dtype('float32')
    """
    check_inputs(model, x)
    if gradients and y is None:
        raise ValueError("`gradients=True` needs targets `y`. Received: y=None")
    if gradients:
        check_targets(x, y)
    if not model.built:
        forward(model, x, training=False)
    if isinstance(layers, Mapping):
        selected = dict(layers)
    else:
        selected = select_layers(model, layers)

    with StateGuard(model):
        if gradients:
            records = gradient_pass(
                model, x, y, selected, loss=loss, training=training,
                pre_activations=pre_activations,
            )
            if on_record is not None:
                for record in records.values():
                    _record_to_float32(record)
                    on_record(record)
        else:

            # On JAX (asynchronous dispatch, immutable arrays) _ASYNC_LAG layers behind: a
            # record is converted (a read-only view, no copy) and reduced once the next
            # layers have been called, so that JAX computes them meanwhile instead of
            # waiting at each conversion (the seed MLP's in-fit probe 11.4 -> 8.4 ms with a
            # lag of 1). Elsewhere at once: eager operations are synchronous there, and a
            # torch layer may write into its input in place.
            current = backend.current()
            asynchronous = bool(current.ASYNC_DISPATCH)
            lag = _ASYNC_LAG if asynchronous else 0
            pending: collections.deque[ProbeRecord] = collections.deque()  # oldest first

            def reduce(record: ProbeRecord) -> None:
                _record_to_float32(record, view=asynchronous)
                if on_record is not None:
                    on_record(record)

            def hold(record: ProbeRecord) -> None:
                pending.append(record)
                if len(pending) > lag:
                    reduce(pending.popleft())

            with current.without_gradients(), LayerProbe(
                selected, pre_activations=pre_activations, on_record=hold,
            ) as probe:
                forward(model, x, training)
            while pending:
                reduce(pending.popleft())
            records = probe.records

    missing = [path for path in selected if path not in records]
    if missing and layers is not None:
        warnings.warn(
            f"Selected layers did not run during the probe pass and are left out: {missing}",
            stacklevel=2,
        )
    for record in records.values():
        _record_to_float32(record)
    return records


def _record_to_float32(record: ProbeRecord, *, view: bool = False) -> None:
    record.outputs = tuple(to_float32(tensor, view=view) for tensor in record.outputs)
    if record.pre_activations is not None:
        record.pre_activations = tuple(to_float32(t, view=view) for t in record.pre_activations)
