"""Residual structure: every residual merge of a model, its skip path, its branch and its last kernel.

A *residual merge* adds a branch to the stream it forked from: ``y = skip(x) + branch(x)``.
:func:`residual_structure` finds every one in a model by tracing one eager forward pass,
the same way :func:`keras_inits.model.graph.model_graph` does (``call`` wrapped on every layer
instance and on every operation of a Functional graph), and follows each tensor back to the
tensors it was computed from.

What the trace sees
-------------------

* A ``keras.layers.Add`` layer with two inputs, and the ``+`` / ``keras.ops.add`` of two
  tensors in a Functional graph (an ``Add`` operation of the graph): seen as such, in
  Sequential, Functional and nested models. The merge's path is the layer's path, or the
  operation's name under the path of the model that holds it (``inner/add``).
* The ``+`` of two tensors inside the ``call`` of a subclassed layer or model (keras-hub's
  ``TransformerEncoder``/``TransformerDecoder``, a residual block written by hand): an op the
  trace cannot see. It is found *by value*: a tensor that no layer returned, when it enters
  a layer or is returned by the layer whose ``call`` made it, is compared with the sums of
  two tensors of its shape that the same ``call`` received or computed (the most recent
  first), to a relative :data:`SUM_TOLERANCE`. Such a merge's path is the path of the layer
  whose ``call`` holds it, then ``+`` and its index in that call: ``transformer_layer_0/+0``
  (attention), ``transformer_layer_0/+1`` (feed-forward); ``+0`` for the model's own call.
* What the trace cannot see: a sum consumed by another unseen op before any layer receives
  it (``ops.reshape(x + r)``); a sum of more than two tensors in one expression (``a + b + c``
  is found as ``(a + b) + c`` only if a layer receives ``a + b``); and the data flow through
  unseen ops. A tensor no layer returned that is a common activation (relu, relu6,
  leaky_relu, tanh, sigmoid, silu, softplus, elu, selu, mish, gelu; Keras's default
  arguments) of one of the two most recent tensors of its shape in the same ``call`` is
  found by value too, and comes from that tensor alone. Any other such tensor (a reshape,
  an einsum inside attention, a scaled tensor, an activation with other arguments) is taken
  as computed from every tensor its ``call`` received or computed before it. That is exact
  for attention (everything in it comes from its inputs) and can make a skip projection an
  ancestor of the branch (then read as an identity skip with a shorter branch) in a
  subclassed block that applies such an op after the projection: there, use a layer
  (``Activation``, ``Reshape``, ...) so that the trace sees it.
  A branch whose output is exactly zero (a zero last kernel and a zero bias, as after
  ``"fixup"``) still matches, through the most recent zero tensor.

The rule for skip and branch
----------------------------

Of the two summands, the **skip** is the one the other was computed from (an identity
skip: the stream itself). When neither comes from the other (a projection shortcut, where
the skip has a ``Conv``), each summand's *own path* is the set of tensors that lead to it and
not to the other summand; the **branch** is the summand whose own path holds more layers
with a kernel (ties: the summand computed last), the skip the other. The two summands must
share an ancestor (two independent inputs added are not a residual merge), and the branch
must hold at least one layer with a kernel (:data:`keras_inits.model.graph.KERNEL_ROLES`;
a position embedding added to a token embedding is not a residual block).

**Branch layers** are the layers that produced a tensor of the branch (after the fork, up
to the summand), containers included (``transformer_layer_0/self_attention``), in the order
their first call started. **Kernels** are the kernel weights of those layers in that
order (each layer's own kernel weights: a container's sub-layers are branch layers of their
own); ``m``
counts the layers that own them; the **last kernel** is the last of them (the
attention's output projection, the feed-forward's output ``Dense``, a ResNet branch's last
``Conv``). **Depth index**: the merges in the order they ran, 0 first.

The **classifier** is the last layer with a kernel that the model calls after its last
merge and that lies outside every branch (``None`` when the last kernel is in a branch, as
in a ``GPT2Backbone``; a ``BertBackbone``'s is its pooler, ``pooled_dense``).

Measured (Keras 3.15, keras-hub 0.32; tests on every backend): tiny ``GPT2Backbone`` and
``BertBackbone`` (2 layers): 4 merges, attention (``m = 4``) then feed-forward (``m = 2``)
per layer; ``TransformerDecoder`` with cross attention: 3 merges (the cross-attention branch
holds the query and output projections, ``m = 2``); ``keras.applications.ResNet50V2``
(``weights=None``, 64x64): 16 blocks, ``m = 3``, 4 projection and 3 pooling shortcuts,
classifier ``predictions`` (TensorFlow); a 48-layer ``GPT2Backbone`` (hidden 64): 96 merges,
traced in 1.9 s (TensorFlow).

Examples:

>>> import keras
>>> inputs = keras.Input((8,))
>>> hidden = keras.layers.Dense(8, activation="relu", name="first")(inputs)
>>> hidden = keras.layers.Dense(8, name="second")(hidden)
>>> merged = keras.layers.Add(name="add")([inputs, hidden])
>>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(merged))
>>> structure = residual_structure(model)
>>> block = structure.blocks[0]
>>> block.merge, block.branch, block.m, block.last_kernel.path
('add', ('first', 'second'), 2, 'second/kernel')
>>> structure.classifier
'head'
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np

from keras_inits import backend
from keras_inits.activations import CLOSED_FORMS
from keras_inits.model.graph import (
    KERNEL_ROLES,
    CallPatcher,
    Weight,
    _data_tensors,
    _functional_operations,
    _output_tensors,
    _tree,
    children,
    layer_weights,
    sample_inputs,
)

__all__ = [
    "SUM_TOLERANCE",
    "ResidualBlock",
    "ResidualStream",
    "ResidualStructure",
    "provably_without_merges",
    "residual_blocks",
    "residual_stream",
    "residual_structure",
]

#: Relative tolerance of the by-value test ``u == a + b`` for sums the trace cannot see
#: (``max |u - (a + b)| <= SUM_TOLERANCE * max(|u|)``): float32 rounding is ~1e-7.
SUM_TOLERANCE = 1e-5
#: Class name of the addition operation of a Functional graph (``x + y``, ``keras.ops.add``).
_ADD_OPERATION = "Add"
#: Activations recognised by value when a ``call`` applies them as bare ops
#: (``keras.ops.relu(x)``), cheapest first, with their Keras default arguments.
_BARE_ACTIVATIONS: tuple[tuple[str, dict], ...] = (
    ("relu", {}),
    ("relu6", {}),
    ("leaky_relu", {}),
    ("tanh", {}),
    ("sigmoid", {}),
    ("silu", {}),
    ("softplus", {}),
    ("elu", {}),
    ("selu", {}),
    ("mish", {}),
    ("gelu", {"approximate": True}),
    ("gelu", {}),
)
#: How many of the most recent tensors of a call's scope are tried as the argument of a bare activation.
_ACTIVATION_CANDIDATES = 2
_MERGE_INPUTS = 2


@dataclasses.dataclass(frozen=True)
class ResidualBlock:
    """One residual merge ``y = skip + branch`` and what its branch holds.

    Attributes:
        index: Depth index: 0, 1, ... in the order the merges ran.
        merge: Path of the merge: an ``Add`` layer, a Functional ``Add`` operation's name, or
            ``container/+k`` for the ``k``-th ``+`` inside the ``call`` of ``container``.
        container: Path of the layer whose ``call`` holds the merge (``None``: the model).
        branch: Paths of the branch's layers, in call order.
        skip: Paths of the layers on the skip path (empty for an identity skip).
        kernels: The branch's kernel weights, in call order.
        attention: Whether the branch holds a ``keras.layers.MultiHeadAttention`` (keras-hub's
            attention layers are subclasses).
    """

    index: int
    merge: str
    container: str | None
    branch: tuple[str, ...]
    skip: tuple[str, ...]
    kernels: tuple[Weight, ...]
    attention: bool

    @property
    def last_kernel(self) -> Weight:
        """The branch's last kernel weight (the one residual schemes zero or scale)."""
        return self.kernels[-1]

    @property
    def last_layer(self) -> str:
        """Path of the branch's last layer with a kernel."""
        return self.last_kernel.path.rsplit("/", 1)[0]

    @property
    def m(self) -> int:
        """The number of branch layers with a kernel."""
        return len({weight.path.rsplit("/", 1)[0] for weight in self.kernels})


@dataclasses.dataclass(frozen=True)
class ResidualStructure:
    """Every residual block of a model, and its classifier.

    Attributes:
        blocks: The blocks in depth order.
        classifier: Path of the last kernel layer called after the last merge and outside
            every branch, or ``None``.
        classifier_weights: That layer's weights (kernel and bias), empty without one.
    """

    blocks: tuple[ResidualBlock, ...]
    classifier: str | None
    classifier_weights: tuple[Weight, ...]


@dataclasses.dataclass
class _Tensor:
    """One tensor of the traced pass: the tensors it came from and the layers that returned it."""

    value: Any
    parents: tuple[int, ...]
    producers: list[str]


@dataclasses.dataclass(frozen=True)
class ResidualStream:
    """The residual structure of a model and the values of its stream on one batch.

    Attributes:
        structure: The model's :class:`ResidualStructure`.
        entering: Per block, the stream entering it: the latest tensor both summands were
            computed from (the skip summand itself for an identity skip), float32 NumPy.
        outputs: Per block, the merge's output (the stream after the block), float32 NumPy.
    """

    structure: ResidualStructure
    entering: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]


@dataclasses.dataclass
class _Merge:
    path: str
    container: str | None
    summands: tuple[int, int]
    output: int


class _Flow(CallPatcher):
    """The tensor-level bookkeeping of one traced forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.tensors: list[_Tensor] = []
        self.by_id: dict[int, int] = {}
        self.alive: list[Any] = []
        self.scopes: list[tuple[str | None, list[int]]] = []
        self.sums: dict[str | None, int] = {}
        self.merges: list[_Merge] = []
        self.first_call: dict[str, int] = {}
        self.calls = 0
        self._arrays: dict[int, np.ndarray] = {}

    # the tensors -------------------------------------------------------------------

    def add(self, tensor: Any, parents: tuple[int, ...], producers: list[str]) -> int:
        index = len(self.tensors)
        self.tensors.append(_Tensor(tensor, parents, producers))
        self.by_id[id(tensor)] = index
        self.alive.append(tensor)
        for _, members in self.scopes:
            members.append(index)
        return index

    def array(self, index: int) -> np.ndarray:
        if index not in self._arrays:
            values = backend.current().to_numpy(self.tensors[index].value)
            self._arrays[index] = np.asarray(values, dtype=np.float64)
        return self._arrays[index]

    def known(self, tensor: Any) -> int | None:
        return self.by_id.get(id(tensor))

    def resolve(self, tensor: Any) -> int:
        """The index of a tensor; a tensor no layer returned is matched as a sum, else an unseen op."""
        index = self.known(tensor)
        if index is not None:
            return index
        container, members = self.scopes[-1] if self.scopes else (None, [])
        value = np.asarray(backend.current().to_numpy(tensor), dtype=np.float64)
        summands = self._sum_of(value, members)
        if summands is None:
            argument = self._activation_argument(value, members)
            parents = tuple(members) if argument is None else (argument,)
            return self.add(tensor, parents, [])
        index = self.add(tensor, summands, [])
        count = self.sums.get(container, 0)
        self.sums[container] = count + 1
        prefix = "" if container is None else container + "/"
        self.merges.append(_Merge(f"{prefix}+{count}", container, summands, index))
        return index

    def _same_shape_recent(self, value: np.ndarray, members: list[int]) -> list[int]:
        """The distinct tensors among ``members`` of ``value``'s shape, the most recent first."""
        recent = dict.fromkeys(reversed(members))
        return [index for index in recent if self.array(index).shape == value.shape]

    def _sum_of(self, value: np.ndarray, members: list[int]) -> tuple[int, int] | None:
        """Two tensors among ``members`` whose sum is ``value`` (the most recent first).

        A pair is compared element by element only when the totals of its entries add up
        (one scalar test per pair), so a tensor that is no sum costs little.
        """
        candidates = self._same_shape_recent(value, members)
        if value.size == 0 or len(candidates) < _MERGE_INPUTS:
            return None
        limit = SUM_TOLERANCE * max(float(np.max(np.abs(value))), np.finfo(np.float32).tiny)
        totals = np.array([float(np.sum(self.array(index))) for index in candidates])
        total_limit = limit * value.size
        total = float(np.sum(value))
        for position, later in enumerate(candidates):
            close = np.abs(totals[position + 1 :] - (total - totals[position])) <= total_limit
            rest = value - self.array(later)
            for offset in np.flatnonzero(close):
                earlier = candidates[position + 1 + int(offset)]
                if np.max(np.abs(rest - self.array(earlier))) <= limit:
                    return earlier, later
        return None

    def _activation_argument(self, value: np.ndarray, members: list[int]) -> int | None:
        """The tensor ``value`` is an activation of, among the most recent of ``members``."""
        recent = self._same_shape_recent(value, members)
        if value.size == 0:
            return None
        limit = SUM_TOLERANCE * max(float(np.max(np.abs(value))), np.finfo(np.float32).tiny)
        for index in recent[:_ACTIVATION_CANDIDATES]:
            argument = self.array(index)
            for name, kwargs in _BARE_ACTIVATIONS:
                phi = CLOSED_FORMS[name](**kwargs)[0]
                if np.max(np.abs(value - phi(argument))) <= limit:
                    return index
        return None

    # the wrappers ------------------------------------------------------------------

    def layer(self, path: str, layer: keras.layers.Layer, is_container: bool) -> Callable:
        def traced(original: Callable) -> Callable:
            def call(*args: Any, **kwargs: Any) -> Any:
                if path not in self.first_call:
                    self.first_call[path] = self.calls
                self.calls += 1
                inputs = tuple(self.resolve(tensor) for tensor in _data_tensors(args, kwargs))
                if is_container:
                    return self._container_call(path, original, inputs, args, kwargs)
                outputs = original(*args, **kwargs)
                added = [self.add(tensor, inputs, [path]) for tensor in _output_tensors(outputs)]
                if isinstance(layer, keras.layers.Add) and len(inputs) == _MERGE_INPUTS and added:
                    container = self.scopes[-1][0] if self.scopes else None
                    self.merges.append(_Merge(path, container, inputs, added[0]))
                return outputs

            return call

        return traced

    def _container_call(
        self, path: str | None, original: Callable, inputs: tuple[int, ...], args: tuple, kwargs: dict
    ) -> Any:
        self.scopes.append((path, list(inputs)))
        try:
            outputs = original(*args, **kwargs)
            for tensor in _output_tensors(outputs):
                index = self.resolve(tensor)
                if path is not None:
                    self.tensors[index].producers.append(path)
        finally:
            self.scopes.pop()
        return outputs

    def model(self, original: Callable) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            inputs = tuple(self.resolve(tensor) for tensor in _data_tensors(args, kwargs))
            return self._container_call(None, original, inputs, args, kwargs)

        return call

    def operation(self, operation: Any, container: str | None) -> Callable:
        def traced(original: Callable) -> Callable:
            def call(*args: Any, **kwargs: Any) -> Any:
                inputs = tuple(self.resolve(tensor) for tensor in _data_tensors(args, kwargs))
                outputs = original(*args, **kwargs)
                tensors = _output_tensors(outputs)
                added = [self.add(tensor, inputs, []) for tensor in tensors]
                is_sum = type(operation).__name__ == _ADD_OPERATION and len(inputs) == _MERGE_INPUTS
                if is_sum and tensors and self._same_shape(inputs, tensors[0]):
                    prefix = "" if container is None else container + "/"
                    self.merges.append(_Merge(prefix + operation.name, container, inputs, added[0]))
                return outputs

            return call

        return traced

    def _same_shape(self, inputs: tuple[int, ...], output: Any) -> bool:
        shape = tuple(output.shape)
        return all(tuple(self.tensors[index].value.shape) == shape for index in inputs)

    # the analysis ------------------------------------------------------------------

    def ancestors(self) -> list[frozenset[int]]:
        """Per tensor, every tensor it was computed from (tensors are in creation order)."""
        found: list[frozenset[int]] = []
        for tensor in self.tensors:
            lineage: set[int] = set(tensor.parents)
            for parent in tensor.parents:
                lineage |= found[parent]
            found.append(frozenset(lineage))
        return found


def _kernel_weights(weights: dict[str, tuple[Weight, ...]], path: str) -> tuple[Weight, ...]:
    return tuple(weight for weight in weights.get(path, ()) if weight.role in KERNEL_ROLES)


def _producers(flow: _Flow, indices: set[int]) -> list[str]:
    paths = {path for index in indices for path in flow.tensors[index].producers}
    return sorted(paths, key=lambda path: flow.first_call.get(path, len(flow.first_call)))


def _kernel_layers(paths: list[str], weights: dict[str, tuple[Weight, ...]]) -> int:
    return sum(1 for path in paths if _kernel_weights(weights, path))


def _split(
    flow: _Flow, merge: _Merge, ancestors: list[frozenset[int]], weights: dict[str, tuple[Weight, ...]]
) -> tuple[set[int], set[int]] | None:
    """``(branch tensors, skip tensors)`` of a merge, or ``None`` if it is not residual."""
    first, second = merge.summands
    if first == second:
        return None
    for skip, end in ((first, second), (second, first)):
        if skip in ancestors[end]:
            branch = {index for index in ancestors[end] | {end} if skip in ancestors[index]}
            return branch, set()
    if not ancestors[first] & ancestors[second]:
        return None
    own_first = (ancestors[first] | {first}) - ancestors[second]
    own_second = (ancestors[second] | {second}) - ancestors[first]
    kernels_first = _kernel_layers(_producers(flow, own_first), weights)
    kernels_second = _kernel_layers(_producers(flow, own_second), weights)
    if kernels_first > kernels_second:
        return own_first, own_second
    return own_second, own_first


def residual_structure(model: keras.layers.Layer, x: Any = None) -> ResidualStructure:
    """Find every residual merge of ``model``, its skip path, its branch and its last kernel.

    Runs one eager forward pass in inference mode (weights are not changed; ``call`` is
    restored also when the pass fails). The module docstring says what the trace sees, the
    rule for skip and branch, and what ``m``, the last kernel and the classifier are.

    Args:
        model: A built Keras model (Sequential, Functional, subclassed, nested) or a layer
            with sub-layers.
        x: The batch to trace with; by default
            :func:`keras_inits.model.graph.sample_inputs` (two samples).

    Returns:
        A :class:`ResidualStructure` (its ``blocks`` empty for a model without residual merges).

    Raises:
        ValueError: for a model that is not built, or whose inputs are unknown and no ``x``
            is given.
        TypeError: if ``model`` is not a Keras layer.

    Examples:

    >>> import keras
    >>> class Block(keras.layers.Layer):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.inner = keras.layers.Dense(4, activation="relu", name="inner")
    ...         self.outer = keras.layers.Dense(4, name="outer")
    ...     def call(self, x):
    ...         return x + self.outer(self.inner(x))
    >>> model = keras.Sequential([keras.Input((4,)), Block(name="block")])
    >>> [(block.merge, block.branch) for block in residual_blocks(model)]
    [('block/+0', ('block/inner', 'block/outer'))]
    """
    flow, layers, weights = _trace(model, x, training=False)
    return _structure(flow, layers, weights, flow.ancestors())[0]


def provably_without_merges(model: keras.layers.Layer) -> bool:
    """Whether the structure alone shows that ``model`` has no residual merge (no trace needed).

    True for a ``keras.Sequential`` or Functional model, nested ones included, in which every
    layer is one of Keras's own layers without sub-layers and none is ``keras.layers.Add``, and
    whose graphs hold no operation other than layers (no ``x + y`` on symbolic tensors). Such a
    model cannot hold a merge that :func:`residual_structure` would find: its layers' outputs
    are returned by the layers themselves, so no sum is looked for by value. Anything else (a
    subclassed model or layer, keras-hub's blocks, Keras's composite layers, a Functional
    ``+``) may, and the trace decides. Reads the model only; runs nothing.

    Examples:

    >>> import keras
    >>> plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d")])
    >>> provably_without_merges(plain)
    True
    >>> inputs = keras.Input((4,))
    >>> provably_without_merges(keras.Model(inputs, inputs + keras.layers.Dense(4)(inputs)))
    False
    """
    for path, layer in [(None, model), *_tree_layers(model)]:
        if isinstance(layer, keras.Model):
            if type(layer) is not keras.Sequential and type(layer).__name__ != "Functional":
                return False  # a subclassed model (or a subclass of Sequential/Functional)
            if _functional_operations(layer):
                return False
        elif (
            isinstance(layer, keras.layers.Add)
            or not type(layer).__module__.startswith("keras.src.layers.")
            or children(layer)
        ):
            return False
    return True


def _tree_layers(model: keras.layers.Layer) -> list[tuple[str, keras.layers.Layer]]:
    return [(path, layer) for path, _, layer in _tree(model, children)]


def residual_stream(
    model: keras.layers.Layer, x: Any = None, *, training: bool = False
) -> ResidualStream:
    """The residual structure of ``model`` and its stream on ``x``, from one traced pass.

    The same eager pass as :func:`residual_structure`, which also keeps, per block, the
    stream entering it and the merge's output (the stream after the block).

    Args:
        model: A built Keras model or a layer with sub-layers.
        x: The batch to trace with; by default
            :func:`keras_inits.model.graph.sample_inputs` (two samples).
        training: Trace in training mode (the caller restores any state it changes).

    Returns:
        A :class:`ResidualStream` (empty tuples for a model without residual merges).

    Raises:
        ValueError: as :func:`residual_structure`.
        TypeError: as :func:`residual_structure`.

    Examples:

    >>> import keras, numpy as np
    >>> inputs = keras.Input((4,))
    >>> branch = keras.layers.Dense(4, name="branch")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Add(name="add")([inputs, branch]))
    >>> stream = residual_stream(model, np.ones((3, 4), "float32"))
    >>> stream.entering[0].shape, stream.outputs[0].shape
    ((3, 4), (3, 4))
    """
    flow, layers, weights = _trace(model, x, training=training)
    ancestors = flow.ancestors()
    structure, merges = _structure(flow, layers, weights, ancestors)
    read = backend.current().to_numpy
    entering = []
    outputs = []
    for merge in merges:
        first, second = merge.summands
        fork = max((ancestors[first] | {first}) & (ancestors[second] | {second}))
        entering.append(np.asarray(read(flow.tensors[fork].value), dtype=np.float32))
        outputs.append(np.asarray(read(flow.tensors[merge.output].value), dtype=np.float32))
    return ResidualStream(structure, tuple(entering), tuple(outputs))


def _trace(
    model: keras.layers.Layer, x: Any, *, training: bool
) -> tuple[_Flow, dict[str, keras.layers.Layer], dict[str, tuple[Weight, ...]]]:
    """One eager forward pass of ``model`` with every layer, model and operation traced."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model must be a Keras model or layer. Received: model={model!r}")
    if not model.built:
        raise ValueError(
            "The residual structure needs a built model (call it on data or use keras.Input). "
            f"Received: model={model.name!r}, which is not built"
        )
    if x is None:
        x = sample_inputs(model)
    tree = _tree(model, children)
    layers = {path: layer for path, _, layer in tree}
    parents = {path: parent for path, parent, _ in tree}
    containers = {parent for parent in parents.values() if parent is not None}
    weights = {
        path: layer_weights(layer, path, model if parents[path] is None else layers[parents[path]])
        for path, layer in layers.items()
    }
    flow = _Flow()
    try:
        for path, layer in layers.items():
            flow.wrap(layer, flow.layer(path, layer, path in containers))
        flow.wrap(model, flow.model)
        for container_path, container in [(None, model), *layers.items()]:
            for operation in _functional_operations(container):
                flow.wrap(operation, flow.operation(operation, container_path))
        model(x, training=training)
    finally:
        flow.restore()
    return flow, layers, weights


def _structure(
    flow: _Flow,
    layers: dict[str, keras.layers.Layer],
    weights: dict[str, tuple[Weight, ...]],
    ancestors: list[frozenset[int]],
) -> tuple[ResidualStructure, list[_Merge]]:
    """The structure, and the merge of each of its blocks."""
    blocks: list[ResidualBlock] = []
    kept: list[_Merge] = []
    in_branches: set[str] = set()
    for merge in flow.merges:
        split = _split(flow, merge, ancestors, weights)
        if split is None:
            continue
        branch_tensors, skip_tensors = split
        branch = _producers(flow, branch_tensors)
        kernels = tuple(weight for path in branch for weight in _kernel_weights(weights, path))
        if not kernels:
            continue
        attention = any(isinstance(layers[path], keras.layers.MultiHeadAttention) for path in branch)
        skip = tuple(path for path in _producers(flow, skip_tensors) if path not in branch)
        block = ResidualBlock(len(blocks), merge.path, merge.container, tuple(branch), skip, kernels, attention)
        blocks.append(block)
        kept.append(merge)
        in_branches.update(branch)
    classifier = _classifier(flow, blocks, in_branches, weights)
    classifier_weights = () if classifier is None else tuple(
        weight for weight in weights[classifier] if weight.role in KERNEL_ROLES or weight.role == "bias"
    )
    return ResidualStructure(tuple(blocks), classifier, classifier_weights), kept


def _classifier(
    flow: _Flow, blocks: list[ResidualBlock], in_branches: set[str], weights: dict[str, tuple[Weight, ...]]
) -> str | None:
    if not blocks:
        return None
    last_merge = max(flow.first_call.get(path, -1) for block in blocks for path in block.branch)
    ordered = sorted(flow.first_call, key=flow.first_call.get)
    kernel_layers = [path for path in ordered if _kernel_weights(weights, path)]
    if not kernel_layers:
        return None
    last = kernel_layers[-1]
    if last in in_branches or flow.first_call[last] <= last_merge:
        return None
    return last


def residual_blocks(model: keras.layers.Layer, x: Any = None) -> list[ResidualBlock]:
    """Every residual block of ``model`` in depth order (:func:`residual_structure`'s ``blocks``).

    Examples:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> branch = keras.layers.Dense(4, name="branch")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Add(name="add")([inputs, branch]))
    >>> [(block.index, block.merge, block.branch, block.m) for block in residual_blocks(model)]
    [(0, 'add', ('branch',), 1)]
    """
    return list(residual_structure(model, x).blocks)
