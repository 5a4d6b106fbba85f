"""lsuv(center=True): every unit's pre-activation has mean 0 and the std its target; nothing is lost."""

from __future__ import annotations

import re
import warnings

import keras
import numpy as np
import pytest

from keras_inits import LSUV, activation_statistics, backend, lsuv
from keras_inits.lsuv import CENTER_OFF, NO_BIAS, NOT_CONVERGED, RECURRENT_BIAS

DEPTH = 10
WIDTH = 32
SAMPLES = 128
TOL = 0.02
#: The issue's bound on every unit's probe mean after centring (target_std 1).
MEAN_BOUND = 1e-3
#: The inputs' mean: every unit of the first layer then has a clearly non-zero mean.
INPUT_SHIFT = 0.5
#: The std of the random biases of the models that start with one.
BIAS_STD = 0.5
IMAGE_SIDE = 8
CHANNELS = 3


def to_numpy(value):
    return np.asarray(backend.current().to_numpy(value))


def probe_batch(shape=(SAMPLES, WIDTH), seed=0) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(shape) + INPUT_SHIFT
    return values.astype("float32")


def random_bias() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=BIAS_STD, seed=0)


def deep_mlp(activation: str, depth: int = DEPTH, seed: int = 0, **dense_kwargs) -> keras.Sequential:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((WIDTH,))]
    layers += [keras.layers.Dense(WIDTH, activation=activation, **dense_kwargs) for _ in range(depth)]
    return keras.Sequential(layers)


def pre_activations(model: keras.Sequential, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each layer's output before its activation, by a linear copy of it on its real input.

    Independent of lsuv's own capture: the copy is rebuilt from the layer's config with
    ``activation="linear"`` and given the layer's weights.
    """
    result = {}
    inputs = x
    for layer in model.layers:
        config = dict(layer.get_config())
        if "activation" in config:
            config["activation"] = "linear"
        linear = type(layer).from_config(config)
        linear.build(inputs.shape)
        linear.set_weights(layer.get_weights())
        result[layer.name] = to_numpy(linear(inputs))
        inputs = to_numpy(layer(inputs))
    return result


def unit_means(pre: np.ndarray) -> np.ndarray:
    """Per channel (last axis) mean over the batch and spatial axes."""
    return pre.reshape(-1, pre.shape[-1]).mean(axis=0, dtype=np.float64)


@pytest.mark.parametrize("activation", ["gelu", "silu", "relu", "tanh"])
def test_every_unit_has_mean_zero_and_the_target_std(activation):
    model = deep_mlp(activation)
    x = probe_batch()
    report = lsuv(model, x, seed=0, center=True)

    statistics = activation_statistics(model, x)
    assert len(report) == DEPTH
    for path, entry in report.items():
        assert entry.converged and entry.centered and entry.center_reason == "", (path, entry)
        assert entry.mean_after < MEAN_BOUND, (path, entry.mean_after)
        assert abs(entry.std_after - 1.0) < TOL * 1.0
        assert abs(statistics[path].pre_std - 1.0) < TOL, (path, statistics[path].pre_std)
    for name, pre in pre_activations(model, x).items():
        means = unit_means(pre)
        assert np.max(np.abs(means)) < MEAN_BOUND, (name, np.max(np.abs(means)))
        assert abs(pre.std() - 1.0) < TOL, (name, pre.std())
    # The shifted input gives the first layer's units means far from 0 before centring.
    first = next(iter(report.values()))
    assert first.mean_before > 100 * MEAN_BOUND


def test_centring_takes_one_rescaling_per_layer():
    # Kernel and bias scale together: the pre-activation is multiplied by the factor exactly.
    model = deep_mlp("gelu", bias_initializer=random_bias())
    report = lsuv(model, probe_batch(), seed=0, center=True, tol=1e-4)
    assert all(entry.converged for entry in report.values())
    assert max(entry.iterations for entry in report.values()) <= 1


def test_without_center_biases_are_unchanged_and_means_stay():
    model = deep_mlp("gelu")
    biases = [to_numpy(layer.bias) for layer in model.layers]
    x = probe_batch()
    report = lsuv(model, x, seed=0)
    for layer, old in zip(model.layers, biases):
        np.testing.assert_array_equal(to_numpy(layer.bias), old)
    assert all(not entry.centered and entry.center_reason == CENTER_OFF for entry in report.values())
    measured = [np.max(np.abs(unit_means(pre))) for pre in pre_activations(model, x).values()]
    # GELU's positive mean reaches every later layer: lsuv alone does not centre.
    assert min(measured) > 10 * MEAN_BOUND
    for entry, value in zip(report.values(), measured):
        assert entry.mean_after == pytest.approx(value, rel=1e-3)


def test_layers_without_bias_are_reported_not_centred():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((WIDTH,))]
        + [
            keras.layers.Dense(WIDTH, activation="gelu", use_bias=index % 2 == 0, name=f"d{index}")
            for index in range(4)
        ]
    )
    x = probe_batch()
    report = lsuv(model, x, seed=0, center=True)
    pre = pre_activations(model, x)
    for index in range(4):
        entry = report[f"d{index}"]
        assert entry.converged
        assert abs(pre[f"d{index}"].std() - 1.0) < TOL
        if index % 2 == 0:
            assert entry.centered and entry.mean_after < MEAN_BOUND
            assert np.max(np.abs(unit_means(pre[f"d{index}"]))) < MEAN_BOUND
        else:
            assert not entry.centered
            assert entry.center_reason == NO_BIAS
            # Not centred: the GELU mean of its input reaches it.
            assert entry.mean_after > 10 * MEAN_BOUND
            largest = np.max(np.abs(unit_means(pre[f"d{index}"])))
            assert entry.mean_after == pytest.approx(largest, rel=1e-3)


def test_small_cnn_is_centred_per_filter():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((IMAGE_SIDE, IMAGE_SIDE, CHANNELS)),
            keras.layers.Conv2D(8, 3, padding="same", activation="gelu", name="conv"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="depthwise"),
            keras.layers.SeparableConv2D(8, 3, padding="same", activation="silu", name="separable"),
            keras.layers.Conv2DTranspose(4, 3, padding="same", activation="tanh", name="transpose"),
        ]
    )
    x = probe_batch((SAMPLES // 2, IMAGE_SIDE, IMAGE_SIDE, CHANNELS))
    report = lsuv(model, x, seed=0, center=True)
    pre = pre_activations(model, x)
    for name in ("conv", "depthwise", "separable", "transpose"):
        entry = report[name]
        assert entry.converged and entry.centered, (name, entry)
        means = unit_means(pre[name])
        assert np.max(np.abs(means)) < MEAN_BOUND, (name, means)
        assert entry.mean_after == pytest.approx(np.max(np.abs(means)), rel=1e-3, abs=1e-9)
        assert abs(pre[name].std() - 1.0) < TOL, (name, pre[name].std())


def test_einsum_dense_bias_over_one_output_axis():
    # Bias of shape (4, 1): one value per "d" entry, shared over "e": its mean is over a, b and e.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, WIDTH))
    layer = keras.layers.EinsumDense(
        "abc,cde->abde", output_shape=(None, 4, 8), bias_axes="d", activation="gelu", name="einsum"
    )
    model = keras.Model(inputs, layer(inputs))
    x = probe_batch((SAMPLES // 2, 6, WIDTH))
    report = lsuv(model, x, seed=0, center=True)
    entry = report["einsum"]
    assert tuple(layer.bias.shape) == (4, 1)
    assert entry.centered and entry.converged
    pre = np.einsum("abc,cde->abde", x.astype(np.float64), to_numpy(layer.kernel)) + to_numpy(layer.bias)
    means = pre.mean(axis=(0, 1, 3))
    assert np.max(np.abs(means)) < MEAN_BOUND
    assert abs(pre.std() - 1.0) < TOL


def test_recurrent_layers_are_not_centred_and_keep_their_bias():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, WIDTH)), keras.layers.LSTM(8, name="lstm")])
    bias = to_numpy(model.layers[0].cell.bias)
    report = lsuv(model, probe_batch((SAMPLES // 2, 5, WIDTH)), seed=0, center=True)
    entry = report["lstm"]
    assert entry.converged and not entry.centered
    assert entry.center_reason == RECURRENT_BIAS
    np.testing.assert_array_equal(to_numpy(model.layers[0].cell.bias), bias)


def test_a_layer_that_cannot_converge_gets_its_bias_back():
    # Constant inputs: once centred, the first layer's pre-activation is 0, its std cannot be 1.
    model = deep_mlp("tanh", depth=2, bias_initializer=random_bias())
    first = model.layers[0]
    kernel = to_numpy(first.kernel)
    bias = to_numpy(first.bias)
    x = np.ones((SAMPLES, WIDTH), "float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = lsuv(model, x, seed=0, center=True)
    assert any("restored" in str(warning.message) for warning in caught)
    entry = report[first.name]
    assert entry.restored and not entry.centered
    assert entry.center_reason == NOT_CONVERGED
    np.testing.assert_array_equal(to_numpy(first.kernel), kernel)
    np.testing.assert_array_equal(to_numpy(first.bias), bias)


def test_non_finite_values_restore_every_kernel_and_bias():
    model = deep_mlp("relu", depth=3, bias_initializer=random_bias())
    before = [to_numpy(variable) for variable in model.weights]
    x = probe_batch()
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"not finite.*restored"):
        lsuv(model, x, seed=0, center=True)
    for old, variable in zip(before, model.weights):
        np.testing.assert_array_equal(to_numpy(variable), old)


def test_callback_accepts_center():
    model = deep_mlp("gelu", depth=3)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = probe_batch()
    callback = LSUV(x, seed=0, center=True)
    model.fit(x, np.zeros_like(x), epochs=1, batch_size=SAMPLES, verbose=0, callbacks=[callback])
    assert all(entry.centered for entry in callback.report.values())
    for pre in pre_activations(model, x).values():
        assert np.max(np.abs(unit_means(pre))) < MEAN_BOUND


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0, np.array([True])])
def test_bad_center_is_named(value):
    model = deep_mlp("gelu", depth=1)
    with pytest.raises(TypeError, match=re.escape(f"center={value!r}")):
        lsuv(model, probe_batch(), center=value)
    with pytest.raises(TypeError, match=r"center="):
        LSUV(probe_batch(), center=value)


def test_numpy_bool_center_is_accepted():
    report = lsuv(deep_mlp("gelu", depth=2), probe_batch(), seed=0, center=np.bool_(True))
    assert all(entry.centered for entry in report.values())
