"""The one model walker: layers in data-flow order, their weights and roles, what feeds them.

Every part of keras_inits that needs to know what a model contains asks this module: the
probe (which layers to monitor), ``reinitialize`` (which weights to re-draw, with which
fans and which gain) and ``lsuv`` (which kernels to rescale). Nothing else walks models.

The API
-------

Static (no data needed, any built model):

* :func:`walk` ``(model) -> {path: layer}``: every layer inside ``model``, depth first in
  Keras's order of each container; recurrent layers (``RNN`` and subclasses,
  ``Bidirectional``) are leaves, their cells are not listed.
* :func:`children` ``(layer)``: the direct sub-layers of a layer (``InputLayer`` left out).
* :func:`own_variables` ``(layer)``: the variables a layer created itself.
* :func:`layer_weights` ``(layer, path="", parent=None) -> (Weight, ...)``: a layer's own
  weights with their role, layout and fans; for a recurrent leaf, its cells' weights.
* :func:`weight_fans` ``(shape, layout, gates=1, equation=None)`` and :func:`einsum_fans`.

Traced (one eager forward pass on a small batch):

* :func:`model_graph` ``(model, x=None) -> ModelGraph``: :class:`Node` per layer in
  data-flow order, each with its weights, the paths of the layers that produced its inputs,
  the activation that feeds it and the activation of its output.
* :func:`sample_inputs` ``(model)``: the small batch used when ``x`` is not given.

Conventions
-----------

* **Paths** are relative to the model passed in: ``dense_3`` for its own layers,
  ``inner/dense_3`` for a layer of a nested model (or of any layer that owns sub-layers)
  named ``inner``; a second sibling of one name is ``name#1``. A layer reachable by several
  paths (a shared layer) gets the first one found. Weight paths add the variable's name,
  and for a recurrent leaf the path of the cell that owns it:
  ``bidirectional/forward_lstm/lstm_cell/kernel``.
* **Roles** (:data:`ROLES`): ``kernel``, ``recurrent_kernel``, ``embeddings``,
  ``depthwise_kernel`` and ``pointwise_kernel`` (in series: the pointwise kernel is fed by
  the depthwise one, ``Weight.series == 1``), ``attention_query`` / ``attention_key`` /
  ``attention_value`` / ``attention_output`` (the ``EinsumDense`` projections of a
  ``MultiHeadAttention``), ``bias``, ``gamma`` and ``beta`` of normalization layers, and
  ``other`` (moving statistics, LayerScale factors, non-float variables, ...).
* **Fans** come from the role's layout (:data:`LAYOUTS`): ``standard`` Dense/Conv kernels
  ``(*k, in, out)``: ``(prod(k) in, prod(k) out)``; ``depthwise`` ``(*k, C, M)``:
  ``(prod(k), prod(k) M)``; ``transpose`` ``(*k, out, in)``: ``(prod(k) in, prod(k) out)``;
  ``einsum``: from the equation (fan_in = product of the contracted input dimensions,
  fan_out = product of the output dimensions that come from the kernel); ``gates``:
  recurrent kernels ``(in, g units)`` as ``g`` gates of ``(in, units)`` each;
  ``embeddings`` ``(vocabulary, dim)``: ``(1, dim)`` (a lookup reads one row: one weight per
  output, times a one-hot 1).

How data flow is found
----------------------

:func:`model_graph` wraps ``call`` on every layer instance of the tree (and every
non-layer operation of a Functional graph, e.g. ``keras.ops.add`` on symbolic tensors),
with ``object.__setattr__(layer, "call", wrapper)``, undone with ``object.__delattr__``,
and runs the model once, eagerly, in inference mode. Each wrapper maps the ``id`` of every
tensor it returns to its layer (the tensors are kept alive for the pass so that ids are
not reused), so each call knows which layers produced its inputs; only floating-point
inputs count (masks and integer ids do not feed a kernel). Order is the order in which each
layer's first call starts: data-flow order, shallow to deep, containers before their
sub-layers, for every kind of model (subclassed included). A layer called several times is
described by its first call. Layers that never ran come last, with ``calls == 0``.

**The data's own scale.** With a batch ``x`` given, tensors that no weight has touched
yet (the model's inputs, and what weightless layers and ops make of them before the first
layer with a kernel has run) are measured: their ``FeedingActivation`` is linear with
``scale = sqrt(mean(x^2))``. Without ``x`` the sample batch is N(0, 1) and the scale is 1.
A float input that first enters the model after a kernel ran is not measured.

**Ops the trace cannot see.** Inside a layer's or a subclassed model's ``call``, backend
ops between layers (``x + residual``, ``keras.ops.einsum``, reshapes, slicing,
``keras.ops.relu``) produce tensors no layer returned. Such a tensor counts as *linear*
(``FeedingActivation(source=None)``, as the model's inputs): right for residual sums,
attention's ``softmax(QK) V`` and reshapes of linear outputs, wrong for an activation
applied as a bare op in a subclassed ``call`` (use an ``Activation`` layer or
``activation=`` to make it visible). In a Functional graph such ops are operations of the
graph and are seen: an activation op (``keras.ops.relu``, ``gelu``, ...) hands on its
activation, every other op the activation its inputs agree on.

**The activation that feeds a layer** is the activation of the tensors it receives:

- a layer built with ``activation=`` (Dense, Conv*, EinsumDense) and the activation layers
  (``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``PReLU`` with its mean slope,
  ``Softmax``) hand their activation on; a layer with kernel-like weights and no activation
  hands on linear; a recurrent layer its output activation (``tanh`` for Keras's cells);
- normalization layers (:data:`NORMALIZATION_LAYER_TYPES`) hand on linear at scale 1,
  except ``BatchNormalization``, taken as it acts at inference, ``gamma x /
  sqrt(moving_variance + eps)`` (an identity with fresh statistics): linear, with its
  input's root mean square times that factor as scale (in training mode it re-standardizes,
  and then nothing before it matters for the forward variance);
- a container (a model, or any layer that owns sub-layers, such as keras-hub's
  TransformerEncoder) hands on the activation of the tensor it returns, i.e. what its last
  sub-layer applied (linear when an unseen op made it), never its ``activation``
  attribute (which configures an inner layer);
- merge layers combine their inputs as independent signals and say so with a **scale**
  (``FeedingActivation.scale``: the tensor is ``scale * phi(z)``): ``Add`` of two
  unit-variance branches has scale ``sqrt(2)``, a ``Multiply`` by a sigmoid gate (a
  squeeze-excite block) scale ``sqrt(E[sigmoid(z)^2]) = 0.54``; the kernel fed by such a
  tensor divides its std by the scale (see ``_merge_layer_output`` for each merge). A
  homogeneous activation layer (``ReLU``, ``LeakyReLU``, linear) keeps the scale of its
  input; kernels, other activations and normalization layers start again at scale 1;
- every other layer (Dropout, Flatten, pooling, padding, ...) passes on what it received.

Examples:

>>> import keras
>>> model = keras.Sequential([keras.Input((4,)),
...                           keras.layers.Dense(8, activation="relu", name="a"),
...                           keras.layers.Dropout(0.1, name="drop"),
...                           keras.layers.Dense(2, name="b")])
>>> graph = model_graph(model)
>>> list(graph.nodes)
['a', 'drop', 'b']
>>> graph.nodes["b"].feeding.activation, graph.nodes["b"].inputs
('relu', ('drop',))
>>> [(weight.path, weight.role, weight.fans) for weight in graph.nodes["b"].weights]
[('b/kernel', 'kernel', (8, 2)), ('b/bias', 'bias', None)]
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import keras
import numpy as np

from keras_inits import activations, backend
from keras_inits.fans import LAYOUTS as KERNEL_LAYOUTS
from keras_inits.fans import compute_fans
from keras_inits.gains import gain

Role = Literal[
    "kernel",
    "recurrent_kernel",
    "embeddings",
    "depthwise_kernel",
    "pointwise_kernel",
    "attention_query",
    "attention_key",
    "attention_value",
    "attention_output",
    "bias",
    "gamma",
    "beta",
    "other",
]
Layout = Literal["standard", "depthwise", "transpose", "einsum", "gates", "embeddings"]
Kind = Literal["container", "recurrent", "normalization", "merge", "activation", "layer"]

#: Every role a weight can have.
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]
#: Every fan layout.
LAYOUTS: tuple[str, ...] = Layout.__args__  # type: ignore[attr-defined]

_ATTENTION_PROJECTIONS: dict[str, str] = {
    "_query_dense": "attention_query",
    "_key_dense": "attention_key",
    "_value_dense": "attention_value",
    "_output_dense": "attention_output",
}

#: Roles of weights that multiply their input (a sum over fan_in terms).
KERNEL_ROLES: frozenset[str] = frozenset(
    {"kernel", "recurrent_kernel", "depthwise_kernel", "pointwise_kernel", *_ATTENTION_PROJECTIONS.values()}
)
#: Roles of the weights ``reinitialize`` re-draws: kernels and embedding tables.
DRAWN_ROLES: frozenset[str] = KERNEL_ROLES | {"embeddings"}

#: Standalone activation layers (from the activation registry).
ACTIVATION_LAYER_TYPES: tuple[type, ...] = activations.ACTIVATION_LAYER_TYPES

#: Layers that re-standardize their input: what follows them sees a unit-variance linear input.
NORMALIZATION_LAYER_TYPES: tuple[type, ...] = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.UnitNormalization,
    keras.layers.RMSNormalization,
)

#: Layers treated as leaves: described as a whole, never descended into (a cell runs once
#: per time step, inside the backend's loop).
LEAF_LAYER_TYPES: tuple[type, ...] = (keras.layers.RNN, keras.layers.Bidirectional)

#: Layers that combine several inputs element-wise or by concatenation.
MERGE_LAYER_TYPES: tuple[type, ...] = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Concatenate,
    keras.layers.Dot,
)

_TRANSPOSE_LAYER_TYPES: tuple[type, ...] = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_DEPTHWISE_LAYER_TYPES: tuple[type, ...] = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)

#: Activation operations of a Functional graph (``keras.ops.relu`` on a symbolic tensor),
#: by class name, and the attributes that are the activation's arguments.
_ACTIVATION_OPERATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Relu": ("relu", ()),
    "Relu6": ("relu6", ()),
    "Sigmoid": ("sigmoid", ()),
    "Tanh": ("tanh", ()),
    "Silu": ("silu", ()),
    "Selu": ("selu", ()),
    "Elu": ("elu", ("alpha",)),
    "Softplus": ("softplus", ()),
    "Gelu": ("gelu", ("approximate",)),
    "LeakyRelu": ("leaky_relu", ("negative_slope",)),
}

#: Size given to input dimensions that the model leaves open (sequence length, image size).
OPEN_DIMENSION_SIZE = 8
#: Samples in the batch of :func:`sample_inputs`.
SAMPLE_BATCH_SIZE = 2
_MASK_ARGUMENTS = ("mask", "training")
_MASK_SUFFIX = "_mask"


# --------------------------------------------------------------------------------------
# What feeds a layer
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeedingActivation:
    """The element-wise activation that produced a tensor (and so feeds the layer it enters).

    Attributes:
        activation: A name ``keras.activations.get`` knows, or an element-wise callable.
        kwargs: Arguments of the activation (``negative_slope`` of a ``LeakyReLU`` layer...).
        source: Path of the layer the activation was read from (``None`` for the model's
            inputs and for tensors made by ops the trace cannot see, both linear).
        scale: The tensor is ``scale * phi(z)`` with ``z ~ N(0, 1)``: 1 for a layer's own
            output, other values after merges (a sum of branches, a gate multiplied in).
    """

    activation: Any = "linear"
    kwargs: dict = dataclasses.field(default_factory=dict)
    source: str | None = None
    scale: float = 1.0

    def same_law(self, other: "FeedingActivation") -> bool:
        """Whether both are one activation with one set of arguments."""
        return self.activation == other.activation and self.kwargs == other.kwargs


LINEAR = FeedingActivation()

#: Activations that commute with a positive scale (``phi(s z) = s phi(z)``): a scaled input
#: comes out scaled by the same factor.
_HOMOGENEOUS_ACTIVATIONS = ("linear", "relu", "leaky_relu")


def _is_homogeneous(source: FeedingActivation) -> bool:
    return source.activation in _HOMOGENEOUS_ACTIVATIONS and set(source.kwargs) <= {"negative_slope"}


def _merge(sources: Sequence[FeedingActivation]) -> FeedingActivation:
    """The activation several inputs of one call agree on (scale included), else linear."""
    if not sources:
        return LINEAR
    first = sources[0]
    if all(first.same_law(source) and source.scale == first.scale for source in sources):
        return first
    return LINEAR


def _root_mean_square(source: FeedingActivation) -> float | None:
    """``sqrt(E[(s phi(z))^2])`` of a tensor, ``z ~ N(0, 1)``; ``None`` if it has no gain (softmax)."""
    try:
        forward_gain = gain(source.activation, "forward", **source.kwargs)
    except (ValueError, TypeError):
        return None
    return source.scale / forward_gain


def _merge_layer_output(layer: keras.layers.Layer, path: str, sources: Sequence[FeedingActivation]) -> FeedingActivation:
    """The activation (and scale) of a merge layer's output, its inputs taken as independent.

    - ``Multiply``: ``E[(x1 x2)^2] = E[x1^2] E[x2^2]``: the first input's activation, its scale
      times the root mean square of the other factors (a sigmoid gate of a squeeze-excite
      block, ~0.54, is a factor the next kernel must make up for).
    - ``Add``, ``Subtract``, ``Average``: variances add (``Average`` divides by ``k^2``):
      the common activation with scale ``sqrt(sum s_i^2)``, or linear with the root of the
      summed mean squares when the activations differ.
    - ``Concatenate``: the common activation with the root mean of the squared scales, else
      linear with the root mean of the mean squares.
    - ``Maximum``, ``Minimum``, ``Dot``: what the inputs agree on, else linear.
    """
    first = sources[0]
    agree = all(first.same_law(source) for source in sources)
    squares = [_root_mean_square(source) for source in sources]
    if isinstance(layer, keras.layers.Multiply):
        factors = squares[1:]
        if None in factors:
            return FeedingActivation(source=path)
        return dataclasses.replace(first, scale=first.scale * math.prod(factors))
    summing = isinstance(layer, (keras.layers.Add, keras.layers.Subtract, keras.layers.Average))
    if summing or isinstance(layer, keras.layers.Concatenate):
        divisor = len(sources) ** 2 if isinstance(layer, keras.layers.Average) else 1
        if not summing:
            divisor = len(sources)
        if agree:
            total = sum(source.scale**2 for source in sources)
            return dataclasses.replace(first, scale=math.sqrt(total / divisor))
        if None in squares:
            return FeedingActivation(source=path)
        total = sum(square**2 for square in squares)
        return FeedingActivation(source=path, scale=math.sqrt(total / divisor))
    return _merge(sources)


def own_activation(layer: keras.layers.Layer, path: str) -> FeedingActivation | None:
    """The activation ``layer`` applies to its output, or ``None`` if it applies none.

    What the activation registry says (:func:`keras_inits.activations.layer_activation`:
    activation layers and the layers that apply their ``activation=`` last); recurrent
    layers give their cell's output activation. Containers are not asked (their output is
    what their last sub-layer made).
    """
    if isinstance(layer, LEAF_LAYER_TYPES):
        return _recurrent_output_activation(layer, path)
    applied = activations.layer_activation(layer)
    if applied is None:
        return None
    activation, kwargs = applied
    return FeedingActivation(activation, kwargs, path)


def _recurrent_output_activation(layer: keras.layers.Layer, path: str) -> FeedingActivation | None:
    """The output activation of a recurrent layer's cell (``tanh`` for Keras's cells)."""
    if isinstance(layer, keras.layers.Bidirectional):
        layer = layer.forward_layer
    activation = getattr(layer, "activation", None)
    if not callable(activation) or activation is keras.activations.linear:
        return None
    name = getattr(activation, "__name__", "")
    try:
        builtin = keras.activations.get(name)
    except (ValueError, TypeError):
        builtin = None
    if builtin is activation:
        return FeedingActivation(name, {}, path)
    return FeedingActivation(activation, {}, path)


def _operation_activation(operation: Any, path: str | None) -> FeedingActivation | None:
    """The activation a non-layer operation of a Functional graph applies, if it is one."""
    known = _ACTIVATION_OPERATIONS.get(type(operation).__name__)
    if known is None:
        return None
    name, arguments = known
    kwargs = {argument: getattr(operation, argument) for argument in arguments}
    if kwargs.get("approximate") is False:
        kwargs.pop("approximate")
    return FeedingActivation(name, kwargs, path)


# --------------------------------------------------------------------------------------
# The static tree
# --------------------------------------------------------------------------------------


def children(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Direct sub-layers of ``layer`` in Keras's order (topological for Functional).

    Recurrent leaves (:data:`LEAF_LAYER_TYPES`) have none; ``InputLayer`` is left out.
    """
    if isinstance(layer, LEAF_LAYER_TYPES):
        return []
    return _sublayers(layer)


def _sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    if isinstance(layer, keras.Model):
        found = list(layer.layers)
    else:
        found = list(getattr(layer, "_layers", []))
    return [child for child in found if not isinstance(child, keras.layers.InputLayer)]


def _tree(
    root: keras.layers.Layer, descend: Callable[[keras.layers.Layer], list[keras.layers.Layer]]
) -> list[tuple[str, str | None, keras.layers.Layer]]:
    """``(path, parent path, layer)`` for every layer under ``root``, depth first."""
    found: list[tuple[str, str | None, keras.layers.Layer]] = []
    taken: set[str] = set()
    seen: set[int] = {id(root)}

    def visit(container: keras.layers.Layer, parent: str | None) -> None:
        prefix = "" if parent is None else parent + "/"
        for child in descend(container):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = prefix + child.name
            if path in taken:  # two sibling layers with one name (possible when subclassing)
                suffix = 1
                while f"{path}#{suffix}" in taken:
                    suffix += 1
                path = f"{path}#{suffix}"
            taken.add(path)
            found.append((path, parent, child))
            visit(child, path)

    visit(root, None)
    return found


def walk(model: keras.layers.Layer) -> dict[str, keras.layers.Layer]:
    """Every layer inside ``model`` (not ``model`` itself), keyed by its path.

    Depth first, in Keras's own order of each container; recurrent layers are leaves.
    Needs no data; for data-flow order use :func:`model_graph`.

    Args:
        model: A Keras model (or any layer with sub-layers).

    Returns:
        A dict from path (``"dense"``, ``"inner/dense_3"``, ``"block#1"``) to layer.

    Examples:

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")],
    ...                          name="inner")
    >>> outer = keras.Sequential([keras.Input((3,)), inner])
    >>> list(walk(outer))
    ['inner', 'inner/d']
    """
    return {path: layer for path, _, layer in _tree(model, children)}


def own_variables(layer: keras.layers.Layer) -> list[Any]:
    """Variables created by ``layer`` itself, not by its sub-layers."""
    own = getattr(layer, "_trainable_variables", None)
    if own is not None:
        return list(own) + list(getattr(layer, "_non_trainable_variables", []))
    nested = {id(weight) for child in _sublayers(layer) for weight in child.weights}
    return [weight for weight in layer.weights if id(weight) not in nested]


# --------------------------------------------------------------------------------------
# Weights, roles and fans
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Weight:
    """One weight tensor of a layer and what it does.

    Attributes:
        path: ``layer path/variable name`` (``dense_3/kernel``; for a recurrent leaf the
            cell's path is included: ``lstm/lstm_cell/recurrent_kernel``).
        variable: The Keras variable.
        role: One of :data:`ROLES`.
        layout: How the shape reads for fans, one of :data:`LAYOUTS` (``None`` for weights
            that are not multiplied with an input: biases, normalization, other).
        fans: ``(fan_in, fan_out)`` for kernel-like weights (:data:`DRAWN_ROLES`), else ``None``.
        gates: Number of gates side by side along the last axis (4 for LSTM, 3 for GRU
            kernels; 1 otherwise).
        series: Position in a chain of kernels inside one layer: 1 for the pointwise kernel
            of a separable convolution (fed by the depthwise kernel's linear output), else 0.
        equation: The einsum equation of an ``EinsumDense`` kernel, else ``None``.
    """

    path: str
    variable: Any
    role: str
    layout: str | None
    fans: tuple[int, int] | None
    gates: int = 1
    series: int = 0
    equation: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(dim) for dim in self.variable.shape)

    @property
    def dtype(self) -> str:
        """The variable's dtype name (``"float32"``, ``"int64"``...)."""
        return keras.backend.standardize_dtype(self.variable.dtype)

    @property
    def is_kernel(self) -> bool:
        """Whether the weight multiplies its input (:data:`KERNEL_ROLES`)."""
        return self.role in KERNEL_ROLES


def einsum_fans(equation: str, kernel_shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of an ``EinsumDense`` kernel from its equation.

    fan_in is the product of the kernel dimensions summed over (in the kernel and the input,
    not in the output, or in the kernel alone); fan_out the product of the kernel
    dimensions that reach the output without coming from the input. Dimensions shared by
    input, kernel and output (independent blocks) count in neither.

    Examples:

    >>> einsum_fans("abc,cde->abde", (32, 2, 16))   # attention query: hidden -> heads x dim
    (32, 32)
    >>> einsum_fans("abcd,cde->abe", (2, 16, 32))   # attention output: heads x dim -> hidden
    (32, 32)

    Raises:
        ValueError: for an equation that is not ``input,kernel->output`` or does not match
            the kernel's rank.
    """
    compact = equation.replace(" ", "").replace("...", "")
    if "->" not in compact or compact.count(",") != 1:
        raise ValueError(
            f"An EinsumDense equation has the form 'input,kernel->output'. Received: equation={equation!r}"
        )
    operands, output = compact.split("->")
    inputs, kernel = operands.split(",")
    if len(kernel) != len(kernel_shape):
        raise ValueError(
            f"The kernel part of the equation {equation!r} does not match the kernel's shape. "
            f"Received: kernel_shape={tuple(kernel_shape)!r}"
        )
    fan_in = 1
    fan_out = 1
    for letter, size in zip(kernel, kernel_shape):
        if letter in output and letter not in inputs:
            fan_out *= int(size)
        elif letter not in output:
            fan_in *= int(size)
    return fan_in, fan_out


def weight_fans(
    shape: Sequence[int], layout: str, *, gates: int = 1, equation: str | None = None
) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a kernel-like weight of ``shape`` read as ``layout``.

    Examples:

    >>> weight_fans((3, 3, 32, 1), "depthwise")
    (9, 9)
    >>> weight_fans((3, 3, 16, 8), "transpose")   # (*k, out, in)
    (72, 144)
    >>> weight_fans((8, 64), "gates", gates=4)    # LSTM kernel: 4 gates of 16 units
    (8, 16)
    >>> weight_fans((1000, 32), "embeddings")
    (1, 32)

    Raises:
        ValueError: for an unknown layout, an einsum layout without equation, or gates that
            do not divide the last dimension.
    """
    shape = tuple(int(dim) for dim in shape)
    if layout in KERNEL_LAYOUTS:
        return compute_fans(shape, layout)
    if layout == "einsum":
        if equation is None:
            raise ValueError("The einsum layout needs the layer's equation. Received: equation=None")
        return einsum_fans(equation, shape)
    if layout == "gates":
        if gates < 1 or shape[-1] % gates:
            raise ValueError(
                f"gates must divide the last dimension of the shape {shape}. Received: gates={gates!r}"
            )
        return compute_fans(shape[:-1] + (shape[-1] // gates,))
    if layout == "embeddings":
        return 1, shape[-1]
    raise ValueError(f"layout must be one of {LAYOUTS}. Received: layout={layout!r}")


#: The dtypes of weights that can be drawn.
FLOAT_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")


def _is_float(variable: Any) -> bool:
    return keras.backend.standardize_dtype(variable.dtype) in FLOAT_DTYPES


def _gates(owner: keras.layers.Layer, shape: tuple[int, ...]) -> int:
    """How many gates sit side by side in the last axis of a recurrent cell's kernel."""
    units = getattr(owner, "units", None) or getattr(owner, "filters", None)
    if isinstance(units, int) and units > 0 and shape[-1] % units == 0:
        return shape[-1] // units
    return 1


def _is_recurrent_cell(owner: keras.layers.Layer) -> bool:
    return hasattr(owner, "state_size") and hasattr(owner, "recurrent_kernel")


def _classify(
    variable: Any, owner: keras.layers.Layer, parent: keras.layers.Layer | None
) -> tuple[str, str | None, int, int, str | None]:
    """``(role, layout, gates, series, equation)`` of one variable of ``owner``."""
    name = variable.name
    shape = tuple(int(dim) for dim in variable.shape)
    if not _is_float(variable):
        return "other", None, 1, 0, None
    if isinstance(owner, NORMALIZATION_LAYER_TYPES):
        if name in ("gamma", "scale"):
            return "gamma", None, 1, 0, None
        if name in ("beta", "offset", "center"):
            return "beta", None, 1, 0, None
        return "other", None, 1, 0, None
    if "bias" in name:
        return "bias", None, 1, 0, None
    if len(shape) < 2:
        return "other", None, 1, 0, None
    if "depthwise_kernel" in name or (name == "kernel" and isinstance(owner, _DEPTHWISE_LAYER_TYPES)):
        return "depthwise_kernel", "depthwise", 1, 0, None
    if "pointwise_kernel" in name:
        return "pointwise_kernel", "standard", 1, 1, None
    if "recurrent_kernel" in name:
        return "recurrent_kernel", "gates", _gates(owner, shape), 0, None
    if "reverse_embeddings" in name:  # keras-hub's untied output projection (dim, vocabulary)
        return "kernel", "standard", 1, 0, None
    if "embeddings" in name:
        return "embeddings", "embeddings", 1, 0, None
    if "kernel" not in name:
        return "other", None, 1, 0, None
    if _is_recurrent_cell(owner):
        return "kernel", "gates", _gates(owner, shape), 0, None
    if isinstance(owner, keras.layers.EinsumDense):
        role = "kernel"
        if isinstance(parent, keras.layers.MultiHeadAttention):
            for attribute, attention_role in _ATTENTION_PROJECTIONS.items():
                if getattr(parent, attribute, None) is owner:
                    role = attention_role
        return role, "einsum", 1, 0, owner.equation
    if isinstance(owner, _TRANSPOSE_LAYER_TYPES):
        return "kernel", "transpose", 1, 0, None
    return "kernel", "standard", 1, 0, None


def _weight(path: str, variable: Any, owner: keras.layers.Layer, parent: keras.layers.Layer | None) -> Weight:
    role, layout, gates, series, equation = _classify(variable, owner, parent)
    fans = None
    if role in DRAWN_ROLES:
        fans = weight_fans(variable.shape, layout, gates=gates, equation=equation)
    return Weight(path, variable, role, layout, fans, gates, series, equation)


def layer_weights(
    layer: keras.layers.Layer, path: str = "", parent: keras.layers.Layer | None = None
) -> tuple[Weight, ...]:
    """The weights ``layer`` owns, with their roles, layouts and fans.

    A layer's own variables (not its sub-layers'), except for recurrent leaves
    (:data:`LEAF_LAYER_TYPES`), which report the variables of their cells (and, for
    ``Bidirectional``, of both directions) since they are described as a whole.

    Args:
        layer: The layer.
        path: The layer's path, the prefix of the weights' paths.
        parent: The layer that owns ``layer`` (gives the attention roles of a
            ``MultiHeadAttention``'s projections).

    Returns:
        A tuple of :class:`Weight` in the layer's variable order.

    Examples:

    >>> import keras
    >>> layer = keras.layers.SeparableConv2D(8, 3)
    >>> layer.build((None, 16, 16, 4))
    >>> [(w.role, w.fans, w.series) for w in layer_weights(layer, "sep")]
    [('depthwise_kernel', (9, 9), 0), ('pointwise_kernel', (4, 8), 1), ('bias', None, 0)]
    """
    prefix = f"{path}/" if path else ""
    owners: list[tuple[str, keras.layers.Layer, keras.layers.Layer | None]] = [("", layer, parent)]
    if isinstance(layer, LEAF_LAYER_TYPES):
        owners += [(sub_path + "/", sub_layer, layer) for sub_path, _, sub_layer in _tree(layer, _sublayers)]
    weights: list[Weight] = []
    taken: set[str] = set()
    for owner_prefix, owner, owner_parent in owners:
        for variable in own_variables(owner):
            weight_path = prefix + owner_prefix + variable.name
            if weight_path in taken:
                suffix = 1
                while f"{weight_path}#{suffix}" in taken:
                    suffix += 1
                weight_path = f"{weight_path}#{suffix}"
            taken.add(weight_path)
            weights.append(_weight(weight_path, variable, owner, owner_parent))
    return tuple(weights)


# --------------------------------------------------------------------------------------
# The traced graph
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Node:
    """One layer of a :class:`ModelGraph`.

    Attributes:
        path: The layer's path relative to the model.
        layer: The layer.
        kind: ``"container"`` (owns sub-layers), ``"recurrent"`` (a recurrent leaf),
            ``"normalization"``, ``"merge"``, ``"activation"`` (a standalone activation
            layer) or ``"layer"`` (any other leaf).
        parent: Path of the container the layer belongs to (``None`` at the top level).
        children: Paths of its direct sub-layers.
        weights: Its own weights (:func:`layer_weights`).
        inputs: Per floating-point input tensor of its first call, the path of the layer
            that produced it (``None``: a model input or an op the trace cannot see).
        feeding: The activation of its inputs (they agree, or linear).
        output_activation: The activation of its output.
        calls: How many times it ran during the trace (0: never, e.g. an unused branch).
    """

    path: str
    layer: keras.layers.Layer
    kind: str
    parent: str | None
    children: tuple[str, ...]
    weights: tuple[Weight, ...]
    inputs: tuple[str | None, ...]
    feeding: FeedingActivation
    output_activation: FeedingActivation
    calls: int


@dataclasses.dataclass(frozen=True)
class ModelGraph:
    """A model's layers in data-flow order, as :func:`model_graph` traced them.

    Attributes:
        model: The model.
        nodes: Dict from path to :class:`Node`, in data-flow order (layers that never ran last).
        output_activation: The activation of the model's output(s).
    """

    model: keras.layers.Layer
    nodes: dict[str, Node]
    output_activation: FeedingActivation

    def weights(self) -> Iterator[Weight]:
        """Every weight of every node, in data-flow order."""
        for node in self.nodes.values():
            yield from node.weights

    def drawn_weights(self) -> Iterator[tuple[Node, Weight]]:
        """``(node, weight)`` for every kernel-like weight (:data:`DRAWN_ROLES`)."""
        for node in self.nodes.values():
            for weight in node.weights:
                if weight.role in DRAWN_ROLES:
                    yield node, weight

    def __getitem__(self, path: str) -> Node:
        return self.nodes[path]

    def __contains__(self, path: object) -> bool:
        return path in self.nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def _kind(layer: keras.layers.Layer, has_children: bool) -> str:
    if isinstance(layer, LEAF_LAYER_TYPES):
        return "recurrent"
    if has_children:
        return "container"
    if isinstance(layer, NORMALIZATION_LAYER_TYPES):
        return "normalization"
    if isinstance(layer, MERGE_LAYER_TYPES):
        return "merge"
    if isinstance(layer, ACTIVATION_LAYER_TYPES):
        return "activation"
    return "layer"


def _input_structure(model: keras.layers.Layer) -> Any:
    """The model's symbolic inputs (Functional, Sequential) or its build shapes, or ``None``."""
    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = None
    if structure is not None:
        return structure
    shapes = getattr(model, "_build_shapes_dict", None)
    if shapes and len(shapes) == 1:
        return keras.KerasTensor(tuple(next(iter(shapes.values()))), dtype=keras.config.floatx())
    return None


def sample_inputs(model: keras.layers.Layer, *, seed: int = 0) -> Any:
    """A batch of :data:`SAMPLE_BATCH_SIZE` samples that fits ``model``'s inputs.

    Floating-point inputs get standard normal values, integer and boolean inputs ones (a
    valid token id and an all-valid mask); open dimensions get :data:`OPEN_DIMENSION_SIZE`.

    Raises:
        ValueError: for a model whose input shapes are unknown (a subclassed model built
            with several inputs, or not built): pass ``x=`` to :func:`model_graph`.
    """
    structure = _input_structure(model)
    if structure is None:
        raise ValueError(
            "The model's input shapes are unknown (a subclassed model called on several "
            "inputs, or one that is not built): pass a small batch as `x=`. "
            f"Received: model={model.name!r}"
        )
    rng = np.random.default_rng(seed)

    def sample(spec: Any) -> np.ndarray:
        dims = list(spec.shape)
        shape = [SAMPLE_BATCH_SIZE] + [OPEN_DIMENSION_SIZE if dim is None else int(dim) for dim in dims[1:]]
        dtype = keras.backend.standardize_dtype(spec.dtype)
        if "float" in dtype:
            return rng.standard_normal(shape).astype(dtype)
        return np.ones(shape, dtype=dtype)

    return keras.tree.map_structure(sample, structure)


def _is_data_tensor(value: Any) -> bool:
    if not keras.ops.is_tensor(value):
        return False
    return "float" in keras.backend.standardize_dtype(value.dtype)


def _data_tensors(args: tuple, kwargs: Mapping[str, Any]) -> list[Any]:
    """The floating-point tensors among a call's arguments (masks and ``training`` left out)."""
    values = list(args) + [
        value for key, value in kwargs.items() if key not in _MASK_ARGUMENTS and not key.endswith(_MASK_SUFFIX)
    ]
    return [value for value in keras.tree.flatten(values) if _is_data_tensor(value)]


def _root_mean_square_of(tensor: Any) -> float:
    """``sqrt(mean(x^2))`` of a tensor (1 for an empty one)."""
    values = np.asarray(backend.current().to_numpy(tensor), dtype=np.float64)
    if values.size == 0:
        return 1.0
    return float(np.sqrt(np.mean(np.square(values))))


def _output_tensors(outputs: Any) -> list[Any]:
    return [value for value in keras.tree.flatten(outputs) if keras.ops.is_tensor(value)]


class CallPatcher:
    """Replaces the ``call`` of layers and operations for one traced pass, and puts them back.

    ``wrap(target, traced)`` sets ``target.call = traced(target.call)`` on the instance
    (keeping the signature Keras inspects); ``restore()`` undoes every wrap, last first.
    """

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def wrap(self, target: Any, traced: Callable[[Callable], Callable]) -> None:
        original = target.call
        had_own_call = "call" in vars(target)
        wrapper = traced(original)
        try:
            wrapper.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            pass
        object.__setattr__(target, "call", wrapper)

        def undo() -> None:
            if had_own_call:
                object.__setattr__(target, "call", original)
            else:
                object.__delattr__(target, "call")

        self._undo.append(undo)

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


class _Trace(CallPatcher):
    """The bookkeeping of one traced forward pass."""

    def __init__(self, measure_data: bool) -> None:
        super().__init__()
        self.produced: dict[int, tuple[str | None, FeedingActivation]] = {}
        self.alive: list[Any] = []
        self.order: list[str] = []
        self.calls: dict[str, int] = {}
        self.inputs: dict[str, tuple[str | None, ...]] = {}
        self.feeding: dict[str, FeedingActivation] = {}
        self.outputs: dict[str, FeedingActivation] = {}
        self.measure_data = measure_data
        self.before_weights: set[int] = set()
        self.weights_ran = False

    def source(self, tensor: Any) -> tuple[str | None, FeedingActivation]:
        known = self.produced.get(id(tensor))
        if known is not None:
            return known
        if self.measure_data and not self.weights_ran:  # the data itself, as the model received it
            self.before_weights.add(id(tensor))
            self.alive.append(tensor)
            return None, FeedingActivation(scale=_root_mean_square_of(tensor))
        return None, LINEAR

    def data_only(self, tensors: list[Any]) -> bool:
        """Whether tensors were computed from the data alone (no weight on their path yet)."""
        return bool(tensors) and all(id(tensor) in self.before_weights for tensor in tensors)

    def record_data(self, tensors: list[Any], path: str | None) -> None:
        """Record tensors that no weight touched, each with its measured root mean square."""
        for tensor in tensors:
            self.before_weights.add(id(tensor))
            self.record([tensor], path, FeedingActivation(source=path, scale=_root_mean_square_of(tensor)))

    def record(self, tensors: list[Any], path: str | None, activation: FeedingActivation) -> None:
        for tensor in tensors:
            self.produced[id(tensor)] = (path, activation)
            self.alive.append(tensor)

    def layer(self, path: str, layer: keras.layers.Layer, kind: str, has_kernel: bool) -> Callable:
        def traced(original: Callable) -> Callable:
            def call(*args: Any, **kwargs: Any) -> Any:
                first = path not in self.calls
                self.calls[path] = self.calls.get(path, 0) + 1
                data = _data_tensors(args, kwargs)
                if first:
                    self.order.append(path)
                    sources = [self.source(tensor) for tensor in data]
                    self.inputs[path] = tuple(source for source, _ in sources)
                    self.feeding[path] = _merge([activation for _, activation in sources])
                outputs = original(*args, **kwargs)
                tensors = _output_tensors(outputs)
                if first:
                    inner = [self.produced.get(id(tensor), (None, LINEAR))[1] for tensor in tensors]
                    self.outputs[path] = _node_output(
                        layer, path, kind, has_kernel, self.feeding[path], [activation for _, activation in sources], inner
                    )
                if has_kernel:
                    self.weights_ran = True
                if kind != "container" and not has_kernel and self.data_only(data):
                    self.record_data(tensors, path)
                else:
                    self.record(tensors, path, self.outputs[path])
                return outputs

            return call

        return traced

    def operation(self, operation: Any) -> Callable:
        def traced(original: Callable) -> Callable:
            def call(*args: Any, **kwargs: Any) -> Any:
                data = _data_tensors(args, kwargs)
                sources = [self.source(tensor) for tensor in data]
                merged = _merge([activation for _, activation in sources])
                activation = _operation_activation(operation, merged.source) or merged
                outputs = original(*args, **kwargs)
                path = sources[0][0] if sources else None
                if self.data_only(data):
                    self.record_data(_output_tensors(outputs), path)
                else:
                    self.record(_output_tensors(outputs), path, activation)
                return outputs

            return call

        return traced


def _node_output(
    layer: keras.layers.Layer,
    path: str,
    kind: str,
    has_kernel: bool,
    feeding: FeedingActivation,
    sources: list[FeedingActivation],
    inner: list[FeedingActivation],
) -> FeedingActivation:
    """The activation of a node's output (the rules are in the module docstring)."""
    if kind == "container":
        return _merge(inner)
    if isinstance(layer, keras.layers.BatchNormalization):
        return _batch_normalization_output(layer, path, feeding)
    if kind == "normalization":
        return FeedingActivation(source=path)
    if kind == "merge" and sources:
        return _merge_layer_output(layer, path, sources)
    own = own_activation(layer, path)
    if has_kernel:
        return own or FeedingActivation(source=path)
    if own is not None and feeding.same_law(LINEAR) and _is_homogeneous(own):
        return dataclasses.replace(own, scale=feeding.scale)
    if own is not None:
        return own
    return feeding


def _batch_normalization_output(
    layer: keras.layers.BatchNormalization, path: str, feeding: FeedingActivation
) -> FeedingActivation:
    """A batch normalization as it acts at inference: ``gamma x / sqrt(moving_variance + eps)``.

    An identity with fresh statistics, so the scale of its input goes on (linear, since the
    output is affine in the input). In training mode it re-standardizes instead, and then
    nothing before it matters for the forward variance.
    """
    root_mean_square = _root_mean_square(feeding)
    if root_mean_square is None:
        return FeedingActivation(source=path)
    to_numpy = backend.current().to_numpy
    factor = 1.0 / np.sqrt(np.asarray(to_numpy(layer.moving_variance), dtype=np.float64) + layer.epsilon)
    if layer.scale:
        factor = factor * np.asarray(to_numpy(layer.gamma), dtype=np.float64)
    return FeedingActivation(source=path, scale=root_mean_square * float(np.sqrt(np.mean(np.square(factor)))))


def _functional_operations(layer: keras.layers.Layer) -> list[Any]:
    """The non-layer operations of a Functional graph (``keras.ops`` on symbolic tensors)."""
    functional = getattr(layer, "_functional", None) if isinstance(layer, keras.Sequential) else layer
    operations = getattr(functional, "_operations", None) or []
    return [operation for operation in operations if not isinstance(operation, keras.layers.Layer)]


def model_graph(model: keras.layers.Layer, x: Any = None) -> ModelGraph:
    """Trace ``model`` once and describe every layer in data-flow order.

    Runs one eager forward pass in inference mode (see the module docstring for how data
    flow, feeding activations and unseen ops are handled). Weights are not changed; layers'
    ``call`` methods are restored also when the pass fails.

    Args:
        model: A built Keras model (Sequential, Functional, subclassed, nested) or a layer
            with sub-layers.
        x: The batch to trace with; by default :func:`sample_inputs` (two samples), whose
            scale is taken as 1. A batch given here is also *measured*: every tensor
            computed from the data alone (the inputs and the weightless preprocessing
            before the first kernel: ``Rescaling``, ``Normalization``, padding...) carries
            its root mean square as its ``scale``, so the first kernels can start the
            signal at unit variance whatever the data's range.

    Returns:
        A :class:`ModelGraph`.

    Raises:
        ValueError: for a model that is not built, or whose inputs are unknown and no ``x``
            is given.
        TypeError: if ``model`` is not a Keras layer.

    Examples:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> left = keras.layers.Dense(4, activation="tanh", name="left")(inputs)
    >>> right = keras.layers.Dense(4, activation="tanh", name="right")(inputs)
    >>> merged = keras.layers.Add(name="add")([left, right])
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="out")(merged))
    >>> graph = model_graph(model)
    >>> graph["add"].kind, graph["add"].inputs, graph["out"].feeding.activation
    ('merge', ('left', 'right'), 'tanh')
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model must be a Keras model or layer. Received: model={model!r}")
    if not model.built:
        raise ValueError(
            "The model graph needs a built model (call it on data or use keras.Input). "
            f"Received: model={model.name!r}, which is not built"
        )
    measure_data = x is not None
    if x is None:
        x = sample_inputs(model)
    tree = _tree(model, children)
    child_paths: dict[str | None, list[str]] = {}
    for path, parent, _ in tree:
        child_paths.setdefault(parent, []).append(path)
    parents = {path: parent for path, parent, _ in tree}
    layers = {path: layer for path, _, layer in tree}
    weights = {
        path: layer_weights(layer, path, model if parent is None else layers[parent])
        for path, parent, layer in tree
    }
    kinds = {path: _kind(layer, bool(child_paths.get(path))) for path, layer in layers.items()}

    trace = _Trace(measure_data)
    top = "<model>"
    try:
        for path, layer in layers.items():
            has_kernel = any(weight.role in DRAWN_ROLES for weight in weights[path])
            trace.wrap(layer, trace.layer(path, layer, kinds[path], has_kernel))
        trace.wrap(model, trace.layer(top, model, "container", False))
        for container in [model, *layers.values()]:
            for operation in _functional_operations(container):
                trace.wrap(operation, trace.operation(operation))
        model(x, training=False)
    finally:
        trace.restore()

    ordered = [path for path in trace.order if path != top]
    ordered += [path for path in layers if path not in trace.calls]
    nodes = {
        path: Node(
            path=path,
            layer=layers[path],
            kind=kinds[path],
            parent=parents[path],
            children=tuple(child_paths.get(path, ())),
            weights=weights[path],
            inputs=trace.inputs.get(path, ()),
            feeding=trace.feeding.get(path, LINEAR),
            output_activation=trace.outputs.get(path, LINEAR),
            calls=trace.calls.get(path, 0),
        )
        for path in ordered
    }
    return ModelGraph(model=model, nodes=nodes, output_activation=trace.outputs.get(top, LINEAR))
