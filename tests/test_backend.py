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
