"""reinitialize: each kernel gets the gain of the activation that feeds it."""

from __future__ import annotations

import math

import keras
import keras_hub
import numpy as np
import pytest
from scipy import stats

import keras_inits
from keras_inits import He, Xavier, gain, reinitialize
from keras_inits.backend import current
from keras_inits.initializers import TRUNCATED_NORMAL_STD
from keras_inits.model import DRAWN_ROLES

WIDTH = 256
KS_P_MIN = 1e-4


def feeding(report) -> dict:
    """Layer path -> (feeding activation, its kwargs) of every drawn kernel."""
    return {
        path.rsplit("/", 1)[0]: (entry.feeding.activation, entry.feeding.kwargs)
        for path, entry in report.items()
    }


def values(variable) -> np.ndarray:
    return current().to_numpy(variable)


def drawn_values_changed(model, draw) -> tuple[list[str], list[str]]:
    """Paths of kernel-like weights that ``draw`` changed and of those it left equal."""
    graph = keras_inits.model.model_graph(model)
    kernels = [(weight.path, weight.variable) for weight in graph.weights() if weight.role in DRAWN_ROLES]
    before = {path: values(variable).copy() for path, variable in kernels}
    draw()
    changed = [path for path, variable in kernels if not np.array_equal(values(variable), before[path])]
    kept = [path for path, variable in kernels if np.array_equal(values(variable), before[path])]
    return changed, kept


def he_truncated_normal(std: float):
    """He's law: a normal truncated at +-2 of its own std, rescaled to the variance std^2."""
    scale = std / TRUNCATED_NORMAL_STD
    return stats.truncnorm(-2.0, 2.0, scale=scale)


def test_functional_graph_with_activation_layers_nested_model_and_normalization():
    inner = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(8, activation="tanh", name="d1"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(8, name="d2"),
        ],
        name="inner",
    )
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, activation="relu", name="a")(inputs)
    hidden = keras.layers.Activation("gelu", name="act")(hidden)
    hidden = inner(hidden)
    hidden = keras.layers.LeakyReLU(negative_slope=0.25, name="lrelu")(hidden)
    hidden = keras.layers.Dense(8, name="b")(hidden)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.ReLU(max_value=6.0, name="relu6")(hidden)
    outputs = keras.layers.Dense(3, name="c")(hidden)
    model = keras.Model(inputs, outputs)

    used = reinitialize(model, seed=0)

    assert feeding(used) == {
        "a": ("linear", {}),
        "inner/d1": ("gelu", {}),  # the Activation layer overrides the Dense's relu
        "inner/d2": ("tanh", {}),  # Dropout passes tanh on
        "b": ("leaky_relu", {"negative_slope": 0.25}),
        "c": ("relu", {"max_value": 6.0}),  # after BatchNormalization, the ReLU layer
    }


def test_merge_layers_keep_an_agreed_activation_and_fall_back_to_linear():
    inputs = keras.Input((8,))
    left = keras.layers.Dense(8, activation="tanh", name="left")(inputs)
    right = keras.layers.Dense(8, activation="tanh", name="right")(inputs)
    other = keras.layers.Dense(8, activation="relu", name="other")(inputs)
    agreed = keras.layers.Dense(4, name="agreed")(keras.layers.Add()([left, right]))
    mixed = keras.layers.Dense(4, name="mixed")(keras.layers.Concatenate()([left, other]))
    model = keras.Model(inputs, [agreed, mixed])

    report = reinitialize(model, seed=0)
    found = feeding(report)
    assert found["agreed"] == ("tanh", {})
    assert found["mixed"] == ("linear", {})
    # Two independent tanh branches added: twice the variance, so the next kernel's std is
    # divided by sqrt(2).
    assert report["agreed/kernel"].feeding.scale == pytest.approx(math.sqrt(2.0))
    expected = gain("tanh") / math.sqrt(8) / math.sqrt(2.0)
    assert report["agreed/kernel"].std == pytest.approx(expected)


def test_subclassed_model_is_taken_as_a_chain_in_attribute_order():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.first = keras.layers.Dense(16, activation="selu")
            self.second = keras.layers.Dense(16, activation="sigmoid")
            self.third = keras.layers.Dense(2)

        def call(self, x):
            return self.third(self.second(self.first(x)))

    model = Net()
    model(np.zeros((1, 4), "float32"))
    found = list(feeding(reinitialize(model, seed=0)).values())
    assert found == [("linear", {}), ("selu", {}), ("sigmoid", {})]


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_kernel_follows_the_he_law_of_the_feeding_activation(activation):
    model = keras.Sequential(
        [keras.Input((WIDTH,)), keras.layers.Dense(WIDTH, activation=activation), keras.layers.Dense(WIDTH)]
    )
    reinitialize(model, "he", mode="fan_in", seed=1)
    second = values(model.layers[1].kernel).ravel()
    expected_std = gain(activation) / math.sqrt(WIDTH)
    # Truncated at two stds of the underlying normal, corrected so that the variance is exact.
    assert second.std() == pytest.approx(expected_std, rel=0.02)
    underlying = expected_std / 0.87962566103423978
    assert np.abs(second).max() <= 2 * underlying * (1 + 1e-6)


def test_xavier_and_fan_out_use_the_backward_gain():
    model = keras.Sequential(
        [keras.Input((WIDTH,)), keras.layers.Dense(WIDTH // 2, activation="tanh"), keras.layers.Dense(WIDTH)]
    )
    used = reinitialize(model, "xavier", seed=2)
    assert isinstance(used[model.layers[1].name + "/kernel"].initializers[0], Xavier)
    fan_in, fan_out = WIDTH // 2, WIDTH
    variance = 2.0 / (fan_in / gain("tanh") ** 2 + fan_out / gain("tanh", "backward") ** 2)
    limit = math.sqrt(3.0 * variance)
    kernel = values(model.layers[1].kernel).ravel()
    assert stats.kstest(kernel, stats.uniform(loc=-limit, scale=2 * limit).cdf).pvalue > KS_P_MIN

    used = reinitialize(model, "he", mode="fan_out", seed=2)
    assert isinstance(used[model.layers[1].name + "/kernel"].initializers[0], He)
    expected_std = gain("tanh", "backward") / math.sqrt(fan_out)
    assert values(model.layers[1].kernel).std() == pytest.approx(expected_std, rel=0.02)


def test_seeded_reinitialize_is_reproducible():
    def build():
        return keras.Sequential([keras.Input((32,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(8)])

    first, second = build(), build()
    reinitialize(first, seed=5)
    reinitialize(second, seed=5)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(values(a), values(b))


def test_neighbouring_seeds_share_no_kernel():
    """seed + index would let seed=1 reuse seed=0's kernels shifted by one layer."""

    def build():
        return keras.Sequential([keras.Input((16,))] + [keras.layers.Dense(16, activation="tanh") for _ in range(4)])

    first, second = build(), build()
    reinitialize(first, seed=0)
    reinitialize(second, seed=1)
    kernels_first = [values(layer.kernel) for layer in first.layers]
    kernels_second = [values(layer.kernel) for layer in second.layers]
    for kernel in kernels_first:
        assert not any(np.array_equal(kernel, other) for other in kernels_second)


def test_tanh_variance_is_held_through_depth():
    """tanh's variance map is stable: with its exact gain, pre_std at layer 30 stays near layer 1."""
    depth = 30
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((WIDTH,))]
        + [keras.layers.Dense(WIDTH, activation="tanh", name=f"dense_{index + 1}") for index in range(depth)]
    )
    reinitialize(model, seed=0)
    x = np.random.default_rng(0).standard_normal((512, WIDTH)).astype("float32")
    statistics = keras_inits.activation_statistics(model, x)
    ratio = statistics[f"dense_{depth}"].pre_std / statistics["dense_1"].pre_std
    assert 0.8 <= ratio <= 1.25


def test_bad_arguments():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="Received: method='lecun'"):
        reinitialize(model, "lecun")
    with pytest.raises(ValueError, match="Received: mode='fan_avg'"):
        reinitialize(model, mode="fan_avg")
    with pytest.raises(TypeError, match="Received: seed='abc'"):
        reinitialize(model, seed="abc")
    with pytest.raises(ValueError, match="Received: seed=-1"):
        reinitialize(model, seed=-1)
    with pytest.raises(TypeError, match="keras.Model"):
        reinitialize(keras.layers.Dense(3))


def test_unbuilt_model_and_model_without_kernels():
    with pytest.raises(ValueError, match="built"):
        reinitialize(keras.Sequential([keras.layers.Dense(3)]))
    no_kernels = keras.Sequential([keras.Input((4,)), keras.layers.Activation("relu")])
    with pytest.raises(ValueError, match="no layer with a kernel"):
        reinitialize(no_kernels)


def test_a_layer_fed_by_softmax_is_named_in_the_error():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, activation="softmax", name="probs"), keras.layers.Dense(2, name="after")]
    )
    with pytest.raises(ValueError, match=r"layer 'after'.*'probs'.*softmax"):
        reinitialize(model)


def test_reinitialize_reports_what_it_kept_and_why():
    class Counter(keras.layers.Layer):
        def build(self, input_shape):
            self.count = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="count")

        def call(self, x):
            return x

    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="d"), keras.layers.BatchNormalization(name="bn"), Counter(name="c")]
    )
    report = reinitialize(model, seed=0)
    assert list(report) == ["d/kernel"]
    reasons = {path: (entry.role, entry.reason.split(";")[0]) for path, entry in report.skipped.items()}
    assert reasons == {
        "d/bias": ("bias", "a bias adds no fan-in sum"),
        "bn/gamma": ("gamma", "normalization scale: sets the output std the layer re-standardizes to"),
        "bn/beta": ("beta", "normalization shift: sets the output mean"),
        "bn/moving_mean": ("other", "not a kernel-like weight (moving statistics, layer-scale factors, states...)"),
        "bn/moving_variance": ("other", "not a kernel-like weight (moving statistics, layer-scale factors, states...)"),
        "c/count": ("other", "not a floating-point variable"),
    }
    assert "d/kernel: He(linear, fan_in) on fans (4, 4), std 0.5" in report.summary()


SMALL_BACKBONE = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=16)


@pytest.mark.parametrize(
    "backbone, expected_drawn",
    [
        # 3 embedding tables, per layer 4 attention projections + 2 feed-forward kernels, the pooler.
        (keras_hub.models.BertBackbone, 3 + 2 * 6 + 1),
        # 2 embedding tables, per layer 4 attention projections + 2 feed-forward kernels.
        (keras_hub.models.GPT2Backbone, 2 + 2 * 6),
    ],
)
def test_every_kernel_like_weight_of_a_keras_hub_backbone_is_redrawn(backbone, expected_drawn):
    keras.utils.set_random_seed(0)
    model = backbone(vocabulary_size=1000, **SMALL_BACKBONE)
    report = None

    def draw():
        nonlocal report
        report = reinitialize(model, seed=0)

    changed, kept = drawn_values_changed(model, draw)
    assert kept == []
    assert len(changed) == len(report) == expected_drawn
    roles = {entry.role for entry in report.values()}
    assert roles == {"embeddings", "attention_query", "attention_key", "attention_value", "attention_output", "kernel"}
    # The feed-forward output kernel is fed by the encoder's inner gelu; nothing after an
    # encoder is fed by gelu (its output is a layer norm or a residual sum).
    for path, entry in report.items():
        fed_by_gelu = "gelu" in getattr(entry.activation, "__name__", str(entry.activation))
        assert fed_by_gelu == path.endswith("feedforward_output_dense/kernel"), path
    embedding = next(entry for entry in report.values() if entry.role == "embeddings")
    assert (embedding.fans, embedding.std) == ((1, 32), 1.0)


def _law_check(variable, std: float) -> None:
    drawn = values(variable).ravel()
    assert stats.kstest(drawn, he_truncated_normal(std).cdf).pvalue > KS_P_MIN


@pytest.mark.parametrize(
    "layer, input_shape, expected",
    [
        (keras.layers.DepthwiseConv2D(3, name="dw"), (6, 6, 64), {"dw/kernel": 1 / 3}),
        (
            keras.layers.SeparableConv2D(64, 3, name="sep"),
            (6, 6, 32),
            {"sep/depthwise_kernel": 1 / 3, "sep/pointwise_kernel": 1 / math.sqrt(32)},
        ),
        (keras.layers.Conv2DTranspose(16, 3, name="tr"), (4, 4, 32), {"tr/kernel": 1 / math.sqrt(9 * 32)}),
        (keras.layers.Conv3D(16, 3, name="c3"), (4, 4, 4, 8), {"c3/kernel": 1 / math.sqrt(27 * 8)}),
        (keras.layers.EinsumDense("abc,cde->abde", (3, 4, 16), name="ein"), (3, 64), {"ein/kernel": 1 / 8}),
        (keras.layers.Embedding(500, 16, name="emb"), (3,), {"emb/embeddings": 1.0}),
    ],
    ids=["depthwise", "separable", "transpose", "conv3d", "einsum", "embedding"],
)
def test_kernels_follow_the_he_law_on_their_true_fans(layer, input_shape, expected):
    dtype = "int32" if isinstance(layer, keras.layers.Embedding) else "float32"
    model = keras.Sequential([keras.Input(input_shape, dtype=dtype), layer])
    report = reinitialize(model, seed=3)
    assert {path: entry.std for path, entry in report.items()} == pytest.approx(expected)
    variables = variables_of(report)
    for path in report:
        _law_check(variables[path], expected[path])


def variables_of(report) -> dict:
    return {weight.path: weight.variable for weight in report.graph.weights()}


@pytest.mark.parametrize("recurrent", [keras.layers.LSTM, keras.layers.GRU])
def test_recurrent_kernels_are_orthogonal_per_gate_and_input_kernels_follow_the_gate_fans(recurrent):
    units, features = 32, 16
    model = keras.Sequential(
        [
            keras.Input((4, features)),
            keras.layers.Bidirectional(recurrent(units, return_sequences=True), name="bi"),
            recurrent(units, name="top"),
        ]
    )
    report = reinitialize(model, "he", mode="fan_out", seed=4)
    variables = variables_of(report)
    gates = 4 if recurrent is keras.layers.LSTM else 3
    recurrent_kernels = [path for path, entry in report.items() if entry.role == "recurrent_kernel"]
    assert len(recurrent_kernels) == 3 and len(report) == 6
    for path in recurrent_kernels:
        assert len(report[path].initializers) == gates
        matrix = values(variables[path])
        for gate in range(gates):
            block = matrix[:, gate * units : (gate + 1) * units]
            np.testing.assert_allclose(block.T @ block, np.eye(units), atol=1e-5)
    # fan_out of an input kernel is one gate's units, not gates * units.
    top_kernel = f"top/{model.layers[1].cell.name}/kernel"
    entry = report[top_kernel]
    assert entry.fans == (2 * units, units)
    assert entry.feeding.activation == "tanh"
    expected_std = gain("tanh", "backward") / math.sqrt(units)
    assert entry.std == pytest.approx(expected_std)
    _law_check(variables[top_kernel], expected_std)


IMAGE_SIZE = 64
IMAGES = 8
#: Measured (tensorflow, seed 0, 8 images uniform in [0, 255]): final std / std entering the
#: first kernel: MobileNetV3Small 8e-3 (Keras's default init: 2e-10), EfficientNetB0 36
#: (default: 1e-5). The bounds leave a decade either side.
SIGNAL_RATIO_BOUNDS = (1e-3, 1e3)


# Eager JAX compiles every op of these 150-240-layer models once per shape: minutes on two
# cores, beyond the suite's budget; the graph code it exercises is backend-independent.
@pytest.mark.backends("tensorflow", "torch")
@pytest.mark.parametrize("application", ["MobileNetV3Small", "EfficientNetB0"])
def test_the_signal_survives_mobile_networks_after_reinitialize(application):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, application)(
        weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), include_top=False
    )
    images = np.random.default_rng(0).uniform(0, 255, (IMAGES, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    report = reinitialize(model, seed=0, x=images)
    depthwise = [entry for entry in report.values() if entry.role == "depthwise_kernel"]
    assert depthwise and all(entry.fans == (9, 9) or entry.fans == (25, 25) for entry in depthwise)
    first = next(iter(report.values()))
    entering = first.feeding.scale
    final = float(np.std(values(model(images, training=False))))
    low, high = SIGNAL_RATIO_BOUNDS
    assert low < final / entering < high
