"""Whole-model activation-aware re-initialization.

A per-layer ``kernel_initializer`` sees only the kernel's shape; the He/Xavier derivation
needs the activation that produced the layer's *input* (the previous layer's activation,
linear for the model's inputs). ``reinitialize`` walks a built model, finds that
activation for every kernel, and re-draws the kernel with the matching gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import keras

from keras_inits._probe import NORMALIZATION_LAYER_TYPES
from keras_inits._seeds import derive_seed
from keras_inits.initializers import He, Xavier

__all__ = ["reinitialize", "FeedingActivation"]

Method = Literal["he", "xavier"]
Mode = Literal["fan_in", "fan_out"]

_METHODS = ("he", "xavier")
_MODES = ("fan_in", "fan_out")



@dataclass(frozen=True)
class FeedingActivation:
    """The element-wise activation that produced a layer's input.

    Attributes:
        activation: A name ``keras.activations.get`` knows, or an element-wise callable.
        kwargs: Arguments of the activation (``negative_slope`` of a ``LeakyReLU`` layer...).
        source: Path of the layer the activation was read from (``None`` for model inputs).
    """

    activation: Any = "linear"
    kwargs: dict = field(default_factory=dict)
    source: str | None = None


_LINEAR = FeedingActivation()


def reinitialize(
    model: keras.Model,
    method: Method = "he",
    *,
    mode: Mode = "fan_in",
    seed: int | None = None,
) -> dict[str, keras.initializers.Initializer]:
    """Re-draw every kernel of a built model with the gain of the activation that feeds it.

    For the kernel ``W`` of a layer whose input is ``x = phi(z)`` (``z`` the previous
    layer's pre-activation), He (``method="he"``) draws ``Var(W) = g_f(phi)^2 / fan_in``
    (``mode="fan_in"``) or ``g_b(phi)^2 / fan_out`` (``mode="fan_out"``), and Xavier
    (``method="xavier"``) draws ``Var(W) = 2 / (fan_in / g_f^2 + fan_out / g_b^2)``, with
    ``g_f = 1 / sqrt(E[phi(z)^2])`` and ``g_b = 1 / sqrt(E[phi'(z)^2])``. The layer's
    *own* activation does not enter: it acts on the output, which is the next layer's
    business. The model's inputs count as linear.

    How the feeding activation is found:

    - a layer built with ``activation=`` (Dense, Conv*, ...) and the activation layers
      (``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``PReLU`` with its mean slope)
      hand their activation on;
    - normalization layers (BatchNormalization, LayerNormalization, GroupNormalization,
      UnitNormalization) reset it to linear;
    - every other layer (Dropout, Flatten, Reshape, pooling, padding, custom layers
      without weights, ...) passes on what it received; a merge layer (Add, Concatenate,
      ...) passes on its inputs' activation when they agree, linear otherwise;
    - nested models are walked with the activation that feeds them;
    - a subclassed model has no graph: its layers are taken as a chain in the order they
      were assigned as attributes (``model.layers``).

    Biases are left as they are. Layers whose ``kernel`` is not a plain variable
    (recurrent cells' ``recurrent_kernel`` is not touched either) keep theirs.

    Examples:

    >>> model = keras.Sequential([
    ...     keras.Input((64,)),
    ...     keras.layers.Dense(128, activation="gelu"),
    ...     keras.layers.Dense(128, activation="gelu"),
    ...     keras.layers.Dense(10),
    ... ])
    >>> used = reinitialize(model, "he", seed=0)
    >>> [type(init).__name__ for init in used.values()]
    ['He', 'He', 'He']
    >>> used["dense_1"].activation   # the second Dense is fed by gelu
    'gelu'

    Args:
        model: A built Keras model (Sequential, Functional, subclassed or nested).
        method: ``"he"`` or ``"xavier"``.
        mode: He's ``"fan_in"`` (forward variance) or ``"fan_out"`` (backward variance).
            Ignored by Xavier, which balances both.
        seed: An int makes the result reproducible (each kernel gets its own independent
            stream derived from ``(seed, layer index)``); ``None`` draws fresh values.

    Returns:
        A dict from layer path (``dense_3``, ``inner/dense_3`` inside a nested model named
        ``inner``) to the initializer that drew its kernel, in the order of the walk.

    Raises:
        ValueError: for an unknown ``method`` or ``mode``, a model that is not built, or
            a model without kernels.

    Reference:
        He et al., "Delving Deep into Rectifiers", ICCV 2015.
        Glorot & Bengio, "Understanding the difficulty of training deep feedforward
        neural networks", AISTATS 2010.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}. Received: method={method!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}. Received: mode={mode!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None. Received: seed={seed!r}")
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model. Received: model={model!r}")
    if not model.built:
        raise ValueError(
            "reinitialize needs a built model (call it on data or use keras.Input). "
            f"Received: model={model.name!r}, which is not built"
        )

    feeding = feeding_activations(model)
    if not feeding:
        raise ValueError(f"The model has no layer with a kernel to re-initialize. Received: model={model.name!r}")

    used: dict[str, keras.initializers.Initializer] = {}
    for index, (path, (layer, source)) in enumerate(feeding.items()):
        layer_seed = derive_seed(seed, index)
        arguments = dict(activation=source.activation, seed=layer_seed, activation_kwargs=dict(source.kwargs) or None)
        try:
            initializer = He(mode=mode, **arguments) if method == "he" else Xavier(**arguments)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"Cannot re-initialize layer {path!r}: the activation that feeds it (from "
                f"{source.source!r}) has no gain. {error}"
            ) from error
        kernel = layer.kernel
        kernel.assign(initializer(tuple(kernel.shape), dtype=kernel.dtype))
        used[path] = initializer
    return used


def feeding_activations(model: keras.Model) -> dict[str, tuple[keras.layers.Layer, FeedingActivation]]:
    """Map the path of every kernel-owning layer to ``(layer, activation that feeds it)``.

    The walk is described in :func:`reinitialize`. Paths are relative to ``model``.
    """
    result: dict[str, tuple[keras.layers.Layer, FeedingActivation]] = {}
    _walk(model, prefix="", fed_by=_LINEAR, result=result)
    return result


def _walk(
    model: keras.Model,
    prefix: str,
    fed_by: FeedingActivation,
    result: dict[str, tuple[keras.layers.Layer, FeedingActivation]],
) -> FeedingActivation:
    """Walk one model level; return the activation of the model's output."""
    graph = _functional_graph(model)
    if graph is None:
        return _walk_chain(model, prefix, fed_by, result)

    produced: dict[int, FeedingActivation] = {}
    last = fed_by
    for layer in graph.layers:
        parents = _parent_layers(layer, graph)
        if not parents:  # an InputLayer
            produced[id(layer)] = fed_by
            continue
        incoming = _merge([produced.get(id(parent), fed_by) for parent in parents])
        last = produced[id(layer)] = _visit(layer, prefix, incoming, result)
    outputs = [tensor._keras_history.operation for tensor in graph.outputs]
    return _merge([produced.get(id(layer), last) for layer in outputs])


def _walk_chain(
    model: keras.Model,
    prefix: str,
    fed_by: FeedingActivation,
    result: dict[str, tuple[keras.layers.Layer, FeedingActivation]],
) -> FeedingActivation:
    current = fed_by
    for layer in model.layers:
        current = _visit(layer, prefix, current, result)
    return current


def _visit(
    layer: keras.layers.Layer,
    prefix: str,
    incoming: FeedingActivation,
    result: dict[str, tuple[keras.layers.Layer, FeedingActivation]],
) -> FeedingActivation:
    """Record ``layer`` if it owns a kernel; return the activation of its output."""
    path = f"{prefix}{layer.name}"
    if isinstance(layer, keras.Model):
        return _walk(layer, prefix=f"{path}/", fed_by=incoming, result=result)
    if _owns_kernel(layer):
        result[path] = (layer, incoming)
    if isinstance(layer, NORMALIZATION_LAYER_TYPES):
        return FeedingActivation(source=path)
    own = _own_activation(layer, path)
    if own is not None:
        return own
    if _owns_kernel(layer):
        return FeedingActivation(source=path)  # a kernel layer without activation: linear
    return incoming


def _owns_kernel(layer: keras.layers.Layer) -> bool:
    kernel = getattr(layer, "kernel", None)
    return isinstance(kernel, keras.Variable) and len(kernel.shape) >= 2


def _own_activation(layer: keras.layers.Layer, path: str) -> FeedingActivation | None:
    """The activation a layer applies to its output, or ``None`` if it applies none."""
    if isinstance(layer, keras.layers.ReLU):
        defaults = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}
        config = layer.get_config()
        kwargs = {key: config[key] for key, default in defaults.items() if config.get(key) != default}
        return FeedingActivation("relu", kwargs, path)
    if isinstance(layer, keras.layers.LeakyReLU):
        return FeedingActivation("leaky_relu", {"negative_slope": float(layer.negative_slope)}, path)
    if isinstance(layer, keras.layers.ELU):
        return FeedingActivation("elu", {"alpha": float(layer.alpha)}, path)
    if isinstance(layer, keras.layers.PReLU):
        slope = float(keras.ops.mean(layer.alpha))
        return FeedingActivation("leaky_relu", {"negative_slope": slope}, path)
    activation = getattr(layer, "activation", None)
    if not callable(activation) or activation is keras.activations.linear:
        return None
    name = getattr(activation, "__name__", "")
    if _builtin_activation(name) is activation:
        return FeedingActivation(name, {}, path)
    return FeedingActivation(activation, {}, path)


def _builtin_activation(name: str) -> Callable | None:
    """Keras's activation function of that name, or ``None``."""
    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):
        return None


def _merge(sources: list[FeedingActivation]) -> FeedingActivation:
    first = sources[0]
    if all(source.activation == first.activation and source.kwargs == first.kwargs for source in sources):
        return first
    return _LINEAR


class _Graph:
    def __init__(self, layers: list[keras.layers.Layer], outputs: list[Any], node_ids: set[int]):
        self.layers = layers
        self.outputs = outputs
        self.node_ids = node_ids


def _functional_graph(model: keras.Model) -> _Graph | None:
    """The layers (in topological order), outputs and node ids of a Functional graph."""
    functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    operations = getattr(functional, "_operations", None)
    nodes_by_depth = getattr(functional, "_nodes_by_depth", None)
    if operations is None or nodes_by_depth is None:
        return None
    node_ids = {id(node) for nodes in nodes_by_depth.values() for node in nodes}
    return _Graph(list(operations), list(functional.outputs), node_ids)


def _parent_layers(layer: keras.layers.Layer, graph: _Graph) -> list[Callable]:
    for node in layer._inbound_nodes:
        if id(node) in graph.node_ids:
            return [parent.operation for parent in node.parent_nodes]
    return []
