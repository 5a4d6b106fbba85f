"""Layer-sequential unit-variance (LSUV) initialization, in one forward pass.

No formula keeps the variance through depth for GELU, SiLU or Mish (their variance map is
unstable), and none removes the seed-to-seed spread of ReLU. Measuring the network on a
batch and rescaling each kernel, shallow to deep, does both (Mishkin & Matas, 2015).

How it runs. 0.1 made two probe passes per layer, each from the input up to that layer, so
its cost grew with the square of the depth. Here every selected layer's ``call`` is wrapped
on the instance for the duration of ONE forward pass of the model. On its first call a
wrapped layer has, in its arguments, the real tensor its predecessors produce *after* they
were rescaled; it measures its own pre-activation on it, rescales its kernel and re-runs
only itself on those same arguments until it is in tolerance, then hands the corrected
output to the rest of the network. The cost is one forward pass plus a few single-layer
re-runs. A re-run is exact: the layer gets the very arguments it received (tensors, mask,
``training=False``), and any state of its own (RNN states, seed-generator states) is put
back before each re-run, so no layer needs a pass of its own.

Centring (``center=True``, Krähenbühl et al. 2016). A layer's pre-activation is affine in its
bias, ``z = K(x) + b``. Once ``b <- b - mean(z)`` (per unit, over the batch and spatial axes)
has made every unit's mean 0, scaling the kernel AND the bias by one factor ``s`` gives
``s K(x) + s b = s z``: the mean stays 0 and the std is multiplied by ``s`` exactly. So a
centred layer is centred once, on its input, before the first rescaling, and every rescaling
then multiplies both; scaling the kernel alone would bring the mean back as ``(s - 1) mean(K(x))``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Literal, Mapping

import keras
import numpy as np

from keras_inits import _checks, backend
from keras_inits._probe import (
    LayerSelection,
    StateGuard,
    has_swappable_activation,
    batch_size,
    check_inputs,
    check_selection,
    forward,
    select_layers,
    split_data,
)
from keras_inits._seeds import derive_seed
from keras_inits.model import graph
from keras_inits.model.residual import residual_structure

__all__ = ["LSUV", "LSUVLayerReport", "LSUVReport", "lsuv"]

MIN_SAMPLES = 2
#: Samples of ``x`` the trace that finds the residual merges runs on (``residual="depth_scaled"``).
RESIDUAL_TRACE_SAMPLES = 2
_RESIDUAL_RULES = ("depth_scaled",)

#: ``LSUVLayerReport.statistic`` of a layer measured on its pre-activation.
PRE_STD = "pre_std"
#: ``LSUVLayerReport.statistic`` of a recurrent layer: the std of ``x @ kernel``.
INPUT_PROJECTION_STD = "input_projection_std"
#: A centred pre-activation whose std is below this fraction of its std before centring
#: does not vary over the batch (constant inputs): only rounding is left, which no rescaling
#: should amplify; the layer is then treated as having std 0 (not converged, restored).
CENTRED_STD_FLOOR = 1e-4
#: ``LSUVLayerReport.center_reason`` of every layer when ``center=False``.
CENTER_OFF = "center=False"
#: ``LSUVLayerReport.center_reason`` of a layer without a bias.
NO_BIAS = "no bias (use_bias=False): no variable shifts its pre-activation"
#: ``LSUVLayerReport.center_reason`` of a layer with more than one bias.
SEVERAL_BIASES = "more than one bias: which one shifts the measured pre-activation is not known"
#: ``LSUVLayerReport.center_reason`` of a recurrent layer.
RECURRENT_BIAS = (
    "recurrent layer: its gate pre-activations also depend on the state, and its gate "
    "biases (LSTM's unit forget bias) are left as drawn"
)
#: ``LSUVLayerReport.center_reason`` of a layer whose pre-activation does not have the bias's shape.
BIAS_SHAPE_MISMATCH = "its pre-activation does not broadcast with its bias"
#: ``LSUVLayerReport.center_reason`` of a layer that did not converge (bias restored with the kernels).
NOT_CONVERGED = "did not converge: the bias was restored with the kernels"
#: Passes of CholeskyQR in the orthonormal pre-init: the second brings orthogonality to
#: working precision.
CHOLESKY_QR_PASSES = 2
#: From this aspect ratio (tall / short side) a Gaussian matrix is orthonormalized in float32
#: (its condition number is then below ~6, Marchenko-Pastur); nearer square, in float64.
CHOLESKY_QR_FLOAT32_ASPECT = 2


_POINTWISE_KERNEL = "pointwise_kernel"
_INPUT_KERNEL = "kernel"
_BIAS = "bias"


@dataclasses.dataclass(frozen=True)
class LSUVLayerReport:
    """What LSUV did to one layer.

    Attributes:
        iterations: How many rescalings were applied (0 when the layer was already in
            tolerance after the orthonormal pre-init).
        std_before: The measured std before the first rescaling (after the optional
            orthonormal pre-init).
        std_after: The measured std with the weights the layer is left with (after the
            restore, for a restored layer).
        converged: Whether ``|std - target_std| < tol * target_std`` was reached.
        restored: ``True`` when the layer did not converge within ``max_iter`` and its
            kernels were put back to their values before the call.
        scaled: Names of the variables that were rescaled (``("kernel",)``; the pointwise
            kernel of a separable convolution; each direction's input kernel of a
            ``Bidirectional`` layer).
        statistic: What was measured: ``"pre_std"`` (the std before the layer's fused
            activation, as in :func:`keras_inits.activation_statistics`) or, for recurrent
            layers, ``"input_projection_std"`` (the std of ``x @ kernel``, the input's
            share of every gate pre-activation).
        centered: Whether the bias was set so that every unit's pre-activation has mean 0
            on ``x`` (``center=True``); the bias was then rescaled with the kernel.
        mean_before: The largest ``|mean|`` of a unit's pre-activation over the batch (and
            spatial) axes, before centring and rescaling (after the orthonormal pre-init).
            Units are the bias's entries, or the channels of a layer without a bias. NaN for
            recurrent layers (measured on the input projection, which has no bias).
        mean_after: The same with the weights the layer is left with.
        center_reason: Why the layer was not centred (``""`` when it was): ``center=False``,
            no bias, a recurrent layer, a restored layer...
        target_std: The std this layer was scaled to: ``lsuv``'s ``target_std``, or
            ``s0 / sqrt(L)`` for the last kernel layer of a residual branch
            (``residual="depth_scaled"``: ``s0`` the std of the stream entering the first
            block, ``L`` the model's residual merges; see :func:`lsuv`).
        residual_blocks: Depth indices of the residual blocks whose branch this layer ends
            (empty for every other layer).
    """

    iterations: int
    std_before: float
    std_after: float
    converged: bool
    restored: bool = False
    scaled: tuple[str, ...] = ()
    statistic: str = PRE_STD
    centered: bool = False
    mean_before: float = math.nan
    mean_after: float = math.nan
    center_reason: str = CENTER_OFF
    target_std: float = 1.0
    residual_blocks: tuple[int, ...] = ()


class LSUVReport(dict):
    """The result of :func:`lsuv`: a dict from layer path to :class:`LSUVLayerReport`.

    Attributes:
        skipped: Dict from path to the reason each layer with weights was left alone
            (normalization layers, layers without a kernel such as ``Embedding``, layers
            that did not run on ``x``, recurrent layers whose cell has no 2-D input kernel).
        forward_passes: Full forward passes of the model ``lsuv`` made (1; 2 for a model
            it had to build first). Independent of the depth.
        stream_std: The std ``s0`` of the residual stream entering the first residual
            block, measured during the pass (``residual="depth_scaled"``; see :func:`lsuv`);
            ``None`` for a model without residual merges or with ``residual=None``.
    """

    def __init__(
        self,
        entries: Mapping[str, LSUVLayerReport],
        skipped: Mapping[str, str],
        forward_passes: int,
        stream_std: float | None = None,
    ) -> None:
        super().__init__(entries)
        self.skipped = dict(skipped)
        self.forward_passes = forward_passes
        self.stream_std = stream_std


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
    center: bool = False,
    residual: Literal["depth_scaled"] | None = "depth_scaled",
) -> LSUVReport:
    """Rescale every kernel, shallow to deep, until its layer's pre-activation std is ``target_std``.

    Mishkin & Matas (2015), "All you need is a good init". In ONE forward pass of the model
    on ``x`` (inference mode), each layer with a kernel, when the data reaches it:

    1. with ``orthogonal=True``, has its kernels replaced by orthonormal ones (the law of
       ``keras.initializers.Orthogonal``, drawn and factorized in NumPy, so a seed gives the
       same kernels on every backend; conv kernels flattened to
       ``(prod(shape[:-1]), shape[-1])``; seeds derived from ``(seed, layer index)``);
    2. with ``center=True`` (Krähenbühl et al. 2016), sets its bias so that every unit's
       pre-activation has mean 0 on ``x``: ``b <- b - mean(z)``, the mean over the batch and
       spatial axes per entry of the bias (per filter of a convolution, per ``bias_axes``
       entry of an ``EinsumDense``), and re-runs itself;
    3. measures ``pre_std``, the std of its output *before* its own fused activation (the
       statistic of that name in :func:`keras_inits.activation_statistics`: a
       ``Dense(activation="tanh")`` can never reach an output std of 1, its pre-activation
       can), on the tensor its already rescaled predecessors give it;
    4. rescales, re-running only itself on that same input:

           W <- W * target_std / pre_std    until    |pre_std - target_std| < tol * target_std

       or ``max_iter`` rescalings were made (with a zero bias one is exact). A centred layer
       scales its bias by the same factor: its pre-activation ``W x + b`` is then multiplied
       by exactly that factor, so it keeps mean 0 and one rescaling is exact (scaling ``W``
       alone would shift the mean back by ``(factor - 1) * mean(W x)``);
    5. passes its corrected output on. A layer that did not converge gets its kernels (and
       bias) back as they were before the call (``converged=False, restored=True``; one warning lists
       every such layer) and passes on the output of those kernels.

    Cost: one forward pass plus the single-layer re-runs, whatever the depth (and, with
    ``residual="depth_scaled"``, one traced pass on :data:`RESIDUAL_TRACE_SAMPLES` samples
    that finds the residual merges).

    **Residual models** (``residual="depth_scaled"``, the default). Each residual merge
    ``y = skip + branch`` adds its branch's variance to the stream, so with every layer at
    ``target_std`` the stream's std grows like ``sqrt(L)`` over ``L`` blocks. The last
    kernel layer of every branch (as
    :func:`keras_inits.model.residual.residual_structure` finds it, the layer GPT-2's and
    keras_inits's ``"depth_scaled"`` scheme scales) is instead scaled to

        s0 / sqrt(L)

    ``L`` the number of merges and ``s0`` the std of the stream entering the first block,
    measured during the pass, after every layer before that block (the stem) was rescaled:
    the input of the first layer of block 0's branch. Every other layer of a branch, and
    every layer outside the branches, keeps ``target_std``. Each block then adds a variance of
    ``s0^2 / L`` to the stream, whose variance is about ``2 s0^2`` at the last block (branches
    roughly uncorrelated with their skip): the stream of the last block over the first's is
    about ``sqrt(2 / (1 + 1/L)) <= sqrt(2)`` whatever the depth and whatever the stem's scale
    (GPT-2's ``1/sqrt(2N)`` aims at the same; keras-hub's GPT-2 stream enters at the
    embeddings' std, about 0.02, which no kernel sets). When ``s0`` is 0 or not finite, or
    was not measured before the branch end ran, the branch end gets ``target_std / sqrt(L)``.
    ``LSUVReport.stream_std`` gives ``s0``. Measured (tensorflow; stream std of the last
    block over the first, ``residual=None`` against ``"depth_scaled"``): residual MLPs of
    width 128, relu, 2-layer branches, 256 N(0, 1) inputs, 2.37 and 1.29 at 8 blocks, 4.91
    and 1.41 at 32; keras.applications ResNet50V2 (64x64, 16 blocks) 1.49 and 1.04;
    keras-hub GPT-2 (hidden 64, 4 heads, 8 x 32 tokens) 4.91 and 1.41 at 12 layers, 9.19 and
    1.38 at 48. ``residual=None`` scales every layer to ``target_std``, as the paper does for
    plain networks. A model without merges is the same either way.

    Under a multi-worker strategy (``tf.distribute.MultiWorkerMirroredStrategy``,
    ``jax.distributed``, ``torch.distributed``) every worker runs ``lsuv`` (call it on every
    worker, with the same model), and at the end every kernel it changed is broadcast from
    the chief (``keras_inits.backend.current().broadcast_from_chief``): every worker ends with
    the chief's weights bit for bit, with ``seed=None`` and when the workers' batches ``x``
    differ. The report is each worker's own measurement; the chief's describes the weights
    all of them hold.

    What is scaled:

    * ``Dense``, ``Conv1D/2D/3D``, ``Conv*Transpose``, ``DepthwiseConv*``, ``EinsumDense``
      (``MultiHeadAttention``'s projections...): the kernel.
    * ``SeparableConv1D/2D``: the pointwise kernel only. The output is linear in it, whereas
      scaling both kernels by one factor moves the output by its square (0.1 never
      converged there). The depthwise kernel keeps its (orthonormal) draw.
    * Recurrent layers (``LSTM``, ``GRU``, ``SimpleRNN``, each direction of
      ``Bidirectional``): ``kernel`` is scaled so that ``x @ kernel``, the input's share of
      every gate pre-activation, has std ``target_std`` (``statistic="input_projection_std"``).
      A gated cell's output is bounded (``|h| < 1``), so its output std is not a target;
      the ``recurrent_kernel`` stays orthonormal (its singular values are 1, so the state
      neither grows nor shrinks through it). The projection is measured without a re-run
      of the layer and is exact in one rescaling.
    * Left alone, and listed in ``report.skipped`` with the reason: normalization layers
      (they re-standardize their input), layers with weights but no kernel
      (``Embedding``...), selected layers that did not run on ``x``, recurrent layers with
      stacked or convolutional cells. Biases are changed only with ``center=True``, and
      only in layers with exactly one bias; recurrent layers are never centred (their gate
      pre-activations depend on the state too, and LSTM's forget-gate bias of 1 is
      deliberate). ``LSUVLayerReport.center_reason`` says why a layer was not centred.

    Layers: by default every layer that owns a kernel, in Sequential, Functional, nested
    and subclassed models and inside layers that own sublayers (keras-hub transformer
    blocks). A layer called several times is measured on its first call. The model's
    non-trainable state (batch-norm statistics, RNN and seed-generator states) is left as
    it was found.

    Examples:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((64,))] +
    ...     [keras.layers.Dense(128, activation="gelu") for _ in range(20)])
    >>> x = np.random.default_rng(0).standard_normal((256, 64)).astype("float32")
    >>> report = lsuv(model, x, seed=0)
    >>> all(entry.converged for entry in report.values()), report.forward_passes
    (True, 1)

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
            ``activation_statistics``). Layers without a kernel are listed as skipped.
        seed: Seed of the orthonormal pre-init (each kernel gets an independent stream
            derived from ``(seed, layer index)``); the same seed gives the same weights.
            ``None`` draws fresh ones (under a multi-worker strategy, the chief's, which
            every worker receives).
        residual: ``"depth_scaled"``: the last kernel layer of each residual branch gets
            ``s0 / sqrt(L)`` (above); ``None``: every layer gets ``target_std``.
        center: Set each bias first so that every unit's pre-activation has mean 0 on ``x``,
            then rescale kernel and bias together (see step 2). ``False`` leaves every bias
            as it is. Measured (depth-30 width-128 MLPs, 4,000 MNIST digits, Adam(1e-3),
            batch 128, median of 3 seeds, held-out accuracy): after 2 epochs it lifts GELU
            from 0.28 to 0.43 and SiLU from 0.20 to 0.53 (He: 0.43, 0.69); after 5 epochs the
            starts are level for GELU and SiLU; it hurts ReLU (0.23 against 0.66 at 2 epochs,
            0.42 against 0.84 at 5).

    Returns:
        An :class:`LSUVReport`: a dict from layer path to :class:`LSUVLayerReport`, shallow
        to deep, with ``skipped`` (path -> reason), ``forward_passes`` and ``stream_std``.

    Raises:
        ValueError: for bad arguments, a batch of fewer than 2 samples, a model without
            kernels, non-finite values (NaN or inf) in a layer's pre-activation during the
            iterations or in its output after them (an activation that overflows, even if a
            later layer squashes the inf), or a non-finite model output. Then every kernel is first
            restored to its value before the call (nothing is lost) and the message names
            the layer.
        TypeError: for arguments of the wrong type.

    Warns:
        UserWarning: once, listing the layers that did not converge within ``max_iter``
            (their kernels were restored).

    Reference:
        Mishkin & Matas, "All you need is a good init", ICLR 2016 (arXiv:1511.06422).
        Krähenbühl, Doersch, Donahue & Darrell, "Data-dependent initializations of
        convolutional neural networks", ICLR 2016 (arXiv:1511.06856).
    """
    checked = _check_arguments(target_std, tol, max_iter, orthogonal, seed, center, residual)
    target_std = checked["target_std"]
    tol = checked["tol"]
    max_iter = checked["max_iter"]
    orthogonal = checked["orthogonal"]
    seed = checked["seed"]
    center = checked["center"]
    residual = checked["residual"]
    _checks.check_model(model)
    check_inputs(model, x)
    samples = batch_size(x)
    if samples < MIN_SAMPLES:
        raise ValueError(
            f"lsuv needs at least {MIN_SAMPLES} samples to estimate a std. "
            f"Received: x with {samples} sample(s)"
        )
    forward_passes = 0
    if not model.built:
        forward(model, x, training=False)
        forward_passes += 1
    candidates, skipped = _candidates(model, layers)
    if not candidates:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in skipped.items()) or "(no layer with weights)"
        raise ValueError(
            f"lsuv found no layer with a kernel to rescale ({reasons}). "
            f"Received: model={model.name!r}, layers={layers!r}"
        )

    plan = None if residual is None else _residual_plan(model, x, candidates)
    walk = _RescalingPass(candidates, target_std, tol, max_iter, orthogonal, seed, center, plan)
    try:
        with StateGuard(model), backend.current().without_gradients(), walk:
            outputs = forward(model, x, training=False)
        forward_passes += 1
        _check_finite_output(outputs)
    except _NonFinite as error:
        walk.restore_all()
        raise ValueError(
            f"lsuv stopped at layer {error.path!r}: its {error.what} is not finite (NaN or inf) "
            f"after {error.iterations} rescaling(s). Every kernel (and centred bias) was restored "
            "to its value before the call. Check the inputs and the layers before it."
        ) from None
    except BaseException:
        walk.restore_all()
        raise

    for path in candidates:
        if path not in walk.reports:
            skipped[path] = "did not run on x"
    restored = [path for path, entry in walk.reports.items() if entry.restored]
    if restored:
        details = ", ".join(
            f"{path!r} (pre_std {walk.last_std[path]:.4g})" for path in restored
        )
        warnings.warn(
            f"lsuv: {len(restored)} layer(s) did not reach std {target_std} within tol {tol} in "
            f"{max_iter} iteration(s); their kernels (and biases) were restored to their values "
            f"before the call: {details}.",
            stacklevel=2,
        )
    changed = [variable for kernels, _ in walk._originals.values() for variable in kernels]
    backend.current().broadcast_from_chief(changed)
    return LSUVReport(walk.reports, skipped, forward_passes, walk.stream_std)


class LSUV(keras.callbacks.Callback):
    """Run :func:`lsuv` once, when training starts.

    Examples:

    >>> callbacks = [keras_inits.LSUV(x_train[:256], seed=0),
    ...              keras_inits.ActivationStatistics("logs", x_train[:256])]
    >>> model.fit(x_train, y_train, epochs=3, callbacks=callbacks)  # doctest: +SKIP

    Args:
        data: The probe batch: inputs, or an ``(x, y)`` tuple (``y`` is ignored).
        **lsuv_kwargs: Passed to :func:`lsuv` (``target_std``, ``tol``, ``max_iter``,
            ``orthogonal``, ``layers``, ``seed``, ``center``, ``residual``). Checked at
            construction.

    Attributes:
        report: The report of :func:`lsuv`, ``None`` until it ran.
    """

    def __init__(self, data: Any, **lsuv_kwargs: Any) -> None:
        super().__init__()
        known = {"target_std", "tol", "max_iter", "orthogonal", "layers", "seed", "center", "residual"}
        unknown = sorted(set(lsuv_kwargs) - known)
        if unknown:
            raise TypeError(
                f"LSUV got unexpected keyword arguments {unknown}. Accepted: {sorted(known)}. "
                f"Received: {', '.join(f'{key}={lsuv_kwargs[key]!r}' for key in unknown)}"
            )
        _check_arguments(
            lsuv_kwargs.get("target_std", 1.0),
            lsuv_kwargs.get("tol", 0.02),
            lsuv_kwargs.get("max_iter", 10),
            lsuv_kwargs.get("orthogonal", True),
            lsuv_kwargs.get("seed"),
            lsuv_kwargs.get("center", False),
            lsuv_kwargs.get("residual", "depth_scaled"),
        )
        layers = lsuv_kwargs.get("layers")
        if layers is not None:
            check_selection(layers)
        self.x, _ = split_data(data)
        check_inputs(None, self.x)
        self.lsuv_kwargs = lsuv_kwargs
        self.report: LSUVReport | None = None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.report is not None:
            return
        self.report = lsuv(self.model, self.x, **self.lsuv_kwargs)


def _check_arguments(
    target_std: Any, tol: Any, max_iter: Any, orthogonal: Any, seed: Any, center: Any, residual: Any
) -> dict[str, Any]:
    """The arguments of `lsuv` as Python values (NumPy scalars accepted); raises if bad."""
    return {
        "target_std": _checks.check_positive("target_std", target_std),
        "tol": _checks.check_positive("tol", tol),
        "max_iter": _checks.check_int("max_iter", max_iter, minimum=1),
        "orthogonal": _checks.check_bool("orthogonal", orthogonal),
        "seed": None if seed is None else _checks.check_seed(seed),
        "center": _checks.check_bool("center", center),
        "residual": None if residual is None else _checks.check_choice("residual", residual, _RESIDUAL_RULES),
    }


@dataclasses.dataclass(frozen=True)
class _ResidualPlan:
    """Where the residual rule applies: the branch ends, the merges, and where the stream enters."""

    #: Path of each candidate layer that ends a residual branch -> the blocks it ends.
    ends: Mapping[str, tuple[int, ...]]
    #: ``L``, the number of residual merges.
    merges: int
    #: The first layer of block 0's branch: its input is the stream entering the first block.
    entry: keras.layers.Layer


def _residual_plan(model: keras.Model, x: Any, candidates: Mapping[str, "_Plan"]) -> _ResidualPlan | None:
    """The residual rule's plan for ``model`` (``None`` without residual merges)."""
    sample = keras.tree.map_structure(lambda array: array[:RESIDUAL_TRACE_SAMPLES], x)
    blocks = residual_structure(model, sample).blocks
    if not blocks:
        return None
    ends: dict[str, tuple[int, ...]] = {}
    for block in blocks:
        if block.last_layer in candidates:
            ends[block.last_layer] = ends.get(block.last_layer, ()) + (block.index,)
    entry = graph.walk(model)[blocks[0].branch[0]]
    return _ResidualPlan(ends, len(blocks), entry)


# --------------------------------------------------------------------------------------
# What to rescale
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How one layer is measured and rescaled.

    ``kernels`` are every kernel-like variable of the layer (pre-initialized, restored on
    failure); ``scaled`` those multiplied by the factor. For a recurrent layer,
    ``projections`` holds each direction's input kernel: the layer is then measured on
    ``x @ kernel`` instead of on its re-run output. ``bias`` is the variable centring shifts
    (``None`` with the reason in ``center_reason``).
    """

    layer: keras.layers.Layer
    kernels: tuple[Any, ...]
    scaled: tuple[Any, ...]
    projections: tuple[Any, ...] = ()
    bias: Any = None
    center_reason: str = ""


def _plan(layer: keras.layers.Layer, weights: tuple[graph.Weight, ...]) -> _Plan | str:
    """The plan for ``layer`` (roles from the model graph), or the reason it is left alone."""
    kernels = tuple(weight.variable for weight in weights if weight.is_kernel)
    if isinstance(layer, graph.LEAF_LAYER_TYPES):
        inputs = [weight.variable for weight in weights if weight.role == _INPUT_KERNEL]
        directions = 2 if isinstance(layer, keras.layers.Bidirectional) else 1
        if len(inputs) != directions or any(len(variable.shape) != 2 for variable in inputs):
            return (
                "recurrent layer whose cell has no 2-D input kernel (stacked or "
                "convolutional cells): its gate pre-activations cannot be measured "
                "from its input"
            )
        return _Plan(
            layer, kernels, tuple(inputs), projections=tuple(inputs), center_reason=RECURRENT_BIAS
        )
    pointwise = tuple(weight.variable for weight in weights if weight.role == _POINTWISE_KERNEL)
    biases = [weight.variable for weight in weights if weight.role == _BIAS]
    if not biases:
        return _Plan(layer, kernels, pointwise or kernels, center_reason=NO_BIAS)
    if len(biases) > 1:
        return _Plan(layer, kernels, pointwise or kernels, center_reason=SEVERAL_BIASES)
    return _Plan(layer, kernels, pointwise or kernels, bias=biases[0])


def _candidates(model: keras.Model, layers: LayerSelection) -> tuple[dict[str, _Plan], dict[str, str]]:
    """The layers to rescale (path -> plan) and those left alone (path -> reason)."""
    if layers is None:
        chosen = graph.walk(model)
    else:
        chosen = select_layers(model, layers)
    plans: dict[str, _Plan] = {}
    skipped: dict[str, str] = {}
    for path, layer in chosen.items():
        weights = graph.layer_weights(layer, path)
        if not weights:
            if layers is not None:
                skipped[path] = "no weights"
            continue
        if isinstance(layer, graph.NORMALIZATION_LAYER_TYPES):
            skipped[path] = "normalization layer: it re-standardizes its input"
            continue
        if not any(weight.is_kernel for weight in weights):
            roles = sorted({weight.role for weight in weights})
            skipped[path] = f"no kernel to rescale (weights: {', '.join(roles)})"
            continue
        plan = _plan(layer, weights)
        if isinstance(plan, str):
            skipped[path] = plan
        else:
            plans[path] = plan
    return plans, skipped


# --------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------


class _NonFinite(BaseException):
    """Ends the pass when a measured tensor is not finite.

    A ``BaseException`` so that no ``except Exception`` on the way (Keras's traceback
    filter, ``forward``) turns it into another error.
    """

    def __init__(self, path: str, iterations: int, what: str = "pre-activation"):
        super().__init__(path)
        self.path = path
        self.iterations = iterations
        self.what = what


def _finite_std(tensors: Any) -> float:
    """The std (float64) of every value of ``tensors``; NaN if any value is not finite."""
    to_numpy = backend.current().to_numpy
    arrays = [np.asarray(to_numpy(tensor)).reshape(-1) for tensor in tensors]
    values = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    if not np.all(np.isfinite(values)):
        return math.nan
    return float(values.std(dtype=np.float64))


def _all_finite(outputs: Any) -> bool:
    """Whether every floating value in the structure ``outputs`` is finite."""
    to_numpy = backend.current().to_numpy
    for tensor in keras.tree.flatten(outputs):
        if tensor is None:
            continue
        values = np.asarray(to_numpy(tensor))
        if values.dtype.kind not in "iub" and not np.all(np.isfinite(values)):
            return False
    return True


def _check_finite_output(outputs: Any) -> None:
    if not _all_finite(outputs):
        raise _NonFinite("<model output>", 0, what="output")


def _copy(variable: Any) -> np.ndarray:
    """A NumPy copy of a variable's value."""
    return np.array(backend.current().to_numpy(variable), copy=True)


def _first_input(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    if args:
        return args[0]
    for name in ("sequences", "inputs"):
        if name in kwargs:
            return kwargs[name]
    raise ValueError("lsuv could not find the input sequence of a recurrent layer call.")


def _orthonormal(shape: tuple[int, ...], seed: int | None) -> np.ndarray:
    """An orthonormal kernel (the law of ``keras.initializers.Orthogonal``), drawn in NumPy.

    A Gaussian ``(tall, short)`` matrix for the kernel flattened to
    ``(prod(shape[:-1]), shape[-1])``, from ``numpy.random.default_rng(seed)``, and the Q of its
    QR decomposition with R's diagonal positive (Haar-distributed), computed by CholeskyQR2
    (two passes of ``R = chol(A^T A)``, ``A <- A R^-1``: matrix products, which BLAS runs fast),
    in float32 for tall matrices and in float64 for near-square ones (orthogonal to working
    precision), LAPACK's QR if a Cholesky fails. Not the backend's eager
    ops: eager JAX compiles ``keras.random.normal`` and ``ops.qr`` once per kernel shape, which
    made the pre-init 83% of lsuv's time on ResNet50V2 (22.8 of 27.5 s). The same seed gives
    the same kernels on every backend. Returns NumPy: ``variable.assign`` casts it.
    """
    rows = math.prod(shape[:-1])
    cols = shape[-1]
    tall, short = max(rows, cols), min(rows, cols)
    precision = np.float32 if tall >= CHOLESKY_QR_FLOAT32_ASPECT * short else np.float64
    matrix = np.random.default_rng(seed).standard_normal((tall, short), dtype=precision)
    try:
        for _ in range(CHOLESKY_QR_PASSES):
            lower = np.linalg.cholesky(matrix.T @ matrix)
            matrix = matrix @ np.linalg.inv(lower).T
    except np.linalg.LinAlgError:
        matrix, upper = np.linalg.qr(np.random.default_rng(seed).standard_normal(matrix.shape))
        matrix *= np.where(np.diag(upper) < 0, -1.0, 1.0)
    if rows < cols:
        matrix = matrix.T
    return matrix.reshape(shape)


def _unit_axes(
    layer: keras.layers.Layer, tensor: Any, unit_shape: tuple[int, ...]
) -> tuple[int, ...] | None:
    """The axes of ``tensor`` a unit's mean is taken over; ``None`` if it does not fit ``unit_shape``.

    ``unit_shape`` is aligned with the trailing axes (as ``ops.add(outputs, bias)``
    broadcasts it); a ``channels_first`` layer's units are on axis 1. Axes where
    ``unit_shape`` is 1 (``EinsumDense`` biases over some output axes only) are averaged too.
    """
    shape = tuple(tensor.shape)
    channels_first = getattr(layer, "data_format", None) == "channels_first" and len(shape) > 2
    if channels_first:
        if len(unit_shape) != 1 or shape[1] != unit_shape[0]:
            return None
        return tuple(axis for axis in range(len(shape)) if axis != 1)
    offset = len(shape) - len(unit_shape)
    if offset < 1:
        return None
    trailing = shape[offset:]
    if any(unit not in (1, dim) for unit, dim in zip(unit_shape, trailing)):
        return None
    spread = tuple(offset + index for index, unit in enumerate(unit_shape) if unit == 1)
    return tuple(range(offset)) + spread


def _unit_means(
    layer: keras.layers.Layer, tensor: Any, unit_shape: tuple[int, ...]
) -> np.ndarray | None:
    """Each unit's mean (float64, of ``unit_shape``) of ``tensor``; ``None`` if the shapes do not fit."""
    axes = _unit_axes(layer, tensor, unit_shape)
    if axes is None:
        return None
    values = np.asarray(backend.current().to_numpy(tensor), dtype=np.float64)
    return values.mean(axis=axes).reshape(unit_shape)


def _largest_mean(layer: keras.layers.Layer, tensors: Any, bias: Any) -> float:
    """The largest ``|mean|`` of a unit (an entry of ``bias``, else a channel) of one tensor."""
    if len(tensors) != 1:
        return math.nan
    tensor = tensors[0]
    if bias is not None:
        unit_shape = tuple(int(dim) for dim in bias.shape)
    elif getattr(layer, "data_format", None) == "channels_first" and len(tensor.shape) > 2:
        unit_shape = (int(tensor.shape[1]),)
    else:
        unit_shape = (int(tensor.shape[-1]),)
    means = _unit_means(layer, tensor, unit_shape)
    if means is None:
        return math.nan
    return float(np.max(np.abs(means)))


def _scale(variables: tuple[Any, ...], factor: float) -> None:
    """``W <- W * factor``, in NumPy: eager JAX would compile a multiply per kernel shape."""
    for variable in variables:
        values = backend.current().to_numpy(variable)
        variable.assign(values * np.asarray(factor, dtype=values.dtype))


class _RescalingPass:
    """Context manager: wraps each planned layer's ``call`` so that it rescales itself.

    Attributes:
        reports: Path -> :class:`LSUVLayerReport`, in completion order of first calls.
        last_std: Path -> the std measured before a restore (for the warning).
    """

    def __init__(
        self,
        plans: Mapping[str, _Plan],
        target_std: float,
        tol: float,
        max_iter: int,
        orthogonal: bool,
        seed: int | None,
        center: bool = False,
        residual: _ResidualPlan | None = None,
    ) -> None:
        self._plans = dict(plans)
        self._residual = residual
        self._center = center
        self._target_std = target_std
        self._tol = tol
        self._max_iter = max_iter
        self._orthogonal = orthogonal
        self._seed = seed
        self._started = 0
        self._undo: list[Callable[[], None]] = []
        self._originals: dict[str, tuple[list[Any], list[np.ndarray]]] = {}
        self.reports: dict[str, LSUVLayerReport] = {}
        self.last_std: dict[str, float] = {}
        self.stream_std: float | None = None

    # -- installation ------------------------------------------------------------------

    def __enter__(self) -> "_RescalingPass":
        try:
            for path, plan in self._plans.items():
                self._install(path, plan)
            if self._residual is not None:
                self._install_stream_probe(self._residual.entry)
        except BaseException:
            self._uninstall()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._uninstall()

    def _uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _install(self, path: str, plan: _Plan) -> None:
        layer = plan.layer
        original_call = layer.call
        had_own_call = "call" in vars(layer)
        calls = {"count": 0}
        capture: dict[str, Any] = {"active": False, "tensors": None}

        def rescaling_call(*args: Any, **kwargs: Any) -> Any:
            calls["count"] += 1
            if calls["count"] > 1:
                return original_call(*args, **kwargs)

            def run() -> tuple[Any, Any]:
                capture["active"] = True
                capture["tensors"] = None
                try:
                    outputs = original_call(*args, **kwargs)
                finally:
                    capture["active"] = False
                return outputs, capture["tensors"]

            return self._rescale(path, plan, run, args, kwargs)

        object.__setattr__(layer, "call", rescaling_call)
        self._undo.append(
            (lambda: object.__setattr__(layer, "call", original_call))
            if had_own_call
            else (lambda: object.__delattr__(layer, "call"))
        )
        if not plan.projections and has_swappable_activation(layer):
            original_activation = layer.activation

            def recording_activation(inputs: Any, *args: Any, **kwargs: Any) -> Any:
                if capture["active"] and capture["tensors"] is None:
                    capture["tensors"] = tuple(keras.tree.flatten(inputs))
                return original_activation(inputs, *args, **kwargs)

            object.__setattr__(layer, "activation", recording_activation)
            self._undo.append(lambda: object.__setattr__(layer, "activation", original_activation))

    def _install_stream_probe(self, layer: keras.layers.Layer) -> None:
        """Record the std of ``layer``'s input at its first call (installed last: runs first)."""
        inner_call = layer.call
        had_own_call = "call" in vars(layer)

        def probing_call(*args: Any, **kwargs: Any) -> Any:
            if self.stream_std is None:
                data = graph._data_tensors(args, kwargs)
                if data:
                    self.stream_std = _finite_std(data[:1])
            return inner_call(*args, **kwargs)

        object.__setattr__(layer, "call", probing_call)
        self._undo.append(
            (lambda: object.__setattr__(layer, "call", inner_call))
            if had_own_call
            else (lambda: object.__delattr__(layer, "call"))
        )

    def _target(self, path: str) -> float:
        """``target_std``, or ``s0 / sqrt(L)`` for the last kernel layer of a residual branch."""
        if self._residual is None or path not in self._residual.ends:
            return self._target_std
        stream = self.stream_std
        if stream is None or not math.isfinite(stream) or stream <= 0.0:
            stream = self._target_std
        return stream / math.sqrt(self._residual.merges)

    # -- one layer -----------------------------------------------------------------------

    def _rescale(self, path: str, plan: _Plan, run: Callable[[], tuple[Any, Any]], args: tuple, kwargs: dict) -> Any:
        layer = plan.layer
        index = self._started
        self._started += 1
        kernels = plan.kernels
        kept = kernels + ((plan.bias,) if self._center and plan.bias is not None else ())
        self._originals[path] = (kept, [_copy(variable) for variable in kept])
        state = [(variable, _copy(variable)) for variable in layer.non_trainable_variables]
        if self._orthogonal:
            for variable in kernels:
                variable.assign(_orthonormal(tuple(variable.shape), derive_seed(self._seed, index)))

        def rerun() -> tuple[Any, Any]:
            for variable, value in state:
                variable.assign(value)
            return run()

        center_reason = plan.center_reason if self._center else CENTER_OFF
        scaled = plan.scaled
        mean_before = math.nan
        floor = 0.0
        if plan.projections:
            measure = self._projection_measure(plan, args, kwargs)
            outputs = None
        else:
            outputs, pre = run()

            def measured() -> Any:
                return pre if pre is not None else keras.tree.flatten(outputs)

            def measure() -> list[float]:
                return [_finite_std(measured())]

            mean_before = _largest_mean(layer, measured(), plan.bias)
            if self._center and plan.bias is not None:
                center_reason = self._centre(layer, measured(), plan.bias)
                if not center_reason:
                    floor = CENTRED_STD_FLOOR * _finite_std(measured())
                    scaled = scaled + (plan.bias,)
                    outputs, pre = rerun()

        target = self._target(path)
        stds = measure()
        before = self._worst(stds, target)
        iterations = 0
        while True:
            if not all(math.isfinite(std) for std in stds):
                raise _NonFinite(path, iterations)
            if self._within(stds, target) or any(std <= floor for std in stds) or iterations >= self._max_iter:
                break
            factors = [target / std for std in stds]
            if plan.projections:
                for variable, factor in zip(plan.scaled, factors):
                    _scale((variable,), factor)
            else:
                _scale(scaled, factors[0])
                outputs, pre = rerun()
            iterations += 1
            stds = measure()
        converged = self._within(stds, target)
        restored = not converged
        after = self._worst(stds, target)
        if restored:
            self.last_std[path] = after
            for variable, value in zip(*self._originals[path]):
                variable.assign(value)
        if plan.projections or restored:
            outputs, pre = rerun()
        if restored:
            after = self._worst(measure(), target)
            if not center_reason:
                center_reason = NOT_CONVERGED
        mean_after = math.nan if plan.projections else _largest_mean(layer, measured(), plan.bias)
        if not _all_finite(outputs):
            # A finite pre-activation whose activation overflows (exp of a large bias): the
            # layer is not converged, whatever its std, even if later layers squash the inf.
            raise _NonFinite(path, iterations, what="output")
        self.reports[path] = LSUVLayerReport(
            iterations=iterations,
            std_before=before,
            std_after=after,
            converged=converged,
            restored=restored,
            scaled=tuple(variable.name for variable in plan.scaled),
            statistic=INPUT_PROJECTION_STD if plan.projections else PRE_STD,
            centered=not center_reason,
            mean_before=mean_before,
            mean_after=mean_after,
            center_reason=center_reason,
            target_std=target,
            residual_blocks=() if self._residual is None else tuple(self._residual.ends.get(path, ())),
        )
        return outputs

    def _centre(self, layer: keras.layers.Layer, tensors: Any, bias: Any) -> str:
        """``bias <- bias - mean(pre-activation)`` per unit; ``""``, or why it could not."""
        if len(tensors) != 1:
            return BIAS_SHAPE_MISMATCH
        unit_shape = tuple(int(dim) for dim in bias.shape)
        means = _unit_means(layer, tensors[0], unit_shape)
        if means is None:
            return BIAS_SHAPE_MISMATCH
        values = backend.current().to_numpy(bias)
        bias.assign((values.astype(np.float64) - means).astype(values.dtype))
        return ""

    def _projection_measure(self, plan: _Plan, args: tuple, kwargs: Mapping[str, Any]) -> Callable[[], list[float]]:
        sequences = _first_input(args, kwargs)

        def measure() -> list[float]:
            stds = []
            for kernel in plan.projections:
                inputs = keras.ops.cast(sequences, kernel.dtype)
                stds.append(_finite_std([keras.ops.matmul(inputs, kernel)]))
            return stds

        return measure

    def _within(self, stds: list[float], target: float) -> bool:
        return all(abs(std - target) < self._tol * target for std in stds)

    def _worst(self, stds: list[float], target: float) -> float:
        """The std farthest from the target (NaN first), the one a report shows."""
        return max(stds, key=lambda std: math.inf if not math.isfinite(std) else abs(std - target))

    # -- failure -------------------------------------------------------------------------

    def restore_all(self) -> None:
        """Put every kernel (and centred bias) touched so far back to its value before the call."""
        for kernels, values in self._originals.values():
            for variable, value in zip(kernels, values):
                variable.assign(value)
