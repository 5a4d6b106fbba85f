"""NumPy closed forms of the element-wise Keras 3.15 activations: value, derivative, kinks.

Each factory takes the activation's keyword arguments (Keras's defaults included) and returns
``(phi, phi', kinks)`` as float64 NumPy functions, written to match the Keras definition
(``keras/src/activations/activations.py`` and the TensorFlow backend); ``tests/test_gains.py``
checks each one against Keras on a grid.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

ArrayFunction = Callable[[np.ndarray], np.ndarray]

# SELU constants as used by ``tf.nn.selu`` (Klambauer et al., 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# ``tf.nn.gelu(approximate=True)``: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
GELU_TANH_COEFFICIENT = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# Keras activations that mix the entries of their input (they normalize or split along an axis).
NOT_ELEMENTWISE = {
    "softmax": "softmax mixes the entries of its input",
    "log_softmax": "log_softmax mixes the entries of its input",
    "sparsemax": "sparsemax mixes the entries of its input",
    "glu": "glu splits its input in two halves along an axis and multiplies them",
}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


# --------------------------------------------------------------------------------------------
# NumPy closed forms of the element-wise Keras activations: (phi, phi', kinks) given kwargs.
# --------------------------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)
_erfc = np.frompyfunc(math.erfc, 1, 1)


def as_float(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    decay = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * _erfc(-x / math.sqrt(2.0)).astype(np.float64)


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _linear():
    return (lambda x: x + 0.0), (lambda x: np.ones_like(x)), ()


def _relu(negative_slope=0.0, max_value=None, threshold=0.0):
    # Keras ReLU.static_call: where(x > t, x, 0), clipped to [0, max_value] when max_value is
    # set, minus negative_slope * relu(t - x).
    def phi(x):
        y = np.where(x > threshold, x, 0.0)
        if max_value is not None:
            y = np.clip(y, 0.0, max_value)
        return y - negative_slope * np.maximum(threshold - x, 0.0)

    def dphi(x):
        passing = x > threshold
        if max_value is not None:
            y = np.where(passing, x, 0.0)
            passing = passing & (y > 0.0) & (y < max_value)
        return passing.astype(np.float64) + negative_slope * (x < threshold)

    kinks = {float(threshold)}
    if max_value is not None:
        kinks |= {0.0, float(max_value)}
    return phi, dphi, tuple(sorted(kinks))


def _leaky_relu(negative_slope=0.2):
    return (
        lambda x: np.where(x > 0, x, negative_slope * x),
        lambda x: np.where(x > 0, 1.0, negative_slope),
        (0.0,),
    )


def _relu6():
    return (
        lambda x: np.clip(x, 0.0, 6.0),
        lambda x: ((x > 0) & (x < 6)).astype(np.float64),
        (0.0, 6.0),
    )


def _elu(alpha=1.0):
    return (
        lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
        lambda x: np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0))),
        (0.0,),
    )


def _selu():
    return (
        lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
        lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0))),
        (0.0,),
    )


def _celu(alpha=1.0):
    def phi(x):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.maximum(x, 0.0) + alpha * np.expm1(np.minimum(x, 0.0) / alpha)

    def dphi(x):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0) / alpha))

    return phi, dphi, (0.0,)


def _gelu(approximate=False):
    if approximate:

        def phi(x):
            return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_COEFFICIENT * x**3)))

        def dphi(x):
            t = np.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_COEFFICIENT * x**3))
            inner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEFFICIENT * x**2)
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner

        return phi, dphi, ()
    return (
        lambda x: x * _normal_cdf(x),
        lambda x: _normal_cdf(x) + x * _normal_pdf(x),
        (),
    )


def _silu():
    return (
        lambda x: x * _sigmoid(x),
        lambda x: _sigmoid(x) * (1.0 + x * _sigmoid(-x)),
        (),
    )


def _mish():
    def dphi(x):
        t = np.tanh(_softplus(x))
        return t + x * (1.0 - t * t) * _sigmoid(x)

    return (lambda x: x * np.tanh(_softplus(x))), dphi, ()


def _tanh():
    return np.tanh, (lambda x: 1.0 - np.tanh(x) ** 2), ()


def _sigmoid_activation():
    return _sigmoid, (lambda x: _sigmoid(x) * _sigmoid(-x)), ()


def _hard_sigmoid():
    return (
        lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        lambda x: ((x > -3) & (x < 3)) / 6.0,
        (-3.0, 3.0),
    )


def _hard_silu():
    return (
        lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        lambda x: np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, (2.0 * x + 3.0) / 6.0)),
        (-3.0, 3.0),
    )


def _softplus_activation():
    return _softplus, _sigmoid, ()


def _softsign():
    return (lambda x: x / (1.0 + np.abs(x))), (lambda x: 1.0 / (1.0 + np.abs(x)) ** 2), (0.0,)


def _exponential():
    return np.exp, np.exp, ()


def _log_sigmoid():
    return (lambda x: -_softplus(-x)), (lambda x: _sigmoid(-x)), ()


def _sparse_plus():
    return (
        lambda x: np.where(x <= -1, 0.0, np.where(x < 1, 0.25 * (x + 1.0) ** 2, x)),
        lambda x: np.where(x <= -1, 0.0, np.where(x < 1, 0.5 * (x + 1.0), 1.0)),
        (-1.0, 1.0),
    )


def _sparse_sigmoid():
    return (
        lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, 1.0, 0.5 * (x + 1.0))),
        lambda x: ((x > -1) & (x < 1)) * 0.5,
        (-1.0, 1.0),
    )


def _squareplus(b=4):
    def phi(x):
        with np.errstate(invalid="ignore"):
            return 0.5 * (x + np.sqrt(x * x + b))

    def dphi(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return 0.5 * (1.0 + x / np.sqrt(x * x + b))

    return phi, dphi, ((0.0,) if b <= 0 else ())


def _tanh_shrink():
    return (lambda x: x - np.tanh(x)), (lambda x: np.tanh(x) ** 2), ()


def _hard_tanh():
    return (
        lambda x: np.clip(x, -1.0, 1.0),
        lambda x: ((x > -1) & (x < 1)).astype(np.float64),
        (-1.0, 1.0),
    )


def _hard_shrink(threshold=0.5):
    return (
        lambda x: np.where(np.abs(x) > threshold, x, 0.0),
        lambda x: (np.abs(x) > threshold).astype(np.float64),
        tuple(sorted({-float(threshold), float(threshold)})),
    )


def _soft_shrink(threshold=0.5):
    return (
        lambda x: np.where(
            x > threshold, x - threshold, np.where(x < -threshold, x + threshold, 0.0)
        ),
        lambda x: ((x > threshold) | (x < -threshold)).astype(np.float64),
        tuple(sorted({-float(threshold), float(threshold)})),
    )


def _threshold(threshold, default_value):
    return (
        lambda x: np.where(x > threshold, x, default_value + 0.0 * x),
        lambda x: (x > threshold).astype(np.float64),
        (float(threshold),),
    )


# name -> factory(**kwargs) returning (phi, phi', kinks). Derivatives are the almost-everywhere
# derivatives: a jump of phi (threshold, hard_shrink, relu with threshold > 0) adds nothing.
CLOSED_FORMS: dict[str, Callable[..., tuple[ArrayFunction, ArrayFunction, tuple]]] = {
    "linear": _linear,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "relu6": _relu6,
    "elu": _elu,
    "selu": _selu,
    "celu": _celu,
    "gelu": _gelu,
    "silu": _silu,
    "mish": _mish,
    "tanh": _tanh,
    "sigmoid": _sigmoid_activation,
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": _hard_silu,
    "softplus": _softplus_activation,
    "softsign": _softsign,
    "exponential": _exponential,
    "log_sigmoid": _log_sigmoid,
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": _sparse_sigmoid,
    "squareplus": _squareplus,
    "tanh_shrink": _tanh_shrink,
    "hard_tanh": _hard_tanh,
    "hard_shrink": _hard_shrink,
    "soft_shrink": _soft_shrink,
    "threshold": _threshold,
}

# Keyword arguments that must be booleans, or may be None; every other one must be a real number.
BOOLEAN_KWARGS = {("gelu", "approximate")}
OPTIONAL_KWARGS = {("relu", "max_value")}
