"""keras_inits.diagnose: the rules at their thresholds, and each broken start named right.

Every model here is an MLP of WIDTH units probed with SAMPLES N(0, 1) inputs (one shape, so
that JAX compiles little); the threshold tests run on hand-made statistics.
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

import keras_inits
from keras_inits import diagnose as diagnose_function
from keras_inits.diagnose import (
    COLLAPSE_COSINE,
    DEAD_FRACTION,
    EXPLODING_RATIO,
    GRADIENT_EXPLODING_RATIO,
    GRADIENT_VANISHING_RATIO,
    KINDS,
    SATURATION_FRACTION,
    STREAM_GROWTH,
    VANISHING_RATIO,
    DiagnosisReport,
    Finding,
    findings_from_statistics,
)
from keras_inits.stats import Histogram, LayerStatistics, ModelStatistics, StreamStatistics

WIDTH = 32
SAMPLES = 64
DEPTH = 10
#: Just beyond / just within a threshold, as a factor.
STEP = 1.01


def probe(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((SAMPLES, WIDTH)).astype("float32")


def mlp(activation, kernel, *, depth: int = DEPTH, bias="zeros") -> keras.Model:
    """``depth`` Dense layers ``dense_0 ... dense_{depth-1}``; layer i gets ``kernel(i)``."""
    inputs = keras.Input((WIDTH,))
    hidden = inputs
    for index in range(depth):
        hidden = keras.layers.Dense(
            WIDTH, activation=activation, kernel_initializer=kernel(index),
            bias_initializer=bias, name=f"dense_{index}",
        )(hidden)
    return keras.Model(inputs, hidden)


def normal(std):
    return lambda index: keras.initializers.RandomNormal(0.0, std, seed=index)


# --------------------------------------------------------------------------------------
# Hand-made statistics
# --------------------------------------------------------------------------------------

_EMPTY = Histogram(edges=np.zeros(2), counts=np.zeros(1, dtype=np.int64))


def layer(path: str, **values) -> LayerStatistics:
    """A healthy layer (unit std, no dead, no saturation, cosine 0) with ``values`` changed."""
    fields = dict(
        path=path, layer_class="Dense", mean=0.0, std=1.0, min=-3.0, max=3.0,
        nonfinite_count=0, pre_std=1.0, std_ratio=1.0, zero_fraction=0.0, dead_fraction=0.0,
        saturation_fraction=None, cosine=0.0, histogram=_EMPTY,
    )
    fields.update(values)
    return LayerStatistics(**fields)


def statistics(*layers: LayerStatistics, stream=()) -> ModelStatistics:
    return ModelStatistics({item.path: item for item in layers}, stream)


def kinds(stats, **options) -> list[str]:
    return [finding.kind for finding in findings_from_statistics(stats, **options)]


def test_healthy_statistics_give_no_finding():
    stats = statistics(*(layer(f"d{i}") for i in range(5)))
    assert findings_from_statistics(stats) == ()


@pytest.mark.parametrize("factor, expected", [(1 / STEP, []), (STEP, ["vanishing_signal"])])
def test_vanishing_ratio_boundary(factor, expected):
    # pre_std of the last layer: VANISHING_RATIO / factor  (factor > 1: below the threshold)
    last = VANISHING_RATIO / factor
    stats = statistics(layer("d0"), layer("d1", pre_std=0.5), layer("d2", pre_std=last))
    assert kinds(stats) == expected


@pytest.mark.parametrize("factor, expected", [(1 / STEP, []), (STEP, ["exploding_signal"])])
def test_exploding_ratio_boundary(factor, expected):
    stats = statistics(layer("d0"), layer("d1", pre_std=EXPLODING_RATIO * factor))
    assert kinds(stats) == expected


def test_signal_that_recovers_is_not_vanishing():
    # A residual branch that starts at 0 (SkipInit) and is added back: the next layers recover.
    stats = statistics(layer("d0"), layer("branch_end", pre_std=0.0), layer("d2"))
    assert kinds(stats) == []


def test_vanishing_lists_the_deep_layers_and_the_evidence():
    stats = statistics(
        layer("d0"), layer("d1", pre_std=0.5), layer("d2", pre_std=1e-3), layer("d3", pre_std=1e-5)
    )
    (finding,) = findings_from_statistics(stats, activations={"d2": "tanh", "d3": "tanh"})
    assert finding.layers == (("d2", 2), ("d3", 3))
    assert finding.evidence["threshold"] == "VANISHING_RATIO"
    assert finding.evidence["threshold_value"] == VANISHING_RATIO
    assert finding.evidence["pre_std_ratio"] == pytest.approx(1e-5)
    assert finding.evidence["at"] == "d3"
    assert "edge_of_chaos('tanh')" in finding.remedy


def test_zero_first_layer_is_vanishing_everywhere():
    stats = statistics(*(layer(f"d{i}", pre_std=0.0, std=0.0, cosine=1.0, dead_fraction=1.0)
                         for i in range(3)))
    (finding,) = findings_from_statistics(stats)
    assert finding.kind == "vanishing_signal"
    assert [index for _, index in finding.layers] == [0, 1, 2]
    assert "random initializer" in finding.remedy


@pytest.mark.parametrize("factor, expected", [(1 / STEP, []), (STEP, ["dead_units"])])
def test_dead_fraction_boundary(factor, expected):
    stats = statistics(layer("d0"), layer("d1", dead_fraction=min(1.0, DEAD_FRACTION * factor)))
    assert kinds(stats) == expected


@pytest.mark.parametrize("factor, expected", [(1 / STEP, []), (STEP, ["saturation"])])
def test_saturation_fraction_boundary(factor, expected):
    stats = statistics(layer("d0", saturation_fraction=SATURATION_FRACTION * factor), layer("d1"))
    assert kinds(stats, activations={"d0": "tanh"}) == expected


@pytest.mark.parametrize("delta, expected", [(-1e-4, []), (1e-4, ["collapsed_inputs"])])
def test_collapse_cosine_boundary(delta, expected):
    stats = statistics(layer("d0"), layer("d1", cosine=COLLAPSE_COSINE + delta), layer("d2"))
    assert kinds(stats) == expected


def test_collapse_ignores_the_output_and_softmax_layers():
    stats = statistics(
        layer("d0"), layer("attention_softmax", cosine=1.0), layer("d1"), layer("out", cosine=1.0)
    )
    assert kinds(stats, activations={"attention_softmax": "softmax"}) == []


@pytest.mark.parametrize("count, expected", [(0, []), (1, ["nonfinite"])])
def test_nonfinite_boundary(count, expected):
    stats = statistics(layer("d0"), layer("d1", nonfinite_count=count))
    assert kinds(stats) == expected


@pytest.mark.parametrize(
    "first, expected",
    [
        (GRADIENT_VANISHING_RATIO * STEP, []),
        (GRADIENT_VANISHING_RATIO / STEP, ["vanishing_gradients"]),
        (GRADIENT_EXPLODING_RATIO / STEP, []),
        (GRADIENT_EXPLODING_RATIO * STEP, ["exploding_gradients"]),
    ],
)
def test_gradient_ratio_boundaries(first, expected):
    stats = statistics(
        layer("d0", grad_std=first), layer("d1", grad_std=1.0), layer("d2", grad_std=1.0)
    )
    assert kinds(stats) == expected


def test_gradient_reference_skips_a_softmax_output():
    # d loss / d probabilities of a softmax output is on another scale: not the reference.
    stats = statistics(
        layer("d0", grad_std=1.0), layer("d1", grad_std=1.0), layer("out", grad_std=1e4)
    )
    assert kinds(stats, activations={"out": "softmax"}) == []
    assert kinds(stats) == ["vanishing_gradients"]


@pytest.mark.parametrize("factor, expected", [(1 / STEP, []), (STEP, ["growing_stream"])])
def test_stream_growth_boundary(factor, expected):
    entering = 2.0
    last = entering * STREAM_GROWTH * factor
    stream = (
        StreamStatistics(0, "add", entering * 1.2, 1.2),
        StreamStatistics(1, "add_1", last, last / (entering * 1.2)),
    )
    stats = statistics(layer("d0"), layer("d1"), stream=stream)
    assert kinds(stats) == expected
    if expected:
        (finding,) = findings_from_statistics(stats)
        assert finding.layers == (("add_1", 1),)
        assert finding.evidence["stream_growth"] == pytest.approx(STREAM_GROWTH * factor)


def test_findings_come_in_kind_order():
    stats = statistics(
        layer("d0", saturation_fraction=0.9, grad_std=1e-6),
        layer("d1", nonfinite_count=3, grad_std=1.0),
        layer("d2", grad_std=1.0),
    )
    found = kinds(stats)
    assert found == sorted(found, key=KINDS.index)
    assert found == ["nonfinite", "saturation", "vanishing_gradients"]


def test_bad_statistics_type():
    with pytest.raises(TypeError, match=r"Received: stats=\[1, 2\]"):
        findings_from_statistics([1, 2])


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def test_report_text_markdown_and_dict():
    finding = Finding(
        kind="vanishing_signal",
        layers=tuple((f"dense_{i}", i) for i in range(2, 10)),
        evidence={"pre_std_ratio": 3e-8, "threshold": "VANISHING_RATIO", "threshold_value": 1e-2},
        remedy="He('relu') or lsuv(model, x)",
        message="The signal vanishes.",
    )
    report = DiagnosisReport(findings=(finding,), summary={"layers": 10, "max_cosine": math.nan})
    text = str(report)
    assert "1 finding" in text.splitlines()[0]
    assert "vanishing_signal" in text
    assert "dense_2 (#2) ... dense_9 (#9): 8 layers" in text
    assert "pre_std_ratio=3e-08 (threshold VANISHING_RATIO=0.01)" in text
    assert "He('relu') or lsuv(model, x)" in text
    assert not report.ok
    markdown = report._repr_markdown_()
    assert "| **vanishing_signal**" in markdown
    decoded = json.loads(json.dumps(report.as_dict()))
    assert decoded["findings"][0]["layers"][0] == ["dense_2", 2]
    assert decoded["summary"]["max_cosine"] == "nan"
    assert decoded["ok"] is False


# --------------------------------------------------------------------------------------
# Real models
# --------------------------------------------------------------------------------------


def test_small_tanh_kernels_vanish_at_the_deep_layers_and_their_gradients_too():
    model = mlp("tanh", normal(0.01))
    report = diagnose_function(model, probe())
    assert report.kinds() == ("vanishing_signal",)
    (finding,) = report.findings
    assert finding.layers[-1] == (f"dense_{DEPTH - 1}", DEPTH - 1)
    assert finding.layers[0][1] >= 1
    assert finding.evidence["pre_std_ratio"] < 1e-6
    text = str(report)
    assert "vanishing_signal" in text and f"dense_{DEPTH - 1}" in text and "edge_of_chaos('tanh')" in text

    y = np.random.default_rng(1).standard_normal((SAMPLES, WIDTH)).astype("float32")
    with_gradients = diagnose_function(model, probe(), y, loss="mse")
    assert with_gradients.kinds() == ("vanishing_signal", "vanishing_gradients")
    gradients = with_gradients.findings[1]
    assert gradients.layers[0] == ("dense_0", 0)
    assert gradients.evidence["reference"] == f"dense_{DEPTH - 1}"


def test_unit_normal_tanh_kernels_saturate():
    report = diagnose_function(mlp("tanh", normal(1.0)), probe())
    assert report.kinds() == ("saturation",)
    assert len(report.findings[0].layers) == DEPTH
    assert "Xavier('tanh')" in report.findings[0].remedy


def test_zero_kernels_have_no_signal():
    report = diagnose_function(mlp("tanh", lambda index: "zeros"), probe())
    assert report.kinds() == ("vanishing_signal",)
    assert [index for _, index in report.findings[0].layers] == list(range(DEPTH))


def test_negative_bias_kills_relu_units():
    model = mlp("relu", lambda i: keras_inits.He("relu", seed=i), bias=keras.initializers.Constant(-1.0))
    report = diagnose_function(model, probe())
    assert "dead_units" in report.kinds()
    dead = report.findings[report.kinds().index("dead_units")]
    assert dead.evidence["dead_fraction"] > DEAD_FRACTION
    assert "bias 0.01" in dead.remedy and "LooksLinear" in dead.remedy


def test_a_nan_weight_is_nonfinite_from_its_layer_on():
    model = mlp("relu", lambda i: keras_inits.He("relu", seed=i))
    kernel = model.get_layer("dense_4").kernel
    values = keras_inits.backend.current().to_numpy(kernel).copy()
    values[0, 0] = np.nan
    kernel.assign(values)
    report = diagnose_function(model, probe())
    assert report.kinds()[0] == "nonfinite"
    assert report.findings[0].layers[0] == ("dense_4", 4)
    assert report.findings[0].layers[-1] == (f"dense_{DEPTH - 1}", DEPTH - 1)


def residual_mlp(blocks: int = 16) -> keras.Model:
    inputs = keras.Input((WIDTH,))
    hidden = keras.layers.Dense(WIDTH, name="stem")(inputs)
    for index in range(blocks):
        branch = keras.layers.Dense(WIDTH, activation="relu", name=f"block{index}_1")(hidden)
        branch = keras.layers.Dense(WIDTH, name=f"block{index}_2")(branch)
        hidden = keras.layers.Add(name=f"block{index}_add")([hidden, branch])
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(hidden))


def test_residual_stream_grows_with_keras_defaults_and_not_depth_scaled():
    keras.utils.set_random_seed(0)
    model = residual_mlp()
    x = probe()
    report = diagnose_function(model, x)
    assert "growing_stream" in report.kinds()
    stream = report.findings[report.kinds().index("growing_stream")]
    assert stream.layers[-1] == ("block15_add", 15)
    assert "residual='depth_scaled'" in stream.remedy
    keras_inits.reinitialize(model, residual="depth_scaled", x=x, seed=0)
    assert diagnose_function(model, x).ok


def test_healthy_starts_are_ok():
    x = probe()
    he_relu = mlp("relu", lambda i: keras_inits.He("relu", seed=i))
    xavier_tanh = mlp("tanh", lambda i: keras_inits.Xavier(seed=i))
    lsuv_gelu = mlp("gelu", lambda i: keras_inits.He("gelu", seed=i))
    keras_inits.lsuv(lsuv_gelu, x, seed=0)
    for model in (he_relu, xavier_tanh, lsuv_gelu):
        report = diagnose_function(model, x)
        assert report.ok, str(report)
        assert str(report).splitlines()[1].startswith("No problems found: 10 layers")


def test_statistics_are_reused_and_checked():
    model = mlp("tanh", normal(1.0))
    stats = keras_inits.activation_statistics(model, probe())
    report = diagnose_function(model, None, statistics=stats)
    assert report.kinds() == ("saturation",)
    with pytest.raises(TypeError, match="Received: statistics="):
        diagnose_function(model, None, statistics={"a": 1})


def test_exported():
    assert keras_inits.diagnose is diagnose_function
    for name in ("diagnose", "DiagnosisReport", "Finding"):
        assert name in keras_inits.__all__
