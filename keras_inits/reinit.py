"""Whole-model activation-aware re-initialization, on the model graph.

A per-layer ``kernel_initializer`` sees only the kernel's shape; the He/Xavier derivation
needs the activation that produced the layer's *input* and the weight's true fans.
``reinitialize`` asks :mod:`keras_inits.model.graph` for both, for every kernel-like weight
of the model (kernels, depthwise and pointwise kernels, recurrent kernels, attention
projections, embedding tables), re-draws each, and says what it drew and what it left alone.
With ``residual=``, a residual scheme (Fixup, SkipInit, GPT-2's depth scaling, DeepNet) then
zeroes or scales the branch kernels that :mod:`keras_inits.model.residual` finds.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Literal, Mapping

import keras

from keras_inits import _checks, backend
from keras_inits._probe import check_inputs
from keras_inits._seeds import derive_seed
from keras_inits.initializers import TRUNCATED_NORMAL_STD, He, Xavier
from keras_inits.model.graph import (
    KERNEL_LAYOUTS,
    FLOAT_DTYPES,
    FeedingActivation,
    ModelGraph,
    Node,
    Weight,
    model_graph,
)
from keras_inits.model.residual import ResidualStructure, residual_structure

__all__ = [
    "reinitialize",
    "FeedingActivation",
    "DrawnWeight",
    "SkippedWeight",
    "ResidualChange",
    "ReinitReport",
]

Method = Literal["he", "xavier"]
Mode = Literal["fan_in", "fan_out"]

Residual = Literal["fixup", "zero", "depth_scaled", "deepnet"]

_METHODS = ("he", "xavier")
_MODES = ("fan_in", "fan_out")
_RESIDUALS = ("fixup", "zero", "depth_scaled", "deepnet")
#: The attention projections DeepNet scales (besides every kernel of a feed-forward branch).
DEEPNET_ATTENTION_ROLES = ("attention_value", "attention_output")
#: DeepNet's ``beta = (DEEPNET_DEPTH_FACTOR N)^DEEPNET_EXPONENT`` (encoder-only and decoder-only).
DEEPNET_DEPTH_FACTOR = 8
DEEPNET_EXPONENT = -0.25

#: Gain of the orthogonal recurrent kernels: the recurrence applies them once per time
#: step, so any other gain compounds geometrically over the sequence.
RECURRENT_GAIN = 1.0

_KEPT_BECAUSE = {
    "bias": "a bias adds no fan-in sum; kept as built (zeros by Keras's default)",
    "gamma": "normalization scale: sets the output std the layer re-standardizes to; kept",
    "beta": "normalization shift: sets the output mean; kept",
    "other": "not a kernel-like weight (moving statistics, layer-scale factors, states...); kept",
}
_NOT_FLOAT = "not a floating-point variable; kept"
_KEPT_BY_METHOD_NONE = "method=None: kept as built (only the residual scheme applies)"


@dataclasses.dataclass(frozen=True)
class DrawnWeight:
    """What ``reinitialize`` drew for one weight.

    Attributes:
        path: The weight's path (``dense_3/kernel``, ``lstm/lstm_cell/recurrent_kernel``).
        role: Its role in the model graph (``kernel``, ``depthwise_kernel``,
            ``attention_query``, ``embeddings``...).
        layout: How its fans were read (``standard``, ``depthwise``, ``transpose``,
            ``einsum``, ``gates``, ``embeddings``).
        fans: ``(fan_in, fan_out)`` used (per gate for recurrent weights).
        feeding: The activation that feeds the weight's input.
        initializers: The initializers that drew the values: one, or one per gate block
            for recurrent kernels.
        law: The law in words, e.g. ``"He(gelu, fan_in) on fans (64, 32)"``.
        std: The standard deviation of that law.
    """

    path: str
    role: str
    layout: str
    fans: tuple[int, int]
    feeding: FeedingActivation
    initializers: tuple[keras.initializers.Initializer, ...]
    law: str
    std: float

    @property
    def activation(self) -> Any:
        """The feeding activation (a name or a callable)."""
        return self.feeding.activation


@dataclasses.dataclass(frozen=True)
class SkippedWeight:
    """A weight ``reinitialize`` left as it was, and why."""

    path: str
    role: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ResidualChange:
    """What a residual scheme did to one weight, after its draw.

    Attributes:
        path: The weight's path.
        action: ``"zeroed"`` or ``"scaled"``.
        factor: The factor its drawn values were multiplied by (0 when zeroed).
        blocks: Depth indices of the residual blocks whose rule applied (empty for the
            classifier of ``"fixup"``).
        rule: The rule in words, e.g. ``"fixup: branch kernel times L^(-1/(2m-2)), L=4, m=2"``.
    """

    path: str
    action: Literal["zeroed", "scaled"]
    factor: float
    blocks: tuple[int, ...]
    rule: str


@dataclasses.dataclass(frozen=True)
class ReinitReport(Mapping[str, DrawnWeight]):
    """What ``reinitialize`` did: a mapping from weight path to :class:`DrawnWeight`.

    Attributes:
        drawn: Weight path -> :class:`DrawnWeight`, in data-flow order.
        skipped: Weight path -> :class:`SkippedWeight` for every weight left alone.
        graph: The :class:`keras_inits.model.graph.ModelGraph` the draws were based on.
        residual: Weight path -> :class:`ResidualChange` for every weight the residual
            scheme zeroed or scaled (empty without ``residual=``).
        structure: The :class:`keras_inits.model.residual.ResidualStructure` the scheme
            used, or ``None`` without ``residual=``.
    """

    drawn: dict[str, DrawnWeight]
    skipped: dict[str, SkippedWeight]
    graph: ModelGraph
    residual: dict[str, ResidualChange] = dataclasses.field(default_factory=dict)
    structure: ResidualStructure | None = None

    def __getitem__(self, path: str) -> DrawnWeight:
        return self.drawn[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self.drawn)

    def __len__(self) -> int:
        return len(self.drawn)

    def summary(self) -> str:
        """One line per weight: what was drawn (law, fans, std) or why it was kept."""
        lines = [f"{path}: {entry.law}, std {entry.std:.4g}" for path, entry in self.drawn.items()]
        lines += [f"{path}: kept ({entry.role}): {entry.reason}" for path, entry in self.skipped.items()]
        lines += [f"{path}: {entry.action} ({entry.rule})" for path, entry in self.residual.items()]
        return "\n".join(lines)


def reinitialize(
    model: keras.Model,
    method: Method | None = "he",
    *,
    mode: Mode = "fan_in",
    seed: int | None = None,
    x: Any = None,
    residual: Residual | None = None,
    residual_factor: float | None = None,
) -> ReinitReport:
    """Re-draw every kernel-like weight of a built model with the gain of the activation that feeds it.

    For a weight ``W`` whose input is ``x = phi(z)`` (``z`` the previous layer's
    pre-activation), He (``method="he"``) draws ``Var(W) = g_f(phi)^2 / fan_in``
    (``mode="fan_in"``) or ``g_b(phi)^2 / fan_out`` (``mode="fan_out"``), and Xavier
    (``method="xavier"``) draws ``Var(W) = 2 / (fan_in / g_f^2 + fan_out / g_b^2)``, with
    ``g_f = 1 / sqrt(E[phi(z)^2])`` and ``g_b = 1 / sqrt(E[phi'(z)^2])``. The layer's *own*
    activation does not enter: it acts on the output, which is the next layer's business.
    The feeding activation, the roles and the fans come from
    :func:`keras_inits.model.graph.model_graph` (one traced forward pass; its docstring says
    how containers, merges, normalization and ops the trace cannot see are handled).

    Per role:

    - A weight fed by a merge carries the merge's scale (``FeedingActivation.scale``, see
      :mod:`keras_inits.model.graph`: ``sqrt(k)`` after adding ``k`` independent branches,
      the gate's root mean square after a squeeze-excite ``Multiply``): its std is divided
      by it, so that its output has unit variance again.
    - ``kernel``, ``depthwise_kernel``, ``pointwise_kernel``: ``He``/``Xavier`` with the
      kernel's layout (``layout="depthwise"`` gives a depthwise kernel ``(*k, C, M)``
      fan_in ``prod(k)``; ``"transpose"`` reads a transposed convolution's ``(*k, out, in)``).
      A separable convolution's pointwise kernel is fed by its depthwise kernel, whose output
      is linear, so the two in series keep the variance.
    - ``attention_*`` and other ``EinsumDense`` kernels, recurrent input kernels (per gate:
      ``(in, units)``) and embedding tables: their fans are not those of the shape, so the
      graph's fans give the variance of the He/Xavier law above and Keras's
      ``TruncatedNormal(stddev=sqrt(Var) / 0.8796...)`` (He's truncated normal) or
      ``RandomUniform(+-sqrt(3 Var))`` (Xavier's uniform) draws it; values are i.i.d.,
      so a draw of the whole shape is the same law as one per block.
    - ``embeddings``: a lookup reads one row, i.e. a one-hot input with fan_in 1, so He
      (fan_in) draws ``N(0, 1)``: each embedded vector has unit variance per component, as
      the next layer's derivation assumes of its input (Keras's default, ``U(-0.05, 0.05)``,
      gives 8e-4). ``fan_out`` and Xavier use fan_out = the embedding dimension.
    - ``recurrent_kernel``: orthogonal per gate (each ``units x units`` block of an LSTM's or
      GRU's recurrent kernel an orthogonal matrix, gain :data:`RECURRENT_GAIN`), as
      Keras's default ``Orthogonal`` does for the whole matrix: the recurrence applies the
      block at every time step, and only an orthogonal matrix keeps the norm of the state
      over many steps (a He draw has singular values up to 2 g, which compound).

    Kept as built, and listed in ``skipped`` with the reason: biases, normalization
    ``gamma``/``beta``, moving statistics and other non-kernel weights, non-float variables.

    **Residual schemes** (``residual=``), applied after the draws above to the residual
    blocks of :func:`keras_inits.model.residual.residual_structure` (``L`` blocks: every
    residual merge, two per transformer layer; ``m`` the number of kernel layers of a branch;
    its module docstring says how skip and branch are told apart):

    - ``"fixup"`` (Zhang et al. 2019): the last kernel of every branch zero; every other
      kernel of a branch times ``L^(-1/(2m-2))`` (nothing to scale when ``m = 1``); the
      classifier's kernel and bias zero (the last kernel layer called after the last merge,
      outside every branch: a ResNet's head, ``pooled_dense`` of a ``BertBackbone``; none
      in a ``GPT2Backbone``). Fixup's scalar biases and multipliers are new weights of the
      architecture and are not added. At init every block is then the identity on its
      skip path.
    - ``"zero"`` (SkipInit, De & Smith 2020): the last kernel of every branch zero (SkipInit
      zeroes a scalar multiplier of the branch; zeroing the last kernel gives the same
      initial function: with a zero bias the branch adds nothing).
    - ``"depth_scaled"`` (GPT-2, Radford et al. 2019): the last kernel of every branch times
      ``1 / sqrt(L)``, ``L`` the number of residual merges: for a transformer of ``N``
      layers (two merges each) ``L = 2 N``, GPT-2's ``1 / sqrt(2 N)`` on the attention's and
      the MLP's output projections; times ``residual_factor`` instead when it is given.
    - ``"deepnet"`` (Wang et al. 2022, encoder-only and decoder-only rule): ``beta =
      (8 N)^(-1/4)``, ``N`` the number of branches that hold a ``MultiHeadAttention`` (one per
      layer of an encoder or a decoder-only model; a cross-attention branch counts too, and
      DeepNet's encoder-decoder rule is not implemented), multiplies every kernel of the
      other (feed-forward) branches and the value and output projections
      (``_value_dense``, ``_output_dense``) of each attention branch; query and key kernels
      are kept (a cross-attention branch holds only its query and output projections: its
      key and value project the encoder's output, outside the decoder's branch). DeepNet's
      ``alpha`` multiplies the skip in the forward pass (``x alpha + f(x)``): it changes the
      model, not its initial weights, and is out of scope here.

    A weight in several branches (nested residual blocks) gets the product of their factors.
    ``report.residual`` says per weight what the scheme did (zeroed, or scaled by what); a
    factor of exactly 1 (a model with one block) changes nothing and is not listed.

    Under a multi-worker strategy (``tf.distribute.MultiWorkerMirroredStrategy``,
    ``jax.distributed``, ``torch.distributed``) call it on every worker: at the end every
    weight it drew is broadcast from the chief, so every worker holds the chief's draws bit
    for bit, seeded or not (an ``assign`` after the build otherwise stays local, and
    ``seed=None`` draws differ from worker to worker).

    Examples:

    >>> model = keras.Sequential([
    ...     keras.Input((64,)),
    ...     keras.layers.Dense(128, activation="gelu"),
    ...     keras.layers.Dense(128, activation="gelu"),
    ...     keras.layers.Dense(10),
    ... ])
    >>> report = reinitialize(model, "he", seed=0)
    >>> list(report)
    ['dense/kernel', 'dense_1/kernel', 'dense_2/kernel']
    >>> report["dense_1/kernel"].activation   # the second Dense is fed by gelu
    'gelu'
    >>> sorted(report.skipped)[:1]
    ['dense/bias']

    A residual scheme after the draws (here Fixup: the branch's last kernel and the head zero):

    >>> inputs = keras.Input((16,))
    >>> hidden = keras.layers.Dense(16, activation="relu", name="fc1")(inputs)
    >>> hidden = keras.layers.Dense(16, name="fc2")(hidden)
    >>> merged = keras.layers.Add(name="add")([inputs, hidden])
    >>> residual_model = keras.Model(inputs, keras.layers.Dense(2, name="head")(merged))
    >>> report = reinitialize(residual_model, seed=0, residual="fixup")
    >>> [(path, change.action) for path, change in report.residual.items()]
    [('fc2/kernel', 'zeroed'), ('head/kernel', 'zeroed'), ('head/bias', 'zeroed')]

    The scheme alone, on the weights as built (``method=None``; here GPT-2's ``1/sqrt(L)``
    with one merge, ``L = 1``, so a user factor makes the change visible):

    >>> report = reinitialize(residual_model, None, residual="depth_scaled", residual_factor=0.5)
    >>> list(report), [(path, change.factor) for path, change in report.residual.items()]
    ([], [('fc2/kernel', 0.5)])

    Args:
        model: A built Keras model (Sequential, Functional, subclassed or nested).
        method: ``"he"`` or ``"xavier"``; or ``None``: keep every weight as built and apply
            only the ``residual`` scheme to it (e.g. GPT-2's own recipe on a keras-hub
            ``GPT2Backbone``: its ``RandomNormal(0.02)`` kernels, then
            ``residual="depth_scaled"``); every weight is then listed in ``skipped``.
        mode: He's ``"fan_in"`` (forward variance) or ``"fan_out"`` (backward variance).
            Ignored by Xavier, which balances both.
        seed: An int makes the result reproducible (each weight gets its own independent
            stream derived from ``(seed, weight index)``); ``None`` draws fresh values
            (under a multi-worker strategy, the chief's, which every worker receives).
        x: A batch of typical inputs for the trace of the model graph. Its root mean square
            where it reaches the first kernels (after the model's weightless preprocessing)
            is divided out, so that the first pre-activations have unit variance (images in
            ``[0, 255]`` through a ``Rescaling`` layer otherwise start at rms ~0.58 and a
            non-homogeneous activation such as silu drifts further from its gain's
            assumption at every layer). By default two samples made from the model's input
            shapes, with the data's scale taken as 1 (needed for subclassed models called
            on several inputs).
        residual: A residual scheme applied after the draws: ``"fixup"``, ``"zero"``,
            ``"depth_scaled"``, ``"deepnet"`` (rules above), or ``None`` (no scheme: the
            model's residual structure is not looked at).
        residual_factor: With ``residual="depth_scaled"``, the factor of the last branch
            kernels instead of ``1 / sqrt(L)``; a positive number.

    Returns:
        A :class:`ReinitReport`: a mapping from weight path to :class:`DrawnWeight`
        (initializer, fans, std), with ``skipped`` for the weights left alone.

    Raises:
        ValueError: for an unknown ``method``, ``mode`` or ``residual``, ``method=None``
            without ``residual``, a negative seed, a
            model that is not built, a model without kernel-like weights, a weight fed by an
            activation that has no gain (softmax), a ``residual`` scheme on a model without
            residual merges (``"deepnet"``: without attention branches), or a
            ``residual_factor`` that is not positive or comes without ``"depth_scaled"``.
        TypeError: for a ``model`` that is not a ``keras.Model`` or a non-int ``seed``.

    Reference:
        He et al., "Delving Deep into Rectifiers", ICCV 2015.
        Glorot & Bengio, "Understanding the difficulty of training deep feedforward
        neural networks", AISTATS 2010.
        Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without
        Normalization", ICLR 2019 (arXiv:1901.09321).
        De & Smith, "Batch Normalization Biases Residual Blocks Towards the Identity
        Function in Deep Networks", NeurIPS 2020 (arXiv:2002.10444; SkipInit).
        Radford et al., "Language Models are Unsupervised Multitask Learners", 2019 (GPT-2).
        Wang et al., "DeepNet: Scaling Transformers to 1,000 Layers", 2022
        (arXiv:2203.00555).
        Saxe et al., "Exact solutions to the nonlinear dynamics of learning in deep linear
        neural networks", ICLR 2014 (orthogonal recurrent kernels).
    """
    if method is not None:
        method = _checks.check_choice("method", method, _METHODS)
    mode = _checks.check_choice("mode", mode, _MODES)
    seed = None if seed is None else _checks.check_seed(seed)
    _checks.check_model(model)
    if x is not None:
        check_inputs(model, x)
    if not model.built:
        raise ValueError(
            "reinitialize needs a built model (call it on data or use keras.Input). "
            f"Received: model={model.name!r}, which is not built"
        )
    residual, residual_factor = _check_residual(residual, residual_factor)
    if method is None and residual is None:
        raise ValueError(
            "method=None keeps every weight as built, so it needs a residual scheme to apply "
            f"(residual='fixup', 'zero', 'depth_scaled' or 'deepnet'). Received: method=None, residual=None"
        )

    graph = model_graph(model, x)
    structure = None if residual is None else _residual_structure(model, x, residual)
    drawn: dict[str, DrawnWeight] = {}
    skipped: dict[str, SkippedWeight] = {}
    planned: list[tuple[Node, Weight]] = []
    for node in graph.nodes.values():
        for weight in node.weights:
            if weight.dtype not in FLOAT_DTYPES:
                skipped[weight.path] = SkippedWeight(weight.path, weight.role, _NOT_FLOAT)
            elif weight.fans is None:
                skipped[weight.path] = SkippedWeight(weight.path, weight.role, _KEPT_BECAUSE[weight.role])
            elif method is None:
                skipped[weight.path] = SkippedWeight(weight.path, weight.role, _KEPT_BY_METHOD_NONE)
            else:
                planned.append((node, weight))
    if not planned and method is not None:
        raise ValueError(
            "The model has no layer with a kernel (or embedding table) to re-initialize. "
            f"Received: model={model.name!r}"
        )
    for index, (node, weight) in enumerate(planned):
        entry, values = _draw(node, weight, method, mode, derive_seed(seed, index))
        weight.variable.assign(values)
        drawn[weight.path] = entry
    changed = [weight.variable for _, weight in planned]
    changes: dict[str, ResidualChange] = {}
    if structure is not None:
        changes = _apply_residual(residual, structure, residual_factor)
        drawn_variables = {id(variable) for variable in changed}
        changed += [
            weight.variable
            for weight in _scheme_weights(structure)
            if weight.path in changes and id(weight.variable) not in drawn_variables
        ]
    backend.current().broadcast_from_chief(changed)
    return ReinitReport(drawn=drawn, skipped=skipped, graph=graph, residual=changes, structure=structure)


def _check_residual(residual: Any, residual_factor: Any) -> tuple[str | None, float | None]:
    """The checked scheme and factor (the factor only with ``"depth_scaled"``)."""
    if residual is not None:
        residual = _checks.check_choice("residual", residual, _RESIDUALS)
    if residual_factor is None:
        return residual, None
    if residual != "depth_scaled":
        raise ValueError(
            'Argument `residual_factor` is used only with residual="depth_scaled". '
            f"Received: residual_factor={residual_factor!r} with residual={residual!r}"
        )
    return residual, _checks.check_positive("residual_factor", residual_factor)


def _residual_structure(model: keras.Model, x: Any, residual: str) -> ResidualStructure:
    """The model's residual structure; a ValueError when the scheme has nothing to act on."""
    structure = residual_structure(model, x)
    if not structure.blocks:
        raise ValueError(
            f"The residual scheme needs residual merges (an Add of a skip path and a branch with a "
            f"kernel), and the model {model.name!r} has none. Received: residual={residual!r}"
        )
    if residual == "deepnet" and not any(block.attention for block in structure.blocks):
        raise ValueError(
            f"DeepNet's rule counts attention branches (a MultiHeadAttention in a residual branch), "
            f"and the model {model.name!r} has none. Received: residual={residual!r}"
        )
    return structure


def _scheme_weights(structure: ResidualStructure) -> Iterator[Weight]:
    for block in structure.blocks:
        yield from block.kernels
    yield from structure.classifier_weights


def _residual_factors(
    residual: str, structure: ResidualStructure, residual_factor: float | None
) -> list[tuple[Weight, float, int | None, str]]:
    """``(weight, factor, block index, rule)`` for every factor the scheme applies."""
    blocks = structure.blocks
    count = len(blocks)
    factors: list[tuple[Weight, float, int | None, str]] = []
    if residual in ("fixup", "zero"):
        for block in blocks:
            rule = f"{residual}: last kernel of the branch zero"
            factors.append((block.last_kernel, 0.0, block.index, rule))
    if residual == "fixup":
        for block in blocks:
            if block.m < 2:
                continue
            factor = count ** (-1.0 / (2 * block.m - 2))
            rule = f"fixup: branch kernel times L^(-1/(2m-2)), L={count}, m={block.m}"
            factors += [(weight, factor, block.index, rule) for weight in block.kernels[:-1]]
        for weight in structure.classifier_weights:
            factors.append((weight, 0.0, None, f"fixup: classifier {structure.classifier!r} zero"))
    if residual == "depth_scaled":
        if residual_factor is None:
            factor = 1.0 / math.sqrt(count)
            rule = f"depth_scaled: last kernel of the branch times 1/sqrt(L), L={count} merges"
        else:
            factor = residual_factor
            rule = f"depth_scaled: last kernel of the branch times residual_factor={residual_factor!r}"
        factors += [(block.last_kernel, factor, block.index, rule) for block in blocks]
    if residual == "deepnet":
        layers = sum(1 for block in blocks if block.attention)
        beta = (DEEPNET_DEPTH_FACTOR * layers) ** DEEPNET_EXPONENT
        rule = f"deepnet: times beta=(8N)^(-1/4), N={layers} attention layers"
        for block in blocks:
            kernels = block.kernels
            if block.attention:
                kernels = tuple(weight for weight in kernels if weight.role in DEEPNET_ATTENTION_ROLES)
            factors += [(weight, beta, block.index, rule) for weight in kernels]
    return factors


def _apply_residual(
    residual: str, structure: ResidualStructure, residual_factor: float | None
) -> dict[str, ResidualChange]:
    """Multiply each weight the scheme names by its factors (their product, once) and report it."""
    weights: dict[str, Weight] = {}
    products: dict[str, float] = {}
    blocks: dict[str, list[int]] = {}
    rules: dict[str, list[str]] = {}
    for weight, factor, index, rule in _residual_factors(residual, structure, residual_factor):
        weights[weight.path] = weight
        products[weight.path] = products.get(weight.path, 1.0) * factor
        blocks.setdefault(weight.path, [])
        if index is not None:
            blocks[weight.path].append(index)
        rules.setdefault(weight.path, [])
        if rule not in rules[weight.path]:
            rules[weight.path].append(rule)
    changes: dict[str, ResidualChange] = {}
    for path, weight in weights.items():
        factor = products[path]
        if factor == 1.0:  # one block: L^(-1/(2m-2)) and 1/sqrt(L) change nothing
            continue
        variable = weight.variable
        if factor == 0.0:
            variable.assign(keras.ops.zeros(weight.shape, dtype=weight.dtype))
        else:
            variable.assign(keras.ops.multiply(variable.value, keras.ops.cast(factor, weight.dtype)))
        action = "zeroed" if factor == 0.0 else "scaled"
        changes[path] = ResidualChange(path, action, factor, tuple(blocks[path]), "; ".join(rules[path]))
    return changes


def _feeding(node: Node, weight: Weight) -> FeedingActivation:
    """A kernel later in a series inside one layer is fed by the previous kernel's linear output."""
    if weight.series > 0:
        return FeedingActivation(source=node.path)
    return node.feeding


def _gain_initializer(
    node: Node, weight: Weight, feeding: FeedingActivation, method: str, mode: str, seed: int | None
) -> He | Xavier:
    layout = weight.layout if weight.layout in KERNEL_LAYOUTS else "standard"
    arguments = dict(
        activation=feeding.activation,
        seed=seed,
        activation_kwargs=dict(feeding.kwargs) or None,
        layout=layout,
    )
    try:
        return He(mode=mode, **arguments) if method == "he" else Xavier(**arguments)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Cannot re-initialize layer {node.path!r} (weight {weight.path!r}): the activation "
            f"that feeds it (from {feeding.source!r}) has no gain. {error}"
        ) from error


def _variance(initializer: He | Xavier, fans: tuple[int, int]) -> float:
    """The variance of ``initializer``'s law on the given fans."""
    fan_in, fan_out = fans
    if isinstance(initializer, He):
        fan = fan_in if initializer.mode == "fan_in" else fan_out
        return initializer.gain**2 / fan
    return 2.0 / (fan_in / initializer.forward_gain**2 + fan_out / initializer.backward_gain**2)


def _activation_name(feeding: FeedingActivation) -> str:
    name = feeding.activation if isinstance(feeding.activation, str) else getattr(
        feeding.activation, "__name__", repr(feeding.activation)
    )
    if feeding.kwargs:
        arguments = ", ".join(f"{key}={value!r}" for key, value in feeding.kwargs.items())
        return f"{name}({arguments})"
    return name


def _draw(
    node: Node, weight: Weight, method: str, mode: str, seed: int | None
) -> tuple[DrawnWeight, Any]:
    """The values of one weight and the report entry that says how they were drawn."""
    shape = weight.shape
    dtype = weight.dtype
    feeding = _feeding(node, weight)
    if weight.role == "recurrent_kernel":  # fed by the layer's own state
        return _draw_orthogonal_gates(weight, node.output_activation, seed)
    initializer = _gain_initializer(node, weight, feeding, method, mode, seed)
    variance = _variance(initializer, weight.fans) / feeding.scale**2
    law_name = f"He({_activation_name(feeding)}, {mode})" if method == "he" else f"Xavier({_activation_name(feeding)})"
    law = f"{law_name} on fans {weight.fans}"
    if feeding.scale != 1.0:
        law += f", divided by the input's scale {feeding.scale:.4g}"
    if weight.layout in KERNEL_LAYOUTS:
        values = initializer(shape, dtype=dtype)
        if feeding.scale != 1.0:
            values = keras.ops.divide(values, keras.ops.cast(feeding.scale, dtype))
        used = initializer
    else:
        used = _keras_initializer(method, variance, seed)
        values = used(shape, dtype=dtype)
        law += f" ({weight.layout}), drawn by {type(used).__name__}"
    entry = DrawnWeight(
        path=weight.path,
        role=weight.role,
        layout=weight.layout,
        fans=weight.fans,
        feeding=feeding,
        initializers=(used,),
        law=law,
        std=math.sqrt(variance),
    )
    return entry, values


def _keras_initializer(method: str, variance: float, seed: int | None) -> keras.initializers.Initializer:
    """Keras's initializer of He's (truncated normal) or Xavier's (uniform) law with ``variance``."""
    if method == "he":
        return keras.initializers.TruncatedNormal(stddev=math.sqrt(variance) / TRUNCATED_NORMAL_STD, seed=seed)
    limit = math.sqrt(3.0 * variance)
    return keras.initializers.RandomUniform(minval=-limit, maxval=limit, seed=seed)


def _draw_orthogonal_gates(
    weight: Weight, feeding: FeedingActivation, seed: int | None
) -> tuple[DrawnWeight, Any]:
    """An orthogonal block per gate along the last axis (gain :data:`RECURRENT_GAIN`)."""
    shape = weight.shape
    units = shape[-1] // weight.gates
    block_shape = shape[:-1] + (units,)
    initializers = tuple(
        keras.initializers.Orthogonal(gain=RECURRENT_GAIN, seed=derive_seed(seed, gate))
        for gate in range(weight.gates)
    )
    blocks = [initializer(block_shape, dtype=weight.dtype) for initializer in initializers]
    values = keras.ops.concatenate(blocks, axis=-1) if len(blocks) > 1 else blocks[0]
    entry = DrawnWeight(
        path=weight.path,
        role=weight.role,
        layout=weight.layout,
        fans=weight.fans,
        feeding=feeding,
        initializers=initializers,
        law=f"Orthogonal(gain={RECURRENT_GAIN}) per gate, {weight.gates} blocks of {block_shape}",
        std=RECURRENT_GAIN / math.sqrt(max(weight.fans)),
    )
    return entry, values
