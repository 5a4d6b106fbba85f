"""Per-layer activation (and gradient) statistics of a model on a probe batch.

An initializer is only as good as what it does to the signal: the He and Xavier derivations
keep the variance of pre-activations at 1 from layer to layer, and a poor choice shows as a
std that shrinks or explodes with depth, as saturated or dead units, or as every input being
mapped to the same vector. :func:`activation_statistics` measures all of these in one eager
probe pass (see ``keras_inits._probe``) and returns one :class:`LayerStatistics` per layer,
shallow to deep.

Definitions, per monitored layer, over the layer's output on the batch (``n`` samples):

* ``mean``, ``std`` (population std, ``ddof=0``), ``min``, ``max``: over the finite values.
  ``nan`` when there is none. ``nonfinite_count`` counts NaN and +-inf values.
* ``pre_std``: the std of the input of the layer's fused activation (``Dense``, ``Conv*``,
  ``EinsumDense`` built with ``activation=``, and ``Activation`` layers); equal to ``std``
  for layers without a non-linear ``activation`` attribute (``ReLU()``, ``Dense`` without
  one...). This is the quantity the He/Xavier derivation keeps at 1.
* ``std_ratio``: ``std`` divided by the ``std`` of the previous monitored layer (the first
  layer: by the std of the finite values of ``x``). ``inf`` or ``nan`` if that std is 0.
* ``zero_fraction``: share of all values that are exactly 0.
* ``dead_fraction``: share of units that are exactly 0 for every sample. A unit is an entry
  of the last (channels) axis: a Dense neuron, or a convolution channel, dead when it is 0 at
  every sample *and* every position.
* ``saturation_fraction``: share of the finite values within :data:`SATURATION_MARGIN` of a
  bound of the layer's activation: ``tanh``, ``softsign``, ``hard_tanh``: ``|a| >= 0.99``;
  ``sigmoid``, ``hard_sigmoid``, ``sparse_sigmoid``: ``a <= 0.01`` or ``a >= 0.99``;
  ``relu6``: ``a >= 5.99``; ``ReLU(max_value=m)`` layers: ``a >= m - 0.01``. ``None`` for
  activations without a finite bound (and for ``softmax``, which is not element-wise).
* ``cosine``: mean cosine similarity over all pairs of distinct samples of their flattened
  outputs; 1.0 means every input is mapped to the same direction. Zero vectors: two zero
  vectors count as identical (1.0), a zero and a non-zero vector as orthogonal (0.0), so an
  all-zero output reads 1.0 (every input collapsed to the same vector). Non-finite entries
  count as 0. ``None`` for a batch of one sample. Computed in O(n·d) from the sum of the
  normalized rows, not from the n×n Gram matrix.
* ``histogram``: :data:`HISTOGRAM_BUCKETS` equal-width buckets over the finite values.
* ``grad_std`` (``gradients=True``): std of ``d loss / d output``; ``kernel_grad_std``: std
  of ``d loss / d kernel`` over all the layer's kernel variables, frozen ones included
  (``None`` without a kernel); ``grad_histogram``: histogram of ``d loss / d output``
  (Glorot & Bengio's Fig. 7). The same numbers on TensorFlow, JAX and PyTorch.
  A ``softmax`` (or ``sigmoid``) output read by a crossentropy reports ``d loss / d
  probabilities``, the derivative of the loss as a function of the probabilities ``p``
  (Keras's probability form, ``-sum(y log(p / sum(p)))`` averaged over the batch, so
  ``(sum(y) - y / p) / n`` for a softmax), not 0: on TensorFlow Keras's crossentropy reads
  the logits the activation attached to its output (``_keras_logits``), which puts that
  output off the gradient path; the probe keeps the loss on the logits (its value and every
  other gradient are unchanged) and moves them with the output's tap.

A layer with several outputs is measured on all of them, concatenated per sample; a layer
called more than once on its first call. Values are taken in float32 whatever the layer's
dtype policy (``mixed_float16`` included).

The residual stream (``residual_stream`` of the result, one :class:`StreamStatistics` per
residual merge that :func:`keras_inits.model.residual.residual_blocks` finds, in depth
order; empty for a model without one):

* ``std``: population std over batch and features of the merge's output, the stream after
  the block (finite values).
* ``growth``: ``std`` divided by the previous block's ``std``; block 0: by the std of the
  stream entering it (its skip input). ``inf`` or ``nan`` if that std is 0.

It is measured on one more traced forward pass on the same batch (the merges inside a
subclassed ``call`` are found by value on that trace, which keeps every tensor of the pass).
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Any, Mapping, Sequence, Union

import keras
import numpy as np

from keras_inits import _checks, _probe, activations, backend
from keras_inits._probe import LayerSelection
from keras_inits.model.residual import ResidualStream, provably_without_merges, residual_stream

#: Distance to an activation's bound within which a value counts as saturated.
SATURATION_MARGIN = 0.01
#: Number of equal-width histogram buckets (at most 255: buckets are indexed with one byte).
HISTOGRAM_BUCKETS = 30


#: Names of the scalar statistics, in the order they are reported.
ACTIVATION_SCALARS: tuple[str, ...] = (
    "mean",
    "std",
    "min",
    "max",
    "nonfinite_count",
    "pre_std",
    "std_ratio",
    "zero_fraction",
    "dead_fraction",
    "saturation_fraction",
    "cosine",
)
GRADIENT_SCALARS: tuple[str, ...] = ("grad_std", "kernel_grad_std")


@dataclasses.dataclass(frozen=True, eq=False)
class Histogram:
    """Equal-width histogram of a layer's finite output values.

    Attributes:
        edges: ``buckets + 1`` bucket edges (float64, ascending).
        counts: ``buckets`` counts (int64); the last bucket includes its right edge.
    """

    edges: np.ndarray
    counts: np.ndarray

    def as_dict(self) -> dict[str, list]:
        """Edges and counts as plain lists."""
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist()}


@dataclasses.dataclass(frozen=True)
class LayerStatistics:
    """Statistics of one layer's output on a probe batch (see the module docstring).

    Attributes:
        path: The layer's path relative to the model (``"inner/dense_3"``).
        layer_class: The layer's class name (``"Dense"``).
        mean: Mean of the finite output values.
        std: Population std of the finite output values.
        min: Smallest finite value.
        max: Largest finite value.
        nonfinite_count: Number of NaN and infinite values.
        pre_std: Std before the fused activation (``std`` for layers without one).
        std_ratio: ``std`` over the previous monitored layer's ``std`` (first: over ``x``'s).
        zero_fraction: Share of values exactly 0.
        dead_fraction: Share of units (last axis) that are 0 for every sample.
        saturation_fraction: Share of values near a bound of the activation, or ``None``.
        cosine: Mean pairwise cosine similarity between samples, or ``None`` (1 sample).
        histogram: Histogram of the finite values.
        grad_std: Std of ``d loss / d output`` (only with ``gradients=True``).
        kernel_grad_std: Std of ``d loss / d kernel`` (``gradients=True``, layers with a
            kernel).
        num_values: Number of values measured (all outputs, all samples).
        grad_histogram: Histogram of the finite values of ``d loss / d output`` (only with
            ``gradients=True``).

    Examples:

    >>> import numpy as np, keras
    >>> from keras_inits import activation_statistics
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    >>> stats = activation_statistics(model, np.ones((8, 4), "float32"))
    >>> sorted(stats["d"].scalars())[:3]
    ['cosine', 'dead_fraction', 'max']
    """

    path: str
    layer_class: str
    mean: float
    std: float
    min: float
    max: float
    nonfinite_count: int
    pre_std: float
    std_ratio: float
    zero_fraction: float
    dead_fraction: float
    saturation_fraction: float | None
    cosine: float | None
    histogram: Histogram
    grad_std: float | None = None
    kernel_grad_std: float | None = None
    num_values: int = 0
    grad_histogram: Histogram | None = None

    def scalars(self) -> dict[str, float]:
        """The scalar statistics that have a value, by name (``None`` ones left out).

        Activation statistics come in the order of ``ACTIVATION_SCALARS``, then
        ``grad_std`` and ``kernel_grad_std`` when computed.
        """
        values: dict[str, float] = {}
        for name in ACTIVATION_SCALARS + GRADIENT_SCALARS:
            value = getattr(self, name)
            if value is not None:
                values[name] = float(value)
        return values

    def as_dict(self) -> dict[str, Any]:
        """Every field as plain Python values (the histogram as lists)."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values[field.name] = value.as_dict() if isinstance(value, Histogram) else value
        return values


@dataclasses.dataclass(frozen=True)
class StreamStatistics:
    """The residual stream after one block (see the module docstring).

    Attributes:
        index: The block's depth index (0 first).
        merge: Path of the block's merge (``"add_3"``, ``"transformer_layer_0/+1"``).
        std: Population std of the merge's output over batch and features.
        growth: ``std`` over the previous block's ``std`` (block 0: over the std of the
            stream entering it).
    """

    index: int
    merge: str
    std: float
    growth: float


class ModelStatistics(dict):
    """What :func:`activation_statistics` returns: a dict from layer path to statistics.

    Attributes:
        residual_stream: One :class:`StreamStatistics` per residual merge, in depth order
            (empty for a model without residual merges).
    """

    def __init__(
        self,
        layers: Mapping[str, LayerStatistics],
        residual_stream: Sequence[StreamStatistics] = (),
    ) -> None:
        super().__init__(layers)
        self.residual_stream: tuple[StreamStatistics, ...] = tuple(residual_stream)


def stream_statistics(stream: ResidualStream) -> tuple[StreamStatistics, ...]:
    """The std and growth of the stream after every block of a traced pass.

    ``growth_k = std_k / std_(k-1)``, with ``std_(-1)`` the std of the stream entering block 0.

    Examples:

    >>> import keras
    >>> from keras_inits.model.residual import residual_stream
    >>> inputs = keras.Input((4,))
    >>> branch = keras.layers.Dense(4, kernel_initializer="zeros", name="branch")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Add(name="add")([inputs, branch]))
    >>> x = np.arange(8, dtype="float32").reshape(2, 4)
    >>> [(s.merge, s.growth) for s in stream_statistics(residual_stream(model, x))]
    [('add', 1.0)]
    """
    if not stream.outputs:
        return ()
    previous = _finite_std([stream.entering[0]])
    found = []
    for block, output in zip(stream.structure.blocks, stream.outputs):
        std = _finite_std([output])
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = float(np.float64(std) / np.float64(previous))
        found.append(StreamStatistics(block.index, block.merge, std, growth))
        previous = std
    return tuple(found)


# --------------------------------------------------------------------------------------
# Bounds of activations
# --------------------------------------------------------------------------------------


def saturation_bounds(layer: keras.layers.Layer) -> tuple[float | None, float | None] | None:
    """``(lower, upper)`` bounds of a layer's activation, or ``None`` if it has none.

    Recognizes the layer's ``activation`` attribute by name (``tanh``, ``sigmoid``,
    ``relu6``...) and ``ReLU`` layers with a ``max_value``.

    Examples:

    >>> import keras
    >>> saturation_bounds(keras.layers.Dense(2, activation="tanh"))
    (-1.0, 1.0)
    >>> saturation_bounds(keras.layers.ReLU(max_value=6.0))
    (None, 6.0)
    >>> saturation_bounds(keras.layers.Dense(2, activation="relu")) is None
    True
    """
    if isinstance(layer, keras.layers.ReLU):
        return activations.bounds("relu", max_value=getattr(layer, "max_value", None))
    if isinstance(layer, _probe.LEAF_LAYER_TYPES):
        return None
    function = vars(layer).get("activation")
    name = getattr(function, "__name__", None)
    return activations.bounds(name) if isinstance(name, str) else None


# --------------------------------------------------------------------------------------
# The numbers
# --------------------------------------------------------------------------------------


def _per_sample(arrays: Sequence[np.ndarray], n: int) -> np.ndarray:
    """All outputs as one ``(n, d)`` matrix (a view when there is a single output)."""
    rows = [array.reshape(n, -1) for array in arrays if array.ndim >= 1 and array.shape[0] == n]
    if not rows:
        rows = [np.concatenate([array.reshape(-1) for array in arrays]).reshape(1, -1)]
    return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=1)


def _finite_values(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    flat = matrix.reshape(-1)
    finite = np.isfinite(flat)
    nonfinite = int(flat.size - np.count_nonzero(finite))
    return (flat if nonfinite == 0 else flat[finite]), nonfinite


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and population std of finite ``values`` in float64 (NaN, NaN when empty)."""
    if not values.size:
        return math.nan, math.nan
    wide = values.astype(np.float64).reshape(-1)
    return _moments(wide, float(wide.sum()), float(np.einsum("i,i->", wide, wide)))


def _finite_std(arrays: Sequence[np.ndarray]) -> float:
    """The std of the finite values of ``arrays`` (NaN when there is none).

    The values are widened to float64 once; their sum is finite exactly when every value
    is (a NaN or an infinity would make it NaN or infinite, and float32 values cannot
    overflow a float64 sum), and then the std comes from that copy's sum and sum of
    squares (:func:`_moments`), with no scan for NaN. Otherwise the finite values are
    selected first.
    """
    flat = np.concatenate([array.reshape(-1) for array in arrays]) if len(arrays) > 1 else (
        arrays[0].reshape(-1)
    )
    if not flat.size:
        return math.nan
    wide = flat.astype(np.float64)
    total = float(wide.sum())
    if math.isfinite(total):
        return _moments(wide, total, float(np.einsum("i,i->", wide, wide)))[1]
    return _mean_std(flat[np.isfinite(flat)])[1]


#: :func:`_moments` takes the variance as ``E[x^2] - mean^2`` only when it exceeds this
#: fraction of ``mean^2``: float64 rounding then costs at most ~1e-12 of it (the
#: cancellation grows as ``mean^2 / variance``); below, the deviations are summed instead.
_ONE_PASS_VARIANCE = 1e-4


def _moments(wide: np.ndarray, total: float, total_of_squares: float) -> tuple[float, float]:
    """Mean and population std of the finite float64 values ``wide``, given their sum and
    their sum of squares (computed alongside other statistics, so each is one pass).

    ``variance = total_of_squares / n - mean^2`` when that is well conditioned (see
    :data:`_ONE_PASS_VARIANCE`), else the two-pass ``mean((x - mean)^2)`` in float64.
    """
    count = wide.size
    mean = total / count
    variance = total_of_squares / count - mean * mean
    if variance > _ONE_PASS_VARIANCE * mean * mean:
        return mean, math.sqrt(variance)
    deviations = (wide - mean).reshape(-1)
    return mean, math.sqrt(float(np.einsum("i,i->", deviations, deviations)) / count)


def _dead_fraction(arrays: Sequence[np.ndarray], *, any_zero: bool = True) -> float:
    """Fraction of units (last axis) that are 0 for every sample; ``any_zero=False`` says
    that no value is 0 (then no unit is dead, and nothing is scanned)."""
    units = 0
    dead = 0
    for array in arrays:
        if array.ndim == 0 or array.size == 0:
            continue
        channels = array.shape[-1] if array.ndim >= 2 else 1
        units += channels
        if any_zero:
            alive = np.any(array.reshape(-1, channels) != 0, axis=0)
            dead += int(channels - np.count_nonzero(alive))
    return dead / units if units else math.nan


def mean_pairwise_cosine(matrix: np.ndarray, *, finite: bool | None = None,
                         wide: np.ndarray | None = None,
                         squared_norms: np.ndarray | None = None) -> float | None:
    """Mean cosine similarity over all ordered pairs of distinct rows of ``matrix``.

    Zero rows: cos(0, 0) = 1 and cos(0, v) = 0 for v != 0. Non-finite entries count as 0.
    ``None`` for fewer than two rows. O(n·d), in float64: with unit rows ``u_i``, the sum
    over all pairs ``i != j`` of ``u_i·u_j`` is ``|sum u_i|^2 - sum |u_i|^2``.

    Args:
        matrix: One row per sample.
        finite: ``True`` when the caller knows every entry is finite (no scan for NaN).
        wide: ``matrix`` as float64 with its non-finite entries at 0, when the caller has
            it (:func:`layer_statistics` shares it with the mean and std).
        squared_norms: The squared norms of ``wide``'s rows, when the caller has them.

    Examples:

    >>> mean_pairwise_cosine(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]))
    0.3333333333333333
    """
    n = matrix.shape[0]
    if n < 2:
        return None
    rows = matrix.astype(np.float64) if wide is None else wide
    if not finite and wide is None:
        rows[~np.isfinite(rows)] = 0.0
    if squared_norms is None:
        squared_norms = np.einsum("ij,ij->i", rows, rows)
    norms = np.sqrt(squared_norms)
    nonzero = norms > 0
    count_nonzero = int(np.count_nonzero(nonzero))
    count_zero = n - count_nonzero
    total = float(count_zero * (count_zero - 1))
    if count_nonzero:
        inverse = np.divide(1.0, norms, out=np.zeros(n), where=nonzero)
        # einsum, not ``@``: NumPy's BLAS (OpenBLAS) runs a matrix-vector product this size
        # on its thread pool, whose threads then spin for ~0.1 s, taking the cores from the
        # training that resumes (on jax, the seed MLP's fit lost 2x the callback's own time).
        unit_sum = np.einsum("i,ij->j", inverse, rows)
        total += float(np.einsum("i,i->", unit_sum, unit_sum)) - count_nonzero
    return float(min(1.0, max(-1.0, total / (n * (n - 1)))))


def _histogram(values: np.ndarray, low: float, high: float) -> Histogram:
    if values.size == 0:
        edges = np.zeros(HISTOGRAM_BUCKETS + 1)
        counts = np.zeros(HISTOGRAM_BUCKETS, dtype=np.int64)
    elif high > low:
        # np.histogram's equal-width rule (last bucket closed), without its float64 copies.
        edges = np.linspace(low, high, HISTOGRAM_BUCKETS + 1)
        scale = np.float32(HISTOGRAM_BUCKETS / (high - low))
        position = values - np.float32(low)  # >= 0: low is the minimum
        position *= scale
        # Positions lie in [0, HISTOGRAM_BUCKETS]: a one-byte index (a quarter of the
        # time of an intp one), the values at ``high`` counted into the last bucket.
        counts = np.bincount(position.astype(np.uint8), minlength=HISTOGRAM_BUCKETS + 1)
        counts = counts.astype(np.int64)
        counts[HISTOGRAM_BUCKETS - 1] += counts[HISTOGRAM_BUCKETS:].sum()
        counts = counts[:HISTOGRAM_BUCKETS].copy()
    else:  # a single value: one bucket around it, as np.histogram does
        counts, edges = np.histogram(values, bins=HISTOGRAM_BUCKETS, range=(low - 0.5, high + 0.5))
        counts = counts.astype(np.int64)
    edges.setflags(write=False)
    counts.setflags(write=False)
    return Histogram(edges=edges, counts=counts)


_Bounds = tuple[Union[float, None], Union[float, None]]


def _saturation(values: np.ndarray, bounds: _Bounds | None,
                low: float | None = None, high: float | None = None) -> float | None:
    """Fraction of values within :data:`SATURATION_MARGIN` of a bound; ``low``/``high`` (the
    values' min and max, when known) skip the scan of a side that no value reaches."""
    if bounds is None:
        return None
    if values.size == 0:
        return math.nan
    lower, upper = bounds
    # The thresholds in the values' dtype, as the comparisons below cast them.
    floor = None if lower is None else values.dtype.type(lower + SATURATION_MARGIN)
    ceiling = None if upper is None else values.dtype.type(upper - SATURATION_MARGIN)
    if floor is not None and ceiling is not None and floor >= ceiling:  # overlapping sides
        saturated = (values <= floor) | (values >= ceiling)
        return float(np.count_nonzero(saturated) / values.size)
    count = 0
    if floor is not None and (low is None or low <= floor):
        count += int(np.count_nonzero(values <= floor))
    if ceiling is not None and (high is None or high >= ceiling):
        count += int(np.count_nonzero(values >= ceiling))
    return float(count / values.size)


def _gradient_std(arrays: Sequence[np.ndarray] | None) -> float | None:
    if not arrays:
        return None
    return _finite_std(arrays)


def _gradient_histogram(arrays: Sequence[np.ndarray] | None) -> Histogram | None:
    if not arrays:
        return None
    values, _ = _finite_values(np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]))
    if values.size == 0:
        return _histogram(values, math.nan, math.nan)
    return _histogram(values, float(values.min()), float(values.max()))


def layer_statistics(
    record: _probe.ProbeRecord, *, previous_std: float
) -> LayerStatistics:
    """Statistics of one probe record (float32 NumPy outputs, as from ``run_probe``).

    Args:
        record: The layer's probe record.
        previous_std: The std that ``std_ratio`` divides by.

    Returns:
        The layer's :class:`LayerStatistics`.
    """
    arrays = [np.asarray(array, dtype=np.float32) for array in record.outputs]
    n = arrays[0].shape[0] if arrays and arrays[0].ndim else 1
    matrix = _per_sample(arrays, n)
    flat = matrix.reshape(-1)
    # One min and one max also tell whether anything is NaN or infinite (they would be).
    low = float(flat.min()) if flat.size else math.nan
    high = float(flat.max()) if flat.size else math.nan
    finite = math.isfinite(low) and math.isfinite(high)
    if finite:
        values, nonfinite = flat, 0
    else:
        values, nonfinite = _finite_values(matrix)
        low = float(values.min()) if values.size else math.nan
        high = float(values.max()) if values.size else math.nan
    if finite and flat.size:
        # One float64 copy serves the mean, the std and the cosine: its total and its
        # rows' squared norms (whose sum is the sum of squares).
        wide = matrix.astype(np.float64)
        squared_norms = np.einsum("ij,ij->i", wide, wide)
        mean, std = _moments(wide, float(wide.sum()), float(squared_norms.sum()))
        cosine = mean_pairwise_cosine(matrix, finite=True, wide=wide,
                                      squared_norms=squared_norms)
    else:
        mean, std = _mean_std(values)
        cosine = mean_pairwise_cosine(matrix, finite=finite)
    pre_std = _finite_std(record.pre_activations) if record.pre_activations else std
    with np.errstate(divide="ignore", invalid="ignore"):
        std_ratio = float(np.float64(std) / np.float64(previous_std))
    zeros = int(np.count_nonzero(flat == 0))
    # The matrix holds every output when all have the batch axis: then no 0 in it means no
    # dead unit, without a scan per unit.
    covered = all(array.ndim >= 1 and array.shape[0] == n for array in arrays)
    layer = record.layer
    return LayerStatistics(
        path=record.path,
        layer_class=type(layer).__name__,
        mean=mean,
        std=std,
        min=low,
        max=high,
        nonfinite_count=nonfinite,
        pre_std=pre_std,
        std_ratio=std_ratio,
        zero_fraction=zeros / matrix.size if matrix.size else math.nan,
        dead_fraction=_dead_fraction(arrays, any_zero=zeros > 0 or not covered),
        saturation_fraction=_saturation(values, saturation_bounds(layer), low, high),
        cosine=cosine,
        histogram=_histogram(values, low, high),
        grad_std=_gradient_std(record.output_gradients),
        kernel_grad_std=_gradient_std(record.kernel_gradients),
        num_values=int(matrix.size),
        grad_histogram=_gradient_histogram(record.output_gradients),
    )


def input_std_of(x: Any) -> float:
    """The std of the finite values of the probe batch ``x`` (all its arrays together): what
    the first layer's ``std_ratio`` divides by."""
    read = backend.current().to_numpy
    return _finite_std([np.asarray(read(a), dtype=np.float32) for a in keras.tree.flatten(x)])


class StatisticsChain:
    """Reduces probe records to statistics one at a time, chaining ``std_ratio``.

    Give it each record in completion order (:meth:`add`, the probe's ``on_record``); it
    computes the layer's :class:`LayerStatistics` at once and drops the record's arrays, so
    only what the statistics keep (scalars, two histograms) outlives the layer's output.

    Args:
        x: The probe batch: the first layer's ``std_ratio`` divides by its std.
        input_std: That std when the caller already has it (:func:`input_std_of` ``x``),
            so that ``x`` is not read again.

    Attributes:
        statistics: Dict from path to :class:`LayerStatistics`, in the order added.
    """

    def __init__(self, x: Any, *, input_std: float | None = None) -> None:
        self._previous_std = input_std_of(x) if input_std is None else input_std
        self.statistics: dict[str, LayerStatistics] = {}

    def add(self, record: _probe.ProbeRecord) -> None:
        """Measure one record (float32 NumPy outputs) and drop its arrays."""
        if not record.outputs:  # a layer that returned no tensor: nothing to measure
            return
        layer_stats = layer_statistics(record, previous_std=self._previous_std)
        self.statistics[record.path] = layer_stats
        self._previous_std = layer_stats.std
        record.outputs = ()
        record.pre_activations = None
        record.output_gradients = None
        record.kernel_gradients = None


def statistics_from_records(
    records: Mapping[str, _probe.ProbeRecord], x: Any
) -> dict[str, LayerStatistics]:
    """Turn probe records (shallow to deep) into statistics, chaining ``std_ratio``.

    The records' arrays are dropped as they are measured (see :class:`StatisticsChain`).
    """
    chain = StatisticsChain(x)
    for record in records.values():
        chain.add(record)
    return chain.statistics


def activation_statistics(
    model: keras.Model,
    x: Any,
    *,
    layers: LayerSelection = None,
    y: Any = None,
    gradients: bool = False,
    training: bool = False,
    loss: Any = None,
) -> ModelStatistics:
    """Measure every monitored layer and the residual stream of ``model`` on the batch ``x``.

    Runs one eager probe pass (``layer.call`` wrapped on each monitored instance, fused
    activations swapped to record pre-activations, all restored afterwards) and computes
    the statistics defined in this module's docstring, each layer's as soon as it has run. The model is left exactly as it
    was: no weight, optimizer, metric, batch-norm or RNG state changes, also with
    ``training=True``.

    Args:
        model: A Sequential, Functional, nested or subclassed Keras model. An unbuilt
            subclassed model is built by one plain call on ``x`` first.
        x: The probe batch (e.g. 256 samples): an array, or a list/dict of arrays for a
            multi-input model.
        layers: Which layers to measure: ``None`` (every layer that owns a kernel plus
            standalone activation layers such as ``Activation``, ``ReLU``, ``LeakyReLU``,
            ``ELU``, ``PReLU``, ``Softmax``), a path or list of paths (``"inner/dense_3"``),
            layer classes, or a predicate ``layer -> bool``.
        y: Targets for ``x``; needed with ``gradients=True``.
        gradients: Also measure ``grad_std`` and ``kernel_grad_std`` (every backend).
            The layers' outputs are then all kept until the backward pass has run; without
            gradients each output is reduced to its statistics as the pass goes (on JAX
            two layers behind) and dropped, so the probe holds about one layer's output at
            a time (three on JAX).
        training: Run the probe in training mode (dropout on, batch-norm on batch
            statistics). Default: inference mode.
        loss: Loss for the gradients instead of the model's compiled loss (a name, a
            function or a ``keras.losses.Loss``).

    Returns:
        A :class:`ModelStatistics`: a dict from layer path to :class:`LayerStatistics`,
        shallow to deep (in the order the layers produced their outputs; paths are relative
        to ``model`` and double as TensorBoard tags), and in ``residual_stream`` one
        :class:`StreamStatistics` per residual merge (one more traced pass on ``x``, in the
        same mode, state restored; empty for a model without residual merges).

    Raises:
        ValueError: if ``x`` is empty or does not fit the model (the message names the
            expected shape), a name in ``layers`` is unknown (the message lists the
            available ones), nothing is left to monitor, ``gradients=True`` comes
            without ``y`` or without a loss, ``y`` does not hold one target per sample, or
            the loss cannot compare ``y`` with the model's output.
        TypeError: if ``model`` is not a ``keras.Model``, ``gradients`` or ``training`` is
            not a bool, or ``layers`` has a wrong type.

    Examples:

    >>> import numpy as np, keras
    >>> import keras_inits
    >>> model = keras.Sequential([
    ...     keras.Input((64,)),
    ...     keras.layers.Dense(64, activation="tanh", name="hidden"),
    ...     keras.layers.Dense(1, name="out"),
    ... ])
    >>> x = np.random.default_rng(0).normal(size=(256, 64)).astype("float32")
    >>> stats = keras_inits.activation_statistics(model, x)
    >>> list(stats)
    ['hidden', 'out']
    >>> stats["hidden"].pre_std > stats["hidden"].std  # tanh squashes
    True
    >>> stats["hidden"].scalars()["saturation_fraction"] >= 0.0
    True
    >>> stats.residual_stream  # no residual merge
    ()
    """
    return measure(model, x, layers=layers, y=y, gradients=gradients, training=training,
                   loss=loss)


def measure(
    model: keras.Model,
    x: Any,
    *,
    layers: LayerSelection = None,
    y: Any = None,
    gradients: bool = False,
    training: bool = False,
    loss: Any = None,
    input_std: float | None = None,
) -> ModelStatistics:
    """:func:`activation_statistics`, with the std of ``x`` given when the caller already
    has it (:func:`input_std_of`): the ``ActivationStatistics`` callback measures the same
    probe batch at every write and computes it once a ``fit``."""
    _checks.check_model(model)
    gradients = _checks.check_bool("gradients", gradients)
    training = _checks.check_bool("training", training)
    if gradients and y is None:
        raise ValueError("`gradients=True` needs targets. Received: y=None")
    _probe.check_inputs(model, x)
    chain = StatisticsChain(x, input_std=input_std)
    records = _probe.run_probe(
        model, x, layers, training=training, y=y, gradients=gradients, loss=loss,
        on_record=chain.add,
    )
    if not records:
        raise ValueError(
            "None of the selected layers ran during the probe pass. "
            f"Received: layers={layers!r}"
        )
    return ModelStatistics(chain.statistics, _stream_statistics(model, x, training))


# Models whose traced pass found no residual merge, with their variable count at the time:
# their later calls (every write of the callback) skip the extra pass until that count changes.
_WITHOUT_MERGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stream_statistics(model: keras.Model, x: Any, training: bool) -> tuple[StreamStatistics, ...]:
    """The residual stream of ``model`` on ``x``; one traced pass, none for a model already
    known to have no residual merge or whose structure shows it has none."""
    variables = len(model.variables)
    if _WITHOUT_MERGES.get(model) == variables:
        return ()
    if provably_without_merges(model):  # a plain stack of Keras layers: nothing to trace
        _WITHOUT_MERGES[model] = variables
        return ()
    with _probe.StateGuard(model), backend.current().without_gradients():
        stream = residual_stream(model, x, training=training)
    statistics = stream_statistics(stream)
    if not statistics:
        _WITHOUT_MERGES[model] = variables
    return statistics
