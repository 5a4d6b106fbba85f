"""Tests of the backend seam: autodiff derivatives and probe gradients on every backend."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy import integrate

import keras_inits
from keras_inits import backend

#: Agreement of a quadrature gain with scipy's adaptive quadrature.
GAIN_RTOL = 1e-12


def scaled_swish(x):
    """A custom activation in Keras ops: ``x * sigmoid(1.5 x)``."""
    return x * keras.ops.sigmoid(1.5 * x)


def scaled_swish_derivative(z):
    s = 0.5 * (1.0 + math.tanh(0.75 * z))  # sigmoid(1.5 z), without overflow
    return s + 1.5 * z * s * (1.0 - s)


def gaussian_mean(function):
    density = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    value, _ = integrate.quad(lambda z: function(z) * density(z), -np.inf, np.inf,
                              epsabs=0.0, epsrel=1e-13, limit=200)
    return value


def test_custom_callable_derivative_is_autodiff_in_float64():
    derivative = backend.current().elementwise_derivative(scaled_swish)
    points = np.linspace(-4.0, 4.0, 41)
    expected = np.array([scaled_swish_derivative(z) for z in points])
    np.testing.assert_allclose(derivative(points), expected, rtol=1e-14, atol=1e-15)


def test_custom_callable_backward_gain_agrees_with_scipy_quad():
    expected = 1.0 / math.sqrt(gaussian_mean(lambda z: scaled_swish_derivative(z) ** 2))
    assert keras_inits.gain(scaled_swish, "backward") == pytest.approx(expected, rel=GAIN_RTOL)


# --------------------------------------------------------------------------------------
# Probe gradients against a NumPy backprop
# --------------------------------------------------------------------------------------

#: Agreement of the backends' float32 gradients with a float64 NumPy backprop.
GRADIENT_RTOL = 1e-6

N_SAMPLES = 16
WIDTHS = (6, 5, 4)


def fixed_mlp(output_activation=None, frozen=()):
    """Two tanh Dense layers and an output layer, with fixed weights."""
    rng = np.random.default_rng(7)
    model = keras.Sequential(
        [keras.Input((WIDTHS[0],)),
         keras.layers.Dense(WIDTHS[1], activation="tanh", name="dense_0"),
         keras.layers.Dense(WIDTHS[2], activation="tanh", name="dense_1"),
         keras.layers.Dense(3, activation=output_activation, name="out")]
    )
    weights = []
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        weights.append((rng.normal(scale=0.8, size=kernel.shape).astype("float32"),
                        rng.normal(scale=0.1, size=bias.shape).astype("float32")))
        layer.set_weights(list(weights[-1]))
        layer.trainable = layer.name not in frozen
    return model, weights


def probe_batch():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(N_SAMPLES, WIDTHS[0])).astype("float32")
    labels = rng.integers(0, 3, size=N_SAMPLES)
    return x, labels


def reference_backprop(weights, x, d_output):
    """Forward in float64, then d loss / d output and d loss / d kernel per layer.

    ``d_output(y_pred) -> (d loss / d y_pred, d loss / d pre-activation of the output)``.
    """
    activations = [x.astype(np.float64)]
    pre = None
    for index, (kernel, bias) in enumerate(weights):
        pre = activations[-1] @ kernel.astype(np.float64) + bias
        activations.append(np.tanh(pre) if index < len(weights) - 1 else pre)
    d_out, d_pre = d_output(pre)
    output_gradients = [None] * len(weights)
    kernel_gradients = [None] * len(weights)
    output_gradients[-1] = d_out
    for index in range(len(weights) - 1, -1, -1):
        kernel_gradients[index] = activations[index].T @ d_pre
        if index:
            d_hidden = d_pre @ weights[index][0].astype(np.float64).T
            output_gradients[index - 1] = d_hidden
            d_pre = d_hidden * (1.0 - activations[index] ** 2)
    return output_gradients, kernel_gradients


def mse_gradient(y):
    def d_output(pre):
        d_out = 2.0 * (pre - y) / y.size
        return d_out, d_out
    return d_output


def crossentropy_gradient(one_hot):
    def d_output(pre):
        shifted = np.exp(pre - pre.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        # d/dp of -sum(y log(p / sum p)) / n, the loss as a function of the probabilities.
        d_probabilities = (one_hot.sum(axis=1, keepdims=True) - one_hot / probabilities)
        return d_probabilities / len(pre), (probabilities - one_hot) / len(pre)
    return d_output


def assert_close(actual, expected):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=GRADIENT_RTOL, atol=GRADIENT_RTOL * scale)


def probe_gradients(model, x, y, loss):
    from keras_inits import _probe

    records = _probe.run_probe(model, x, y=y, gradients=True, loss=loss)
    assert list(records) == ["dense_0", "dense_1", "out"]
    outputs = [records[path].output_gradients[0] for path in records]
    kernels = [records[path].kernel_gradients[0] for path in records]
    return outputs, kernels


@pytest.mark.parametrize("frozen", [(), ("dense_1",)], ids=["trainable", "frozen"])
def test_mse_gradients_match_numpy_backprop(frozen):
    model, weights = fixed_mlp(frozen=frozen)
    x, labels = probe_batch()
    y = np.random.default_rng(9).normal(size=(N_SAMPLES, 3)).astype("float32")
    outputs, kernels = probe_gradients(model, x, y, "mse")
    expected_outputs, expected_kernels = reference_backprop(weights, x, mse_gradient(y))
    for actual, expected in zip(outputs + kernels, expected_outputs + expected_kernels):
        assert_close(actual, expected)


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_softmax_output_gradient_is_d_loss_d_probabilities(loss):
    model, weights = fixed_mlp(output_activation="softmax")
    x, labels = probe_batch()
    one_hot = np.eye(3, dtype="float32")[labels]
    y = one_hot if loss == "categorical_crossentropy" else labels
    model.compile(loss=loss)
    outputs, kernels = probe_gradients(model, x, y, None)
    expected_outputs, expected_kernels = reference_backprop(
        weights, x, crossentropy_gradient(one_hot.astype(np.float64))
    )
    for actual, expected in zip(outputs + kernels, expected_outputs + expected_kernels):
        assert_close(actual, expected)
    stats = keras_inits.activation_statistics(model, x, y=y, gradients=True)
    assert stats["out"].grad_std == pytest.approx(expected_outputs[-1].std(), rel=1e-5)
    assert stats["out"].grad_std > 0.0


def test_gradient_pass_leaves_weights_batchnorm_and_rng_untouched():
    model = keras.Sequential([
        keras.Input((WIDTHS[0],)),
        keras.layers.Dense(8, activation="relu", name="dense"),
        keras.layers.BatchNormalization(name="norm"),
        keras.layers.Dropout(0.5, seed=3, name="drop"),
        keras.layers.Dense(1, name="out"),
    ])
    model.layers[0].trainable = False
    model.compile(optimizer="adam", loss="mse")
    x, _ = probe_batch()
    y = x[:, :1]
    read = backend.current().to_numpy
    before = [np.array(read(variable), copy=True) for variable in model.variables]
    for training in (False, True):
        stats = keras_inits.activation_statistics(
            model, x, y=y, gradients=True, training=training
        )
        assert stats["dense"].kernel_grad_std > 0.0  # frozen, yet it has a gradient
    after = [read(variable) for variable in model.variables]
    assert any("seed_generator" in variable.path for variable in model.variables)
    assert any("moving_mean" in variable.path for variable in model.variables)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_to_numpy_is_a_snapshot_of_a_variable():
    variable = keras.Variable(np.zeros((2, 3), "float32"))
    snapshot = backend.current().to_numpy(variable)
    variable.assign(np.ones((2, 3), "float32"))
    np.testing.assert_array_equal(snapshot, np.zeros((2, 3), "float32"))
