"""Findings in words from the statistics of a probe pass: what is wrong at init, and what to do.

:func:`activation_statistics` measures; :func:`diagnose` reads the numbers the way a person who
knows the He/Xavier derivation would, and says which layers are in trouble, which measured
number crossed which named threshold, and what to use instead, in keras_inits terms. The
rules are a pure function of the statistics (:func:`findings_from_statistics`), so the
callback and the command line reuse one probe pass.

The rules, per kind (``i`` a monitored layer in depth order, ``0`` the first):

* ``nonfinite``: a layer output holds NaN or +-inf (``nonfinite_count > NONFINITE_COUNT``).
* ``vanishing_signal`` / ``exploding_signal``: ``pre_std_i / pre_std_0`` (the quantity the
  He/Xavier derivation keeps at 1) below :data:`VANISHING_RATIO` / above
  :data:`EXPLODING_RATIO`, on the deepest layers from where it stays beyond the threshold to
  the last layer (a branch of a residual block that starts at 0 and is added back to the
  stream does not count: the signal recovers after it). A first layer whose ``pre_std`` is
  exactly 0 means no signal at all (a zero or constant kernel): every layer with
  ``pre_std == 0`` is vanishing.
* ``vanishing_gradients`` / ``exploding_gradients`` (statistics measured with ``y``):
  ``grad_std_i / grad_std_ref`` below :data:`GRADIENT_VANISHING_RATIO` / above
  :data:`GRADIENT_EXPLODING_RATIO` on the shallowest layers, from the first layer to where it
  comes back within the threshold; ``ref`` is the last layer, or the one before it when the
  last layer's activation is a softmax or sigmoid (its gradient is ``d loss / d
  probabilities``, on another scale).
* ``dead_units``: ``dead_fraction > DEAD_FRACTION`` on a layer with signal (``pre_std > 0``),
  other than layers fed only by a global pooling (below): every sample gives them nearly the
  same input, so each unit is alive for all samples or for none, half of them by chance (5
  of the 8 units of a MobileNetV3 squeeze-and-excitation branch at init).
* ``saturation``: ``saturation_fraction > SATURATION_FRACTION`` (bounded activations only).
* ``collapsed_inputs``: mean pairwise cosine similarity ``> COLLAPSE_COSINE`` on a layer
  whose output is not all zero, other than the last layer (a softmax or a single output
  unit points one way whatever the inputs), softmax layers, lookup tables and layers fed only
  by a global pooling (:func:`pooled_layers`: a squeeze-and-excitation branch, a classifier
  head; each sample is reduced to its channel means, alike for every sample at init). When
  the collapse starts at the first layer, :func:`diagnose` reads the inputs for the remedy:
  a probe batch already alike (:func:`input_cosine` ``> COLLAPSE_COSINE``) wants centring;
  inputs apart that meet a ``Rescaling`` or ``Normalization`` (:data:`PREPROCESSING_TYPES`)
  want data in that layer's range; otherwise the first kernel is constant.
* ``growing_stream``: the residual stream's std after block ``k`` over the std entering
  block 0 (the product of the blocks' ``growth``) above :data:`STREAM_GROWTH`.

Lookup tables (layers whose only drawn weights are embedding tables: ``Embedding``, keras-hub's
``ReversibleEmbedding`` and ``PositionEmbedding``) return rows of a table, not a transform of a
signal: the scale of their output is the table's init (0.02 in keras-hub), and a position
embedding gives every sample the same rows. They are neither the reference of the signal
ratios (the first layer that is not a lookup is) nor judged for collapse.

A model whose batch-normalization layers were never trained (moving mean 0 and variance 1,
a fresh ``keras.applications`` model) is probed in training mode by default: in inference
mode those layers are identities, a forward pass that training never runs (Keras's
MobileNetV2 at init "vanishes" to 1e-11 that way, and trains).

Calibration (``benchmarks/diagnose_calibration.py``) runs every configuration of
``benchmarks/depth.py`` and of the examples through :func:`diagnose`; the constants' comments
say which measured numbers each one separates.
"""

from __future__ import annotations

import collections
import dataclasses
import html
import math
from typing import Any, Collection, Literal, Mapping, Sequence

import keras
import numpy as np

from keras_inits import _checks, backend, gains
from keras_inits import activations as activation_registry
from keras_inits.model import graph
from keras_inits.stats import (
    ModelStatistics,
    StreamStatistics,
    activation_statistics,
    mean_pairwise_cosine,
)

Kind = Literal[
    "vanishing_signal",
    "exploding_signal",
    "vanishing_gradients",
    "exploding_gradients",
    "dead_units",
    "saturation",
    "collapsed_inputs",
    "nonfinite",
    "growing_stream",
]

#: Every kind, in the order a report lists them (root causes first).
KINDS: tuple[str, ...] = (
    "nonfinite",
    "vanishing_signal",
    "exploding_signal",
    "saturation",
    "dead_units",
    "collapsed_inputs",
    "growing_stream",
    "vanishing_gradients",
    "exploding_gradients",
)

#: A layer output with more NaN/inf values than this is flagged: any at all.
NONFINITE_COUNT = 0

#: ``pre_std(layer) / pre_std(first layer)`` below this: the signal has vanished. Measured
#: (``benchmarks/diagnose_calibration.py``, width 256, depth 50): Keras's glorot_uniform with
#: relu 2e-8, leaky_relu 7e-8, gelu 3e-15, silu 2e-15, mish 1e-11, he_normal with gelu 1e-6 and
#: mish 5e-3 to 1.2e-2 (mish's slope at 0 is 0.6 < 1/sqrt(2): the decay is exponential) fall
#: below; glorot with tanh (0.09, sigma_w = 1 is tanh's edge of chaos, where the std decays
#: like a power of depth and the network trains: 0.88 held-out accuracy at depth 50) and
#: with elu (0.05, the same power law: elu is linear at 0) stay above, as does every He,
#: reinitialize and lsuv start.
VANISHING_RATIO = 2e-2

#: ``pre_std(layer) / pre_std(first layer)`` above this: the signal has exploded. Measured
#: (width 256, depth 50): He(gelu) 19-29x (held-out accuracy 0.11 after training),
#: reinitialize with gelu 7.9-20x, He(silu) 1300-2000x, Keras's he_normal with selu 20-37x
#: fall above; He(relu) and lsuv (at most 1.9x), Keras's he_normal with elu (3.0-3.8x) and
#: softplus (1.9-3.4x), stable maps that settle at a larger fixed point, stay below. He(mish)
#: sits at the boundary (4.3-5.9x: mish's variance map is barely unstable, slope 1.08).
EXPLODING_RATIO = 5.0

#: Share of a layer's units that are 0 on every probe sample above which it has dead units.
#: With zero-mean symmetric kernels and zero biases a unit is dead with probability at most
#: 1/2 (``w`` and ``-w`` are equally likely), reached when every input has collapsed to one
#: direction: He relu at depth 50 measures 0.38-0.48. Only a negative bias (or a skewed
#: kernel) goes beyond: ReLU with bias -1 kills every unit within a few layers.
DEAD_FRACTION = 0.6

#: Share of a bounded activation's values within ``SATURATION_MARGIN`` of a bound above
#: which the layer saturates. Measured (width 256, depth 50): N(0, 1) kernels put 0.6-0.97
#: of tanh's values at +-1; the largest gains anyone recommends for tanh stay far below:
#: torch's 5/3 0.11, He(tanh) 0.10, Keras's he_normal 0.06, glorot and lsuv 0.009.
SATURATION_FRACTION = 0.3

#: Mean pairwise cosine similarity above which every input is mapped to the same direction.
#: Not lower: a non-negative output is never near 0 (independent inputs give 1/pi after a
#: relu, ~0.86 after a sigmoid). Measured (width 256): sigmoid and softplus reach 0.9999+ at
#: depth 50 under every gain, lsuv included; relu at depth 100 0.9958-0.9995 under every
#: start (He, lsuv: 0.44-0.56 held-out accuracy after training, against 0.82 at depth 2)
#: fall above; relu at depth 50 (He, lsuv: 0.978-0.989; 0.74-0.76 after training) and every
#: tanh, selu, elu, gelu, silu, mish start (at most 0.98) stay below.
COLLAPSE_COSINE = 0.995

#: ``grad_std(layer) / grad_std(reference layer)`` below this: the gradient vanishes before
#: it reaches the first layers (Glorot & Bengio's Fig. 7). Measured (width 256, depth 50,
#: a random-projection loss): Keras's glorot with relu 5e-8, gelu 2e-15, every sigmoid start
#: below 1e-8, He(softplus) 8e-13, Keras's he_normal with mish 0.015 fall below; glorot with
#: tanh (0.16, trains to 0.88) and elu (0.068), lsuv with silu (0.25) and gelu (0.42) stay
#: above.
GRADIENT_VANISHING_RATIO = 2e-2

#: ``grad_std(layer) / grad_std(reference layer)`` above this: the gradient explodes toward
#: the first layers. Measured (width 256, depth 50): He(tanh) 49x and lsuv with tanh 56x
#: (the chaotic phase: 0.42 held-out accuracy after training, against 0.88 for glorot),
#: torch's gain 5/3 92-104x, He(gelu) 55-74x, He(mish) 18-21x, He(silu) 3100-4200x, Keras's
#: he_normal with selu 166x and with elu 14-16x fall above (at depth 100 He(tanh) 3100x);
#: He(selu) (6.0x), lsuv with selu (5.3x), silu (5.9x) and gelu (3.6x), He(relu) (1.3x)
#: stay below. Keras's he_normal with tanh (9.5-10.5x) and He(gelu, mode="fan_out") (9.7x) sit
#: at the boundary.
GRADIENT_EXPLODING_RATIO = 10.0

#: The residual stream's std over the std entering the first block above this: the stream
#: grows with depth. Measured (residual MLP, 16 blocks Dense-relu-Dense, width 64): Keras's
#: default kernels 16-27x; He kernels without a residual scheme 3.6-4.2x (the sqrt(L + 1)
#: of adding L unit-variance branches); ``reinitialize(model, residual="depth_scaled")``
#: 1.1-1.3x; ``keras.applications.ResNet50V2`` at init 2.0x (its projection shortcuts start
#: each stage afresh).
STREAM_GROWTH = 3.0

#: Activations whose output is a probability: the probe's gradient there is ``d loss / d p``.
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")
#: Activations whose outputs point the same way whatever the inputs (a near-uniform
#: probability vector at init): their cosine says nothing about collapse.
NOT_DIRECTIONS = ("softmax", "log_softmax")
#: Activations that have exact zeros on half the line (dead units are theirs).
RECTIFIERS = ("relu", "relu6", "leaky_relu")
#: Bounded activations: the cure of their vanishing, exploding or chaotic starts is the
#: critical gain (``edge_of_chaos``), not the variance-preserving one.
BOUNDED = ("tanh", "sigmoid", "softsign", "hard_tanh", "hard_sigmoid")
#: The variance map's slope above which no analytic gain holds the variance over depth.
UNSTABLE_SLOPE = 1.0 + 1e-3
#: Weight roles of a lookup table (:mod:`keras_inits.model.graph`): a layer whose drawn weights
#: are all of these returns table rows, not a transform of its input.
LOOKUP_ROLES = frozenset({"embeddings"})
#: Layers that reduce every sample to one value per channel (its mean or maximum over the
#: positions): what only they feed is alike for every sample, whatever the start.
GLOBAL_POOLING_TYPES: tuple[type, ...] = (
    keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D,
)
#: Layers that rescale or shift the inputs before the first monitored layer. When that layer
#: collapses on inputs that are not alike, these are why: ``keras.applications`` models
#: (MobileNetV3, EfficientNet) open with ``Rescaling(1/127.5, offset=-1)`` or
#: ``Rescaling(1/255)``, made for pixels in [0, 255]; N(0, 1) inputs come out of it as nearly
#: one vector (MobileNetV3Small's first conv: mean cosine 1 on N(0, 1), ok on [0, 255]).
PREPROCESSING_TYPES: tuple[type, ...] = (keras.layers.Rescaling, keras.layers.Normalization)
#: Layers listed by name in full up to this many; more are shortened to first, last, count.
MAX_LISTED_LAYERS = 4

#: The remedy of a growing residual stream (and of the signal it makes explode).
STREAM_REMEDY = (
    "reinitialize(model, residual='depth_scaled') (each branch's last kernel times 1/sqrt(L)), "
    "or lsuv(model, x) (residual='depth_scaled' is its default)"
)

LayerRef = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem the statistics show.

    Attributes:
        kind: What is wrong (see :data:`KINDS`).
        layers: ``(path, depth index)`` of the layers concerned, shallow to deep (the depth
            index counts the monitored layers from 0; for ``growing_stream``: the merge's
            path and the block index).
        evidence: The measured numbers, and the named threshold they crossed:
            ``{"pre_std_ratio": 3e-8, "threshold": "VANISHING_RATIO", "threshold_value": 1e-2,
            ...}``.
        remedy: What to use instead, in keras_inits terms.
        message: One sentence that says what is wrong.
    """

    kind: Kind
    layers: tuple[LayerRef, ...]
    evidence: Mapping[str, Any]
    remedy: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-able values."""
        return {
            "kind": self.kind,
            "layers": [[path, index] for path, index in self.layers],
            "evidence": {key: _plain(value) for key, value in self.evidence.items()},
            "remedy": self.remedy,
            "message": self.message,
        }


@dataclasses.dataclass(frozen=True)
class DiagnosisReport:
    """What :func:`diagnose` returns: the findings, and the key numbers behind them.

    Attributes:
        findings: The findings, root causes first (see :data:`KINDS`).
        summary: The key numbers of the probe pass (layers measured, range of the
            ``pre_std`` ratio, largest cosine, dead and saturated fractions, gradient ratio
            and stream growth when measured), and ``training_mode: True`` when the probe ran
            in training mode (untrained batch normalization).

    Examples:

    >>> import numpy as np, keras, keras_inits
    >>> model = keras.Sequential([keras.Input((64,))] + [
    ...     keras.layers.Dense(64, activation="tanh", kernel_initializer=keras_inits.Xavier(seed=i))
    ...     for i in range(4)])
    >>> report = keras_inits.diagnose(model, np.random.default_rng(0).normal(size=(128, 64)))
    >>> report.ok
    True
    """

    findings: tuple[Finding, ...]
    summary: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        """No findings."""
        return not self.findings

    def kinds(self) -> tuple[str, ...]:
        """The kinds found, in report order."""
        return tuple(finding.kind for finding in self.findings)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able values."""
        return {
            "ok": self.ok,
            "findings": [finding.as_dict() for finding in self.findings],
            "summary": {key: _plain(value) for key, value in self.summary.items()},
        }

    def __str__(self) -> str:
        lines = [_heading(self)]
        if self.ok:
            lines.append(f"No problems found: {_summary_text(self.summary)}.")
            return "\n".join(lines)
        for number, finding in enumerate(self.findings, start=1):
            lines.append("")
            lines.append(f"{number}. {finding.kind}: {finding.message}")
            lines.append(f"   layers:   {format_layers(finding.layers)}")
            lines.append(f"   evidence: {_evidence_text(finding.evidence)}")
            lines.append(f"   remedy:   {finding.remedy}")
        lines.append("")
        lines.append(f"Measured: {_summary_text(self.summary)}.")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        lines = [f"**{html.escape(_heading(self))}**", ""]
        if self.ok:
            lines.append(f"No problems found: {html.escape(_summary_text(self.summary))}.")
            return "\n".join(lines)
        lines.append("| kind | layers | evidence | remedy |")
        lines.append("|---|---|---|---|")
        for finding in self.findings:
            cells = (
                f"**{finding.kind}**: {finding.message}",
                format_layers(finding.layers),
                _evidence_text(finding.evidence),
                finding.remedy,
            )
            lines.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
        lines.append("")
        lines.append(f"Measured: {html.escape(_summary_text(self.summary))}.")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-able: tuples as lists, non-finite floats as strings ("nan", "inf")."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return _checks.plain(value)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}"


def format_layers(layers: Sequence[LayerRef]) -> str:
    """``"dense_3 (#2), dense_4 (#3)"``; more than :data:`MAX_LISTED_LAYERS`: first, last, count.

    Examples:

    >>> format_layers([("a", 0), ("b", 1)])
    'a (#0), b (#1)'
    >>> format_layers([(f"d{i}", i) for i in range(10)])
    'd0 (#0) ... d9 (#9): 10 layers'
    """
    if len(layers) <= MAX_LISTED_LAYERS:
        return ", ".join(f"{path} (#{index})" for path, index in layers)
    (first, first_index), (last, last_index) = layers[0], layers[-1]
    return f"{first} (#{first_index}) ... {last} (#{last_index}): {len(layers)} layers"


def _evidence_text(evidence: Mapping[str, Any]) -> str:
    measured = [
        f"{key}={_number(value)}"
        for key, value in evidence.items()
        if key not in ("threshold", "threshold_value")
    ]
    text = ", ".join(measured)
    if "threshold" in evidence:
        text += f" (threshold {evidence['threshold']}={_number(evidence['threshold_value'])})"
    return text


def _markdown_cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|")


def _heading(report: DiagnosisReport) -> str:
    layers = report.summary.get("layers", 0)
    if report.ok:
        return f"keras_inits diagnosis: ok ({layers} layers measured)"
    count = len(report.findings)
    plural = "" if count == 1 else "s"
    return f"keras_inits diagnosis: {count} finding{plural} ({layers} layers measured)"


def _summary_text(summary: Mapping[str, Any]) -> str:
    labels = {
        "pre_std_ratio_min": "pre_std/first from",
        "pre_std_ratio_max": "to",
        "max_cosine": "largest cosine",
        "max_dead_fraction": "largest dead fraction",
        "max_saturation_fraction": "largest saturation",
        "grad_std_ratio_min": "grad_std/last from",
        "grad_std_ratio_max": "to",
        "stream_growth": "stream growth",
        "nonfinite_count": "non-finite values",
    }
    parts = [f"{summary.get('layers', 0)} layers"]
    if summary.get("training_mode"):
        parts[0] += " in training mode (batch normalization never trained)"
    for key, label in labels.items():
        if summary.get(key) is not None:
            parts.append(f"{label} {_number(summary[key])}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _ratio(value: float, reference: float) -> float:
    """``value / reference``; 0 for a zero value (also over a zero reference)."""
    if value == 0:
        return 0.0
    if reference == 0:
        return math.inf
    return value / reference


def _deepest_run(refs: Sequence[LayerRef], flagged: Sequence[bool]) -> list[LayerRef]:
    """The layers from the last unflagged one (exclusive) to the end, if all flagged."""
    run: list[LayerRef] = []
    for ref, is_flagged in zip(reversed(refs), reversed(flagged)):
        if not is_flagged:
            break
        run.append(ref)
    return run[::-1]


def _shallowest_run(refs: Sequence[LayerRef], flagged: Sequence[bool]) -> list[LayerRef]:
    """The layers from the first one to the first unflagged one (exclusive)."""
    run: list[LayerRef] = []
    for ref, is_flagged in zip(refs, flagged):
        if not is_flagged:
            break
        run.append(ref)
    return run


def _dominant(names: Sequence[str | None]) -> str | None:
    """The most common activation name of a set of layers (``None`` if none is known)."""
    known = [name for name in names if name]
    if not known:
        return None
    return collections.Counter(known).most_common(1)[0][0]


def _unstable(activation: str | None) -> bool:
    """Whether the activation's variance map grows at q = 1 (gelu, silu, mish)."""
    if activation is None:
        return False
    try:
        return gains.variance_slope(activation) > UNSTABLE_SLOPE
    except (ValueError, TypeError):
        return False


def _gain_remedy(activation: str | None) -> str:
    if activation is None:
        return "He(activation) with the gain of the activation that feeds each layer " \
            "(reinitialize(model)), or lsuv(model, x)"
    if _unstable(activation):
        return (f"lsuv(model, x): {activation}'s variance map is unstable (slope "
                f"{gains.variance_slope(activation):.3g} > 1), so no analytic gain, He('"
                f"{activation}') included, holds the variance over depth")
    if activation in BOUNDED:
        return (f"the critical gain: ScaledOrthogonal('{activation}', "
                f"gain=edge_of_chaos('{activation}').weight_std) at the edge of chaos, or "
                f"Xavier('{activation}')")
    return f"He('{activation}') or lsuv(model, x)"


def _signal_findings(
    refs: Sequence[LayerRef],
    pre_stds: Sequence[float],
    names: Sequence[str | None],
) -> list[Finding]:
    finite = [(ref, std, name) for ref, std, name in zip(refs, pre_stds, names) if _finite(std)]
    if not finite:
        return []
    refs = [item[0] for item in finite]
    stds = [item[1] for item in finite]
    by_path = {item[0]: item[2] for item in finite}
    first = stds[0]
    findings = []
    if first == 0:
        zero = [ref for ref, std in zip(refs, stds) if std == 0]
        findings.append(Finding(
            kind="vanishing_signal",
            layers=tuple(zero),
            evidence={"first_pre_std": 0.0, "pre_std_ratio": 0.0, "threshold": "VANISHING_RATIO",
                      "threshold_value": VANISHING_RATIO},
            remedy="a random initializer (He or Xavier): a zero or constant kernel gives every "
            "unit the same output and no signal",
            message=f"The first layer, {refs[0][0]}, has no signal (pre_std 0): every input gives "
            "the same output.",
        ))
        return findings
    ratios = [_ratio(std, first) for std in stds]
    for kind, threshold_name, threshold, below in (
        ("vanishing_signal", "VANISHING_RATIO", VANISHING_RATIO, True),
        ("exploding_signal", "EXPLODING_RATIO", EXPLODING_RATIO, False),
    ):
        flagged = [r < threshold if below else r > threshold for r in ratios]
        run = _deepest_run(refs, flagged)
        if not run:
            continue
        chosen = {ref for ref in run}
        extreme_ref, extreme = (min if below else max)(
            ((ref, r) for ref, r in zip(refs, ratios) if ref in chosen), key=lambda item: item[1]
        )
        activation = _dominant([by_path[ref] for ref in run])
        verb = "vanishes" if below else "explodes"
        findings.append(Finding(
            kind=kind,
            layers=tuple(run),
            evidence={"pre_std_ratio": extreme, "at": extreme_ref[0], "first_pre_std": first,
                      "threshold": threshold_name, "threshold_value": threshold},
            remedy=_gain_remedy(activation),
            message=f"The signal {verb} with depth: pre_std at {extreme_ref[0]} is "
            f"{_number(extreme)}x that of the first layer, and stays beyond "
            f"{_number(threshold)}x to the last layer.",
        ))
    return findings


def _gradient_findings(
    refs: Sequence[LayerRef],
    grad_stds: Sequence[float | None],
    names: Sequence[str | None],
) -> list[Finding]:
    measured = [(ref, g, name) for ref, g, name in zip(refs, grad_stds, names) if _finite(g)]
    if len(measured) < 2:
        return []
    reference_index = len(measured) - 1
    if measured[-1][2] in PROBABILITY_ACTIVATIONS and len(measured) >= 3:
        reference_index -= 1
    reference_ref, reference, _ = measured[reference_index]
    body = measured[:reference_index]
    refs = [item[0] for item in body]
    ratios = [_ratio(item[1], reference) for item in body]
    activation = _dominant([item[2] for item in body])
    findings = []
    for kind, threshold_name, threshold, below in (
        ("vanishing_gradients", "GRADIENT_VANISHING_RATIO", GRADIENT_VANISHING_RATIO, True),
        ("exploding_gradients", "GRADIENT_EXPLODING_RATIO", GRADIENT_EXPLODING_RATIO, False),
    ):
        flagged = [r < threshold if below else r > threshold for r in ratios]
        run = _shallowest_run(refs, flagged)
        if not run:
            continue
        chosen = set(run)
        extreme_ref, extreme = (min if below else max)(
            ((ref, r) for ref, r in zip(refs, ratios) if ref in chosen), key=lambda item: item[1]
        )
        verb = "vanishes" if below else "explodes"
        remedy = _gain_remedy(activation)
        if activation in RECTIFIERS + ("linear",):
            remedy = (f"He('{activation}', mode='fan_out') keeps the backward variance; or "
                      + remedy)
        findings.append(Finding(
            kind=kind,
            layers=tuple(run),
            evidence={"grad_std_ratio": extreme, "at": extreme_ref[0],
                      "reference": reference_ref[0], "reference_grad_std": reference,
                      "threshold": threshold_name, "threshold_value": threshold},
            remedy=remedy,
            message=f"The gradient {verb} on its way back: grad_std at {extreme_ref[0]} is "
            f"{_number(extreme)}x that at {reference_ref[0]}.",
        ))
    return findings


def _threshold_finding(
    kind: Kind,
    refs: Sequence[LayerRef],
    values: Sequence[float | None],
    statistic: str,
    threshold_name: str,
    threshold: float,
    remedy: str,
    message: str,
) -> list[Finding]:
    flagged = [(ref, v) for ref, v in zip(refs, values) if _finite(v) and v > threshold]
    if not flagged:
        return []
    worst_ref, worst = max(flagged, key=lambda item: item[1])
    return [Finding(
        kind=kind,
        layers=tuple(ref for ref, _ in flagged),
        evidence={statistic: worst, "at": worst_ref[0], "threshold": threshold_name,
                  "threshold_value": threshold},
        remedy=remedy,
        message=message.format(value=_number(worst), at=worst_ref[0], count=len(flagged)),
    )]


def _collapse_remedy(first_index: int, activation: str | None) -> str:
    if first_index == 0:
        return ("a random initializer (He or Xavier): the first layer already maps every "
                "input to one direction (identical units from a constant kernel, or inputs "
                "that are alike: centre the data)")
    if activation in RECTIFIERS:
        return ("LooksLinear (a ReLU network that starts as a linear map keeps inputs apart), "
                "or a residual architecture")
    name = activation or "tanh"
    return (f"ScaledOrthogonal('{name}') at the edge of chaos (gain edge_of_chaos('{name}')"
            ".weight_std), or an activation that keeps inputs apart (tanh)")


def _stream_findings(stream: Sequence[StreamStatistics]) -> list[Finding]:
    if not stream:
        return []
    first = stream[0]
    entering = first.std / first.growth if _finite(first.growth) and first.growth > 0 else math.nan
    if not (_finite(entering) and entering > 0):
        return []
    growths = [block.std / entering for block in stream]
    flagged = [
        ((block.merge, block.index), growth)
        for block, growth in zip(stream, growths)
        if _finite(growth) and growth > STREAM_GROWTH
    ]
    if not flagged:
        return []
    worst_ref, worst = max(flagged, key=lambda item: item[1])
    return [Finding(
        kind="growing_stream",
        layers=tuple(ref for ref, _ in flagged),
        evidence={"stream_growth": worst, "at": worst_ref[0], "blocks": len(stream),
                  "threshold": "STREAM_GROWTH", "threshold_value": STREAM_GROWTH},
        remedy=STREAM_REMEDY,
        message=f"The residual stream grows with depth: its std after {worst_ref[0]} is "
        f"{_number(worst)}x the std entering the first block.",
    )]


def _summary(stats: ModelStatistics, lookups: Collection[str] = (), *,
             training: bool = False) -> dict[str, Any]:
    layers = list(stats.values())
    summary: dict[str, Any] = {"layers": len(layers)}
    if training:
        summary["training_mode"] = True
    if not layers:
        return summary
    signal = [s for s in layers if s.path not in lookups] or layers
    first = signal[0].pre_std
    ratios = [s.pre_std / first for s in signal if _finite(s.pre_std)] if _finite(first) and first > 0 else []
    if ratios:
        summary["pre_std_ratio_min"] = min(ratios)
        summary["pre_std_ratio_max"] = max(ratios)
    for key, field in (("max_cosine", "cosine"), ("max_dead_fraction", "dead_fraction"),
                       ("max_saturation_fraction", "saturation_fraction")):
        values = [getattr(s, field) for s in layers if _finite(getattr(s, field))]
        if values:
            summary[key] = max(values)
    grads = [s.grad_std for s in layers if _finite(s.grad_std)]
    if len(grads) >= 2 and grads[-1] > 0:
        summary["grad_std_ratio_min"] = min(g / grads[-1] for g in grads)
        summary["grad_std_ratio_max"] = max(g / grads[-1] for g in grads)
    stream = getattr(stats, "residual_stream", ())
    if stream and _finite(stream[0].growth) and stream[0].growth > 0:
        entering = stream[0].std / stream[0].growth
        if entering > 0:
            summary["stream_growth"] = max(block.std / entering for block in stream)
    nonfinite = sum(s.nonfinite_count for s in layers)
    if nonfinite:
        summary["nonfinite_count"] = nonfinite
    return summary


def findings_from_statistics(
    stats: Mapping[str, Any],
    *,
    activations: Mapping[str, str | None] | None = None,
    lookups: Collection[str] = (),
    pooled: Collection[str] = (),
) -> tuple[Finding, ...]:
    """The findings that a model's statistics show (the rules of the module docstring).

    Args:
        stats: What :func:`keras_inits.activation_statistics` returns (a dict from layer path
            to :class:`~keras_inits.stats.LayerStatistics`, shallow to deep; its
            ``residual_stream`` attribute, when there is one, feeds ``growing_stream``).
        activations: The activation each layer applies to its output, by path (names such as
            ``"tanh"``; missing or ``None``: unknown). Only the remedies and the gradient
            reference (softmax/sigmoid outputs) use it.
        lookups: Paths of lookup tables (see :func:`lookup_layers`): not the reference of
            the signal ratios, not judged for collapse.
        pooled: Paths of layers fed only by a global pooling (see :func:`pooled_layers`):
            not judged for collapse or dead units.

    Returns:
        The findings, in the order of :data:`KINDS`.

    Examples:

    >>> import numpy as np, keras, keras_inits
    >>> from keras_inits.diagnose import findings_from_statistics
    >>> model = keras.Sequential([keras.Input((64,))] + [
    ...     keras.layers.Dense(64, activation="tanh",
    ...                        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01, seed=i))
    ...     for i in range(6)])
    >>> stats = keras_inits.activation_statistics(model, np.random.default_rng(0).normal(size=(64, 64)))
    >>> [finding.kind for finding in findings_from_statistics(stats)]
    ['vanishing_signal']
    """
    if not isinstance(stats, Mapping):
        raise TypeError(
            f"`stats` must be what activation_statistics returns (a dict of LayerStatistics). "
            f"Received: stats={stats!r}"
        )
    names_by_path = dict(activations or {})
    lookup_paths = frozenset(lookups)
    pooled_paths = frozenset(pooled)
    unjudged = lookup_paths | pooled_paths
    layers = list(stats.values())
    refs = [(layer.path, index) for index, layer in enumerate(layers)]
    names = [names_by_path.get(layer.path) for layer in layers]
    signal = [index for index, layer in enumerate(layers) if layer.path not in lookup_paths]
    found: list[Finding] = []

    found += _threshold_finding(
        "nonfinite", refs, [float(s.nonfinite_count) for s in layers], "nonfinite_count",
        "NONFINITE_COUNT", NONFINITE_COUNT,
        "look at the first layer listed: a NaN or infinite weight (reinitialize(model)), a "
        "non-finite input, or an overflow of the exploding signal",
        "{count} layer(s) output NaN or infinite values, up to {value} in {at}.",
    )
    found += _signal_findings([refs[i] for i in signal], [layers[i].pre_std for i in signal],
                              [names[i] for i in signal])
    bounded = [s.saturation_fraction for s in layers]
    saturated_activation = _dominant(
        [name for name, value in zip(names, bounded) if _finite(value) and value > SATURATION_FRACTION]
    )
    name = saturated_activation or "tanh"
    found += _threshold_finding(
        "saturation", refs, bounded, "saturation_fraction", "SATURATION_FRACTION",
        SATURATION_FRACTION,
        f"a smaller gain: Xavier('{name}') or He('{name}') instead of unit-variance kernels",
        "{count} layer(s) saturate: up to {value} of the values of {at} sit at a bound of the "
        "activation, where its derivative vanishes.",
    )
    with_signal = [
        s.dead_fraction if _finite(s.pre_std) and s.pre_std > 0 and s.path not in pooled_paths
        else None
        for s in layers
    ]
    found += _threshold_finding(
        "dead_units", refs, with_signal, "dead_fraction", "DEAD_FRACTION", DEAD_FRACTION,
        "He('relu') kernels with bias 0.01 (bias_initializer=keras.initializers.Constant(0.01)), "
        "or LooksLinear (every unit alive at init)",
        "{count} layer(s) have dead units: {value} of the units of {at} are 0 on every sample.",
    )
    nonzero = [
        s.cosine
        if _finite(s.std) and s.std > 0 and name not in NOT_DIRECTIONS
        and s.path not in unjudged
        and (index < len(layers) - 1 or len(layers) == 1)
        else None
        for index, (s, name) in enumerate(zip(layers, names))
    ]
    collapsed = [index for index, value in enumerate(nonzero) if _finite(value) and value > COLLAPSE_COSINE]
    if collapsed:
        found += _threshold_finding(
            "collapsed_inputs", refs, nonzero, "cosine", "COLLAPSE_COSINE", COLLAPSE_COSINE,
            _collapse_remedy(collapsed[0], _dominant([names[i] for i in collapsed])),
            "{count} layer(s) map every input to the same direction: mean cosine similarity "
            "{value} at {at}.",
        )
    stream_findings = _stream_findings(getattr(stats, "residual_stream", ()))
    if stream_findings:
        found = [
            dataclasses.replace(finding, remedy=STREAM_REMEDY)
            if finding.kind == "exploding_signal" else finding
            for finding in found
        ]
    found += stream_findings
    found += _gradient_findings(refs, [s.grad_std for s in layers], names)
    order = {kind: index for index, kind in enumerate(KINDS)}
    return tuple(sorted(found, key=lambda finding: order[finding.kind]))


def layer_activations(model: keras.Model, paths: Sequence[str]) -> dict[str, str | None]:
    """The name of the activation each of ``paths`` applies to its output (``None``: none or
    not a named one)."""
    layers = graph.walk(model)
    names: dict[str, str | None] = {}
    for path in paths:
        layer = layers.get(path)
        applied = activation_registry.layer_activation(layer) if layer is not None else None
        if applied is None:
            names[path] = None
            continue
        function = applied[0]
        names[path] = function if isinstance(function, str) else getattr(function, "__name__", None)
    return names


def lookup_layers(model: keras.Model, paths: Sequence[str]) -> frozenset[str]:
    """The paths among ``paths`` of lookup tables: layers whose drawn weights are all
    embedding tables (:data:`LOOKUP_ROLES`), such as ``Embedding`` or keras-hub's
    ``ReversibleEmbedding`` and ``PositionEmbedding``.

    Examples:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,), dtype="int32"),
    ...                           keras.layers.Embedding(10, 8, name="table"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> sorted(lookup_layers(model, ["table", "head"]))
    ['table']
    """
    layers = graph.walk(model)
    found = set()
    for path in paths:
        layer = layers.get(path)
        drawn = [w for w in graph.layer_weights(layer) if w.role in graph.DRAWN_ROLES] if layer is not None else []
        if drawn and all(w.role in LOOKUP_ROLES for w in drawn):
            found.add(path)
    return frozenset(found)


def pooled_layers(model: keras.Model) -> frozenset[str]:
    """Paths of the layers of a Functional or Sequential graph (nested ones included) whose
    every input comes from a global pooling (:data:`GLOBAL_POOLING_TYPES`), directly or
    through layers and operations fed only that way: the layers of a squeeze-and-excitation
    branch up to its gate, a classifier head. A merge with a tensor that was not pooled
    (the gate multiplying the feature map) ends it. Subclassed models have no graph to read:
    none of their layers is listed.

    Examples:

    >>> import keras
    >>> inputs = keras.Input((8, 8, 4))
    >>> features = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    >>> pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(pooled))
    >>> sorted(pooled_layers(model))
    ['head']
    """
    tree = graph.walk(model)
    paths = {id(layer): path for path, layer in tree.items()}
    pooled: set[int] = set()
    found = set()
    for container in [model, *tree.values()]:
        if not isinstance(container, keras.Model):
            continue
        functional = getattr(container, "_functional", None) if isinstance(container, keras.Sequential) else container
        for operation in getattr(functional, "_operations", None) or []:
            if isinstance(operation, GLOBAL_POOLING_TYPES):
                pooled.add(id(operation))
                continue
            sources = [
                getattr(tensor, "_keras_history", None)
                for node in getattr(operation, "_inbound_nodes", [])
                for tensor in keras.tree.flatten(node.input_tensors)
            ]
            if sources and all(source is not None and id(source.operation) in pooled
                               for source in sources):
                pooled.add(id(operation))
                if id(operation) in paths:
                    found.add(paths[id(operation)])
    return frozenset(found)


def untrained_batch_norm(model: keras.Model) -> list[str]:
    """Paths of the ``BatchNormalization`` layers whose moving mean is still all 0 and moving
    variance all 1: never updated by training. In inference mode such a layer is an identity
    (times ``gamma``, plus ``beta``), which training never runs; :func:`diagnose` then probes
    in training mode (batch statistics), as ``fit`` does.

    Examples:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4),
    ...                           keras.layers.BatchNormalization(name="bn")])
    >>> untrained_batch_norm(model)
    ['bn']
    """
    read = backend.current().to_numpy
    found = []
    for path, layer in graph.walk(model).items():
        if not isinstance(layer, keras.layers.BatchNormalization) or not layer.built:
            continue
        mean = np.asarray(read(layer.moving_mean))
        variance = np.asarray(read(layer.moving_variance))
        if not np.any(mean) and np.all(variance == 1):
            found.append(path)
    return found


def diagnose(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    layers: Any = None,
    loss: Any = None,
    training: bool | None = None,
    statistics: ModelStatistics | None = None,
) -> DiagnosisReport:
    """Measure ``model`` on the batch ``x`` and say in words what is wrong with its start.

    One probe pass of :func:`keras_inits.activation_statistics` (with gradients when ``y`` is
    given), then the rules of :func:`findings_from_statistics`: forward signal vanishing or
    exploding through depth, gradients vanishing or exploding, dead units, saturation,
    inputs collapsing to one direction, non-finite values and a growing residual stream.

    Examples:

    >>> import numpy as np, keras, keras_inits
    >>> model = keras.Sequential([keras.Input((64,))] + [
    ...     keras.layers.Dense(64, activation="relu", bias_initializer=keras.initializers.Constant(-1.0))
    ...     for _ in range(3)])
    >>> report = keras_inits.diagnose(model, np.random.default_rng(0).normal(size=(128, 64)))
    >>> "dead_units" in report.kinds()
    True
    >>> print(report)  # doctest: +SKIP

    Args:
        model: A built Keras model.
        x: The probe batch (e.g. 256 samples of real data, or N(0, 1)).
        y: Targets for ``x``: the gradients are measured too (the model's compiled loss, or
            ``loss``).
        layers: Which layers to measure (see :func:`keras_inits.activation_statistics`).
        loss: Loss for the gradients instead of the compiled one.
        training: Probe in training mode. ``None`` (the default): in training mode when
            the model has batch-normalization layers that were never trained
            (:func:`untrained_batch_norm`), in inference mode otherwise. The report says
            which.
        statistics: Statistics already measured (by the callback, say): no probe pass is run
            and ``y``, ``layers`` and ``loss`` are not used, nor ``x`` except for the inputs'
            own cosine when a collapse starts at the first layer (``None``: no such
            evidence); ``training`` then says the mode they were measured in (``None``:
            inference).

    Returns:
        A :class:`DiagnosisReport`; ``report.ok`` when nothing was found.

    Raises:
        TypeError: if ``statistics`` is not a ``ModelStatistics``, or for the errors of
            :func:`keras_inits.activation_statistics`.
        ValueError: for the errors of :func:`keras_inits.activation_statistics`.
    """
    _checks.check_model(model)
    if training is not None:
        training = _checks.check_bool("training", training)
    if statistics is None:
        if training is None:
            training = bool(untrained_batch_norm(model))
        statistics = activation_statistics(
            model, x, layers=layers, y=y, gradients=y is not None, training=training, loss=loss
        )
    elif not isinstance(statistics, ModelStatistics):
        raise TypeError(
            "`statistics` must be what activation_statistics returns (a ModelStatistics). "
            f"Received: statistics={statistics!r}"
        )
    paths = list(statistics)
    names = layer_activations(model, paths)
    lookups = lookup_layers(model, paths)
    findings = findings_from_statistics(statistics, activations=names, lookups=lookups,
                                        pooled=pooled_layers(model))
    return DiagnosisReport(
        findings=tuple(_with_input_evidence(finding, model, x) for finding in findings),
        summary=_summary(statistics, lookups, training=bool(training)),
    )


def input_cosine(x: Any) -> float | None:
    """The largest mean pairwise cosine similarity of the probe batch's floating-point
    inputs, each sample flattened (``None``: no such input, or fewer than 2 samples; integer
    inputs such as token ids are not directions).

    Examples:

    >>> import numpy as np
    >>> round(input_cosine(5.0 + 0.01 * np.random.default_rng(0).normal(size=(64, 8))), 4)
    1.0
    >>> input_cosine(np.zeros((4, 3), dtype="int32")) is None
    True
    """
    cosines = []
    for value in keras.tree.flatten(x):
        array = np.asarray(keras.ops.convert_to_numpy(value))
        if array.ndim < 1 or array.shape[0] < 2 or not np.issubdtype(array.dtype, np.floating):
            continue
        cosine = mean_pairwise_cosine(array.reshape(array.shape[0], -1))
        if cosine is not None:
            cosines.append(cosine)
    return max(cosines) if cosines else None


def _preprocessing(model: keras.Model, before: str) -> tuple[list[str], bool]:
    """The model's rescaling and normalization layers (:data:`PREPROCESSING_TYPES`) that
    come before the layer at path ``before`` (in Keras's topological order of the layers),
    described, and whether one of them is a ``Rescaling``."""
    found = []
    rescaling = False
    for path, layer in graph.walk(model).items():
        if path == before:
            break
        if isinstance(layer, keras.layers.Rescaling):
            rescaling = True
            found.append(f"Rescaling '{path}' (scale {_number(float(np.mean(layer.scale)))}, "
                         f"offset {_number(float(np.mean(layer.offset)))})")
        elif isinstance(layer, PREPROCESSING_TYPES):
            found.append(f"{type(layer).__name__} '{path}'")
    return found, rescaling


def _with_input_evidence(finding: Finding, model: keras.Model, x: Any) -> Finding:
    """A ``collapsed_inputs`` finding from the first layer on, with what the model's inputs
    say about it: the probe batch's own cosine (when ``x`` is given) and the preprocessing
    layers in front. Inputs that are already alike want centring; inputs that are not alike
    but meet a ``Rescaling`` want data in the range that layer expects; a constant kernel
    wants a random initializer."""
    if finding.kind != "collapsed_inputs" or min(index for _, index in finding.layers) != 0:
        return finding
    first = finding.layers[0][0]
    try:
        cosine = input_cosine(x) if x is not None else None
    except Exception:  # noqa: BLE001 - inputs the probe took but NumPy cannot read: no evidence
        cosine = None
    preprocessing, rescaling = _preprocessing(model, before=first)
    evidence = dict(finding.evidence)
    if cosine is not None:
        evidence["input_cosine"] = cosine
    if cosine is not None and cosine > COLLAPSE_COSINE:
        remedy = (f"centre the data: the probe inputs are already alike (mean cosine "
                  f"{_number(cosine)}), so no initializer can keep them apart")
    elif preprocessing:
        apart = (f"the probe inputs are not alike (mean cosine {_number(cosine)}), but "
                 if cosine is not None else "")
        pixels = (" (keras.applications models expect pixels in [0, 255], not N(0, 1))"
                  if rescaling else "")
        remedy = (f"probe with data like the training data: {apart}the model's "
                  f"{', '.join(preprocessing)} maps them to nearly one vector before "
                  f"{first}{pixels}")
    else:
        return dataclasses.replace(finding, evidence=evidence)
    return dataclasses.replace(finding, evidence=evidence, remedy=remedy)
