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
    lookup_layers,
    pooled_layers,
    untrained_batch_norm,
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


# --------------------------------------------------------------------------------------
# Lookup tables, global pooling, untrained batch normalization: models nobody here wrote
# --------------------------------------------------------------------------------------


def test_a_lookup_table_is_not_the_reference_nor_judged_for_collapse():
    # An embedding's output scale is its table's init (0.02 in keras-hub); a position
    # embedding gives every sample the same rows (cosine 1).
    stats = statistics(
        layer("token_embedding", pre_std=0.02, std=0.02),
        layer("position_embedding", pre_std=0.02, std=0.02, cosine=1.0),
        layer("dense", pre_std=0.3),
        layer("head", pre_std=0.4),
    )
    assert kinds(stats) == ["exploding_signal", "collapsed_inputs"]
    assert kinds(stats, lookups={"token_embedding", "position_embedding"}) == []
    # Beyond the lookups the rules still hold: the reference is the first other layer.
    stats = statistics(layer("token_embedding", pre_std=0.02), layer("dense", pre_std=0.3),
                       layer("deep", pre_std=0.3 * EXPLODING_RATIO * STEP))
    assert kinds(stats, lookups={"token_embedding"}) == ["exploding_signal"]


def test_lookup_layers_are_the_embedding_tables():
    model = keras.Sequential([
        keras.Input((6,), dtype="int32"),
        keras.layers.Embedding(20, WIDTH, name="table"),
        keras.layers.Dense(WIDTH, activation="relu", name="hidden"),
        keras.layers.Activation("tanh", name="act"),
    ])
    assert lookup_layers(model, ["table", "hidden", "act", "missing"]) == {"table"}


def squeeze_excite_cnn() -> keras.Model:
    """conv -> [global pool -> reduce (relu, 4 units) -> expand (sigmoid)] x conv -> pool -> head."""
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inputs)
    squeezed = keras.layers.GlobalAveragePooling2D(name="squeeze", keepdims=True)(features)
    reduced = keras.layers.Conv2D(4, 1, activation="relu", name="se_reduce")(squeezed)
    gate = keras.layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(reduced)
    excited = keras.layers.Multiply(name="excite")([features, gate])
    mixed = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_2")(excited)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(mixed)
    hidden = keras.layers.Dense(8, activation="relu", name="dense")(pooled)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))


def test_pooled_layers_are_the_squeeze_excite_branch_and_the_head():
    model = squeeze_excite_cnn()
    assert pooled_layers(model) == {"se_reduce", "se_expand", "dense", "head"}
    nested = keras.Sequential([keras.Input((8, 8, 3)), model])
    assert pooled_layers(nested) == {f"{model.name}/{path}" for path in
                                     ("se_reduce", "se_expand", "dense", "head")}


def test_layers_fed_by_a_global_pooling_are_not_judged_for_collapse_or_dead_units():
    stats = statistics(
        layer("conv"),
        layer("se_reduce", cosine=0.9999, dead_fraction=5 / 8),
        layer("se_expand", cosine=0.9999),
        layer("conv_2", cosine=0.5),
        layer("head"),
    )
    assert kinds(stats) == ["dead_units", "collapsed_inputs"]
    assert kinds(stats, pooled={"se_reduce", "se_expand"}) == []
    # The feature maps themselves are still judged.
    collapsed = statistics(layer("conv", cosine=0.9999), layer("se_reduce", cosine=0.9999),
                           layer("head"))
    assert kinds(collapsed, pooled={"se_reduce"}) == ["collapsed_inputs"]


def batch_norm_mlp() -> keras.Model:
    """Dense(std 0.05) -> BatchNormalization -> relu, 6 times: only batch statistics hold it."""
    layers = [keras.Input((WIDTH,))]
    for index in range(6):
        layers += [
            keras.layers.Dense(WIDTH, use_bias=False, name=f"dense_{index}",
                               kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05, seed=index)),
            keras.layers.BatchNormalization(name=f"bn_{index}"),
            keras.layers.ReLU(name=f"relu_{index}"),
        ]
    layers.append(keras.layers.Dense(4, name="head"))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def test_untrained_batch_normalization_is_diagnosed_in_training_mode():
    model = batch_norm_mlp()
    x = probe()
    assert untrained_batch_norm(model) == [f"bn_{index}" for index in range(6)]
    inference = diagnose_function(model, x, training=False)
    assert "vanishing_signal" in inference.kinds()  # BN as identities: 0.05 * sqrt(32) a layer
    report = diagnose_function(model, x)
    assert report.ok, str(report)
    assert report.summary["training_mode"] is True
    assert "in training mode (batch normalization never trained)" in str(report)
    model.fit(x, np.zeros((len(x), 4), "float32"), batch_size=len(x), epochs=1, verbose=0)
    assert untrained_batch_norm(model) == []  # training moved the statistics: inference again
    assert "training_mode" not in diagnose_function(model, x).summary
    with pytest.raises(TypeError, match="Received: training='yes'"):
        diagnose_function(model, x, training="yes")


def keras_hub_backbones():
    keras_hub = pytest.importorskip("keras_hub")
    tokens = np.random.default_rng(0).integers(0, 200, (8, 8)).astype("int32")
    sizes = dict(vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=16,
                 intermediate_dim=32, max_sequence_length=8)
    return [
        (keras_hub.models.GPT2Backbone(**sizes),
         {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}),
        (keras_hub.models.BertBackbone(**sizes),
         {"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
          "padding_mask": np.ones_like(tokens)}),
    ]


def test_keras_hub_gpt2_and_bert_at_init_are_ok():
    # Embeddings first: their 0.02 std and the position embedding's cosine of 1 used to
    # give exploding_signal (BERT's pooled_dense 5.4x) and collapsed_inputs (both).
    for model, inputs in keras_hub_backbones():
        report = diagnose_function(model, inputs)
        assert report.ok, str(report)


@pytest.mark.backends("tensorflow", "torch")  # jax compiles every eager op: ~13 s a model
@pytest.mark.parametrize("name", ["MobileNetV2", "MobileNetV3Small"])
def test_keras_applications_at_init_are_ok(name):
    # Untrained batch normalization (inference: 1e-11 vanishing), squeeze-and-excitation
    # branches (cosine 0.9999, 5 of 8 units dead) and the pooled head: none is a finding.
    options = dict(alpha=0.35) if name == "MobileNetV2" else dict(alpha=0.75)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=3,
                                             **options)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    if name == "MobileNetV2":
        images = keras.applications.mobilenet_v2.preprocess_input(images)
    report = diagnose_function(model, images)
    assert report.ok, str(report)
    assert "vanishing_signal" in diagnose_function(model, images, training=False).kinds()


def _rescaled_cnn() -> keras.Model:
    """keras.applications' opening: Rescaling(1/127.5, offset=-1) for pixels in [0, 255]."""
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescaling")(inputs)
    for index in range(3):
        hidden = keras.layers.Conv2D(16, 3, padding="same", activation="tanh",
                                     kernel_initializer=keras.initializers.GlorotNormal(index),
                                     name=f"conv_{index}")(hidden)
    pooled = keras.layers.GlobalAveragePooling2D()(hidden)
    head = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotNormal(9),
                              name="head")
    return keras.Model(inputs, head(pooled))


def test_collapse_behind_a_rescaling_names_it_and_the_data():
    # N(0, 1) inputs (mean cosine ~0) leave Rescaling as -1 + 0.008 noise: one direction at
    # conv_0. The remedy is the data's range, not an initializer; pixels in [0, 255] are ok.
    model = _rescaled_cnn()
    rng = np.random.default_rng(0)
    report = diagnose_function(model, rng.standard_normal((SAMPLES, 8, 8, 3)).astype("float32"))
    (finding,) = report.findings
    assert finding.kind == "collapsed_inputs"
    assert finding.layers[0] == ("conv_0", 0)
    assert abs(finding.evidence["input_cosine"]) < 0.05
    assert "Rescaling 'rescaling' (scale 0.00784, offset -1)" in finding.remedy
    assert "[0, 255]" in finding.remedy and "initializer (He" not in finding.remedy
    pixels = rng.uniform(0, 255, (SAMPLES, 8, 8, 3)).astype("float32")
    assert diagnose_function(model, pixels).ok


def test_collapse_of_alike_inputs_says_centre_them():
    # Linear layers: tanh would also saturate on inputs of mean 5.
    model = mlp(None, lambda i: keras.initializers.GlorotNormal(seed=i), depth=3)
    alike = 5.0 + 0.01 * probe()
    (finding,) = diagnose_function(model, alike).findings
    assert finding.kind == "collapsed_inputs" and finding.layers[0] == ("dense_0", 0)
    assert finding.evidence["input_cosine"] > COLLAPSE_COSINE
    assert finding.remedy.startswith("centre the data")
    # The same model on centred inputs: nothing to say.
    assert diagnose_function(model, alike - 5.0).ok


def test_collapse_from_a_constant_kernel_keeps_the_initializer_remedy():
    # Positive inputs that are apart (mean cosine ~0.75) through a constant first kernel:
    # every unit gives the same value, so the layer, not the data, collapses them.
    model = mlp("tanh", lambda i: keras.initializers.Constant(0.01) if i == 0
                else keras.initializers.GlorotNormal(seed=i), depth=3)
    positive = np.random.default_rng(1).uniform(0, 1, (SAMPLES, WIDTH)).astype("float32")
    findings = diagnose_function(model, positive).findings
    (finding,) = [f for f in findings if f.kind == "collapsed_inputs"]
    assert finding.layers[0] == ("dense_0", 0)
    assert 0.6 < finding.evidence["input_cosine"] < 0.9
    assert "a random initializer (He or Xavier)" in finding.remedy


def test_input_cosine_reads_float_inputs_only():
    from keras_inits.diagnose import input_cosine

    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 100, (SAMPLES, 16)).astype("int32")
    assert input_cosine({"token_ids": tokens}) is None
    assert input_cosine(rng.standard_normal((1, 4))) is None
    apart = rng.standard_normal((SAMPLES, 8, 8, 3))
    assert abs(input_cosine([tokens, apart])) < 0.05
    assert input_cosine(5.0 + 0.01 * apart) > 0.999


def test_collapse_behind_a_normalization_names_it_without_pixels():
    # A Normalization adapted to data of mean 1000 and std 0.01 maps N(0, 1) inputs to about
    # -1e5 in every feature: one direction at dense_0. No Rescaling: no word of pixels.
    inputs = keras.Input((WIDTH,))
    norm = keras.layers.Normalization(mean=1000.0, variance=1e-4, name="norm")
    hidden = keras.layers.Dense(WIDTH, kernel_initializer=keras.initializers.GlorotNormal(0),
                                name="dense_0")(norm(inputs))
    hidden = keras.layers.Dense(WIDTH, kernel_initializer=keras.initializers.GlorotNormal(1),
                                name="dense_1")(hidden)
    out = keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotNormal(2), name="out")
    model = keras.Model(inputs, out(hidden))
    # (A constant direction through a 2-unit output may also read as vanishing: not this test's.)
    (finding,) = [f for f in diagnose_function(model, probe()).findings
                  if f.kind == "collapsed_inputs"]
    assert finding.kind == "collapsed_inputs" and finding.layers[0] == ("dense_0", 0)
    assert "Normalization 'norm'" in finding.remedy and "pixels" not in finding.remedy


def test_only_preprocessing_in_front_of_the_collapse_is_named():
    from keras_inits.diagnose import _preprocessing

    inputs = keras.Input((WIDTH,))
    hidden = keras.layers.Rescaling(0.5, name="front")(inputs)
    hidden = keras.layers.Dense(WIDTH, name="dense_0")(hidden)
    hidden = keras.layers.Rescaling(2.0, name="behind")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    assert _preprocessing(model, before="dense_0") == (["Rescaling 'front' (scale 0.5, offset 0)"], True)
    assert _preprocessing(model, before="front") == ([], False)
