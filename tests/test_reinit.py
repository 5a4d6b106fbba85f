"""reinitialize: each kernel gets the gain of the activation that feeds it."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy import stats

import keras_inits
from keras_inits import He, Xavier, gain, reinitialize

WIDTH = 256
KS_P_MIN = 1e-4


def feeding(used: dict) -> dict:
    return {path: (initializer.activation, initializer.activation_kwargs or {}) for path, initializer in used.items()}


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

    found = feeding(reinitialize(model, seed=0))
    assert found["agreed"] == ("tanh", {})
    assert found["mixed"] == ("linear", {})


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
    second = model.layers[1].kernel.numpy().ravel()
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
    assert isinstance(used[model.layers[1].name], Xavier)
    fan_in, fan_out = WIDTH // 2, WIDTH
    variance = 2.0 / (fan_in / gain("tanh") ** 2 + fan_out / gain("tanh", "backward") ** 2)
    limit = math.sqrt(3.0 * variance)
    kernel = model.layers[1].kernel.numpy().ravel()
    assert stats.kstest(kernel, stats.uniform(loc=-limit, scale=2 * limit).cdf).pvalue > KS_P_MIN

    used = reinitialize(model, "he", mode="fan_out", seed=2)
    assert isinstance(used[model.layers[1].name], He)
    expected_std = gain("tanh", "backward") / math.sqrt(fan_out)
    assert model.layers[1].kernel.numpy().std() == pytest.approx(expected_std, rel=0.02)


def test_seeded_reinitialize_is_reproducible():
    def build():
        return keras.Sequential([keras.Input((32,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(8)])

    first, second = build(), build()
    reinitialize(first, seed=5)
    reinitialize(second, seed=5)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_neighbouring_seeds_share_no_kernel():
    """seed + index would let seed=1 reuse seed=0's kernels shifted by one layer."""

    def build():
        return keras.Sequential([keras.Input((16,))] + [keras.layers.Dense(16, activation="tanh") for _ in range(4)])

    first, second = build(), build()
    reinitialize(first, seed=0)
    reinitialize(second, seed=1)
    kernels_first = [layer.kernel.numpy() for layer in first.layers]
    kernels_second = [layer.kernel.numpy() for layer in second.layers]
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
