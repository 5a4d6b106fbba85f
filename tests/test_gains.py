"""Tests for keras_inits.gains and keras_inits._activations.

References are independent of the code under test: ``scipy.integrate.quad`` (QUADPACK) with the
kinks as ``points`` for every expectation, Keras itself for every NumPy closed form, and a
TensorFlow GradientTape for every closed-form derivative.
"""

from __future__ import annotations

import doctest
import json
import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import keras_inits
import keras_inits.gains
from keras_inits import backend
from keras_inits.activations import (
    ACTIVATION_LAYER_TYPES,
    ALIASES,
    CLOSED_FORMS,
    NOT_ELEMENTWISE,
    REGISTRY,
    activation_derivative,
    activation_kinks,
    bounds,
    deserialize_activation,
    layer_activation,
    resolve_activation,
    serialize_activation,
)
from keras_inits.gains import gain, gaussian_expectation, variance_slope

# The requirement is 1e-5 relative to scipy.integrate.quad; the quadrature reaches about 1e-14,
# so a much tighter bound guards against silent degradation.
QUAD_RTOL = 1e-9
KERAS_RTOL = 1e-6
KERAS_ATOL = 1e-9
# Custom callables made of Keras ops run in float64 where the backend has it; on JAX without
# x64 their values are float32, which bounds the precision of a forward gain.
CALLABLE_RTOL = QUAD_RTOL if backend.current().float64_available() else 1e-6
# Keras's activations in float32 (JAX without x64) against the float64 closed forms.
FLOAT32_RTOL = 1e-5
FLOAT32_ATOL = 1e-6
# TensorFlow's float64 gradient of erfc (gelu) is off by ~5e-9 near gelu's minimum (checked
# against the exact Phi(x) + x phi(x)).
TAPE_ATOL = 1e-7
# z beyond +-40 carries a normal density below exp(-800): nothing in float64.
REFERENCE_BOUND = 40.0
# Extra breakpoints for QUADPACK on [-40, 40] so it cannot step over the normal density's mass.
REFERENCE_HELP_POINTS = (-8.0, -4.0, 0.0, 4.0, 8.0)

# Every element-wise Keras 3.15 activation, defaults and non-default keyword arguments.
CASES = [
    ("linear", {}),
    ("relu", {}),
    ("relu", {"max_value": 3.0}),
    ("relu", {"threshold": 0.5}),
    ("relu", {"negative_slope": 0.2, "threshold": 1.0}),
    ("relu", {"negative_slope": 0.1, "max_value": 4.0, "threshold": -0.5}),
    ("relu6", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"negative_slope": 0.01}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("selu", {}),
    ("celu", {}),
    ("celu", {"alpha": 2.0}),
    ("gelu", {}),
    ("gelu", {"approximate": True}),
    ("silu", {}),
    ("swish", {}),
    ("mish", {}),
    ("tanh", {}),
    ("sigmoid", {}),
    ("hard_sigmoid", {}),
    ("hard_silu", {}),
    ("hard_swish", {}),
    ("softplus", {}),
    ("softsign", {}),
    ("exponential", {}),
    ("log_sigmoid", {}),
    ("sparse_plus", {}),
    ("sparse_sigmoid", {}),
    ("squareplus", {}),
    ("squareplus", {"b": 0.5}),
    ("tanh_shrink", {}),
    ("hard_tanh", {}),
    ("hard_shrink", {}),
    ("hard_shrink", {"threshold": 1.5}),
    ("soft_shrink", {}),
    ("soft_shrink", {"threshold": 1.0}),
    ("threshold", {"threshold": 0.3, "default_value": -0.5}),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in kwargs.items()) for name, kwargs in CASES]

EXPECTED_SLOPES = {  # DESIGN.md, measured independently
    "linear": 1.0,
    "relu": 1.0,
    "leaky_relu": 1.0,
    "tanh": 0.46,
    "sigmoid": 0.11,
    "selu": 0.78,
    "elu": 0.89,
    "softplus": 0.49,
    "gelu": 1.144,
    "silu": 1.173,
    "mish": 1.076,
}
STABLE = ["tanh", "sigmoid", "selu", "elu", "softplus", "hard_tanh", "softsign"]
NEUTRAL = ["linear", "relu", "leaky_relu"]
UNSTABLE = ["gelu", "silu", "swish", "mish", "hard_silu"]


def reference_expectation(function, kinks) -> float:
    """E[function(z)], z ~ N(0, 1), by scipy.integrate.quad with the kinks as points."""

    def integrand(z: float) -> float:
        value = float(function(np.array([z]))[0])
        return value * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    points = sorted(
        {float(k) for k in kinks if abs(k) < REFERENCE_BOUND} | set(REFERENCE_HELP_POINTS)
    )
    value, _ = integrate.quad(
        integrand,
        -REFERENCE_BOUND,
        REFERENCE_BOUND,
        points=points,
        epsabs=0.0,
        epsrel=1e-12,
        limit=1000,
    )
    return value


def reference_gains(name, kwargs) -> tuple[float, float, float]:
    phi = resolve_activation(name, kwargs)
    second_moment = reference_expectation(lambda z: phi(z) ** 2, phi.kinks)
    derivative_moment = reference_expectation(lambda z: phi.derivative(z) ** 2, phi.kinks)
    slope_numerator = reference_expectation(lambda z: phi(z) ** 2 * (z * z - 1) / 2, phi.kinks)
    return (
        1.0 / math.sqrt(second_moment),
        1.0 / math.sqrt(derivative_moment),
        slope_numerator / second_moment,
    )


# ------------------------------------------------------------------------------------------
# Accuracy against scipy.integrate.quad.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_gains_and_slope_match_scipy_quad(name, kwargs):
    forward, backward, slope = reference_gains(name, kwargs)
    assert gain(name, "forward", **kwargs) == pytest.approx(forward, rel=QUAD_RTOL)
    assert gain(name, "backward", **kwargs) == pytest.approx(backward, rel=QUAD_RTOL)
    assert variance_slope(name, **kwargs) == pytest.approx(slope, rel=QUAD_RTOL, abs=1e-12)


def test_gaussian_expectation_moments():
    assert gaussian_expectation(lambda z: np.ones_like(z)) == pytest.approx(1.0, rel=1e-13)
    assert gaussian_expectation(lambda z: z**2) == pytest.approx(1.0, rel=1e-13)
    assert gaussian_expectation(lambda z: z**4) == pytest.approx(3.0, rel=1e-13)
    assert gaussian_expectation(lambda z: np.abs(z)) == pytest.approx(
        math.sqrt(2 / math.pi), rel=1e-13
    )
    # A jump at an unknown place is found by bisection.
    assert gaussian_expectation(lambda z: (z > 0.3).astype(float)) == pytest.approx(
        0.5 * math.erfc(0.3 / math.sqrt(2)), rel=1e-12
    )


# ------------------------------------------------------------------------------------------
# Closed forms.
# ------------------------------------------------------------------------------------------


def test_relu_closed_form_is_exact():
    assert gain("relu") == math.sqrt(2.0)
    assert gain("relu", "backward") == math.sqrt(2.0)
    assert variance_slope("relu") == 1.0


def test_linear_closed_form_is_exact():
    assert gain("linear") == 1.0
    assert gain("linear", "backward") == 1.0
    assert variance_slope("linear") == 1.0
    assert gain(None) == 1.0


@pytest.mark.parametrize("negative_slope", [0.0, 0.01, 0.1, 0.2, 0.3, 0.5, 1.0])
def test_leaky_relu_closed_form(negative_slope):
    expected = math.sqrt(2.0 / (1.0 + negative_slope**2))
    for direction in ("forward", "backward"):
        assert gain("leaky_relu", direction, negative_slope=negative_slope) == pytest.approx(
            expected, rel=1e-15
        )
    assert variance_slope("leaky_relu", negative_slope=negative_slope) == pytest.approx(
        1.0, rel=1e-15
    )


def test_leaky_relu_default_slope_is_keras_default():
    assert gain("leaky_relu") == pytest.approx(math.sqrt(2.0 / 1.04), rel=1e-15)


def test_selu_is_self_normalizing_so_its_closed_form_holds():
    phi = resolve_activation("selu")
    by_quadrature = gaussian_expectation(lambda z: phi(z) ** 2, phi.kinks)
    assert by_quadrature == pytest.approx(1.0, rel=1e-12)
    assert gaussian_expectation(phi, phi.kinks) == pytest.approx(0.0, abs=1e-12)
    assert gain("selu") == 1.0


def test_exponential_closed_forms():
    assert gain("exponential") == pytest.approx(math.exp(-1.0), rel=1e-15)
    assert gain("exponential", "backward") == pytest.approx(math.exp(-1.0), rel=1e-15)
    assert variance_slope("exponential") == pytest.approx(2.0, rel=1e-15)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "selu", "exponential", "linear"])
def test_closed_forms_agree_with_quadrature(name):
    phi = resolve_activation(name)
    moment = gaussian_expectation(lambda z: phi(z) ** 2, phi.kinks)
    derivative_moment = gaussian_expectation(lambda z: phi.derivative(z) ** 2, phi.kinks)
    assert gain(name) == pytest.approx(1 / math.sqrt(moment), rel=1e-12)
    assert gain(name, "backward") == pytest.approx(1 / math.sqrt(derivative_moment), rel=1e-12)


def test_relu_with_negative_slope_equals_leaky_relu_by_quadrature():
    assert gain("relu", negative_slope=0.3) == pytest.approx(
        gain("leaky_relu", negative_slope=0.3), rel=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(negative_slope=st.floats(min_value=0.0, max_value=1.0))
def test_leaky_relu_closed_form_matches_quadrature(negative_slope):
    phi = resolve_activation("leaky_relu", {"negative_slope": negative_slope})
    moment = gaussian_expectation(lambda z: phi(z) ** 2, phi.kinks)
    closed = gain("leaky_relu", negative_slope=negative_slope)
    assert closed == pytest.approx(1 / math.sqrt(moment), rel=1e-12)
    # The same function through Keras's relu(negative_slope=...) goes through quadrature.
    assert gain("relu", "backward", negative_slope=negative_slope) == pytest.approx(
        closed, rel=1e-12
    )


# ------------------------------------------------------------------------------------------
# The NumPy closed forms are Keras's activations.
# ------------------------------------------------------------------------------------------


def keras_activation(name, kwargs):
    function = getattr(keras.activations, name)
    return lambda x: function(x, **kwargs)


@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_numpy_activation_matches_keras(name, kwargs):
    grid = np.linspace(-8.0, 8.0, 1601)
    phi = resolve_activation(name, kwargs)
    expected = backend.current().to_numpy(keras_activation(name, kwargs)(grid))
    if backend.current().float64_available():
        assert expected.dtype == np.float64
        np.testing.assert_allclose(phi(grid), expected, rtol=KERAS_RTOL, atol=KERAS_ATOL)
    else:
        # JAX without x64 computes Keras's activations in float32 (on a float32 grid: away
        # from the kinks, where rounding the grid can cross one).
        grid32 = grid.astype(np.float32).astype(np.float64)
        away = np.all(np.abs(grid32[:, None] - np.array(phi.kinks + (1e9,))) > 1e-6, axis=1)
        np.testing.assert_allclose(
            phi(grid)[away], expected[away], rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL
        )


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_numpy_derivative_matches_gradient_tape(name, kwargs):
    import tensorflow as tf

    grid = np.linspace(-8.0, 8.0, 1601)
    phi = resolve_activation(name, kwargs)
    away_from_kinks = np.all(np.abs(grid[:, None] - np.array(phi.kinks + (1e9,))) > 1e-6, axis=1)
    grid = grid[away_from_kinks]
    inputs = tf.constant(grid)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = keras_activation(name, kwargs)(inputs)
    expected = tape.gradient(outputs, inputs).numpy()
    np.testing.assert_allclose(phi.derivative(grid), expected, rtol=KERAS_RTOL, atol=TAPE_ATOL)


def test_every_keras_activation_is_classified():
    public = {
        name
        for name in dir(keras.activations)
        if not name.startswith("_")
        and name not in {"get", "serialize", "deserialize"}
        and callable(getattr(keras.activations, name))
    }
    covered = set(CLOSED_FORMS) | set(ALIASES) | set(NOT_ELEMENTWISE)
    assert public <= covered, f"new Keras activations without a closed form: {public - covered}"
    assert {name for name, _ in CASES} == set(CLOSED_FORMS) | set(ALIASES)


@pytest.mark.parametrize(
    "name, kwargs, kinks",
    [
        ("relu", {}, (0.0,)),
        ("relu", {"max_value": 3.0, "threshold": -0.5}, (-0.5, 0.0, 3.0)),
        ("relu6", {}, (0.0, 6.0)),
        ("leaky_relu", {}, (0.0,)),
        ("hard_sigmoid", {}, (-3.0, 3.0)),
        ("hard_silu", {}, (-3.0, 3.0)),
        ("elu", {}, (0.0,)),
        ("selu", {}, (0.0,)),
        ("celu", {}, (0.0,)),
        ("hard_shrink", {"threshold": 2.0}, (-2.0, 2.0)),
        ("tanh", {}, ()),
        ("gelu", {}, ()),
    ],
)
def test_activation_kinks(name, kwargs, kinks):
    assert activation_kinks(name, kwargs) == kinks


def test_activation_derivative_is_a_numpy_function():
    derivative = activation_derivative("hard_sigmoid")
    np.testing.assert_array_equal(derivative(np.array([-4.0, 0.0, 4.0])), [0.0, 1 / 6, 0.0])


# ------------------------------------------------------------------------------------------
# Variance-map slope.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_SLOPES))
def test_expected_slopes(name):
    assert variance_slope(name) == pytest.approx(EXPECTED_SLOPES[name], abs=0.01)


@pytest.mark.parametrize("name", STABLE)
def test_stable_activations(name):
    assert variance_slope(name) < 1.0 - 1e-3


@pytest.mark.parametrize("name", NEUTRAL)
def test_neutral_activations(name):
    assert variance_slope(name) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", UNSTABLE)
def test_unstable_activations(name):
    assert variance_slope(name) > 1.0 + 1e-3


def test_slope_is_the_derivative_of_the_variance_map():
    phi = resolve_activation("tanh")
    forward_gain = gain("tanh")

    def variance_map(q):
        return forward_gain**2 * gaussian_expectation(lambda z: phi(math.sqrt(q) * z) ** 2)

    step = 1e-4
    numerical = (variance_map(1 + step) - variance_map(1 - step)) / (2 * step)
    assert variance_map(1.0) == pytest.approx(1.0, rel=1e-12)
    assert variance_slope("tanh") == pytest.approx(numerical, rel=1e-6)


# ------------------------------------------------------------------------------------------
# Other ways to give an activation.
# ------------------------------------------------------------------------------------------


def numpy_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_custom_keras_callable():
    def reference(z):
        return z * numpy_sigmoid(1.702 * z)

    def reference_derivative(z):
        s = numpy_sigmoid(1.702 * z)
        return s + 1.702 * z * s * (1.0 - s)

    def custom(x):
        return x * keras.ops.sigmoid(1.702 * x)

    forward = 1 / math.sqrt(reference_expectation(lambda z: reference(z) ** 2, ()))
    backward = 1 / math.sqrt(reference_expectation(lambda z: reference_derivative(z) ** 2, ()))
    assert gain(custom) == pytest.approx(forward, rel=CALLABLE_RTOL)
    assert gain(custom, "backward") == pytest.approx(backward, rel=CALLABLE_RTOL)
    assert gain(lambda x: x * keras.ops.sigmoid(1.702 * x)) == pytest.approx(forward, rel=CALLABLE_RTOL)


def test_custom_numpy_callable_uses_finite_differences():
    assert gain(lambda x: np.tanh(x), "backward") == pytest.approx(
        gain("tanh", "backward"), rel=1e-10
    )


def test_custom_kinked_callables_need_no_kinks():
    expected = 1 / math.sqrt(0.5 * math.erfc(0.3 / math.sqrt(2)))  # 1 / sqrt(P(z > 0.3))
    assert gain(lambda x: keras.ops.relu(x - 0.3), "backward") == pytest.approx(
        expected, rel=max(1e-10, CALLABLE_RTOL)
    )
    assert gain(lambda x: np.maximum(x - 0.3, 0.0), "backward") == pytest.approx(
        expected, rel=1e-10
    )
    assert gain(lambda x: np.where(x > 0.3, x, 0.0), "backward") == pytest.approx(
        expected, rel=1e-10
    )
    assert gain(lambda x: keras.ops.relu(x)) == pytest.approx(
        math.sqrt(2), rel=max(1e-12, CALLABLE_RTOL)
    )


def test_float32_callable():
    def tanh32(x):
        return keras.ops.tanh(keras.ops.cast(x, "float32"))

    assert gain(tanh32) == pytest.approx(gain("tanh"), rel=1e-6)
    assert gain(tanh32, "backward") == pytest.approx(gain("tanh", "backward"), rel=1e-6)
    assert gain(keras.layers.ReLU(), "backward") == pytest.approx(math.sqrt(2), rel=1e-6)


@pytest.mark.backends("tensorflow")
def test_custom_callable_that_needs_a_tensor():
    def relu_of_tensor(x):
        return keras.ops.relu(x) * x.shape.rank  # a NumPy shape has no .rank

    assert gain(relu_of_tensor) == pytest.approx(math.sqrt(2), rel=1e-12)


def test_custom_callable_with_kwargs():
    def scaled_tanh(x, scale=1.0):
        return scale * keras.ops.tanh(x)

    expected = gain("tanh") / 2
    assert gain(scaled_tanh, scale=2.0) == pytest.approx(expected, rel=max(1e-10, CALLABLE_RTOL))
    with pytest.raises(TypeError, match=r"'bogus'.*Received: activation_kwargs=\{'bogus': 1\}"):
        gain(scaled_tanh, bogus=1)


def test_none_is_linear():
    assert gain(None) == gain("linear")
    assert gain(None, "backward") == 1.0
    assert variance_slope(None) == 1.0


@pytest.mark.parametrize("name", ["relu", "gelu", "tanh", "hard_silu", "silu"])
def test_keras_function_objects(name):
    function = getattr(keras.activations, name)
    assert gain(function) == gain(name)
    assert gain(function, "backward") == gain(name, "backward")
    assert resolve_activation(function).closed_form


def test_keras_function_object_with_kwargs():
    assert gain(keras.activations.leaky_relu, negative_slope=0.1) == gain(
        "leaky_relu", negative_slope=0.1
    )


def test_aliases():
    assert gain("swish") == gain("silu")
    assert gain("hard_swish", "backward") == gain("hard_silu", "backward")


def test_gelu_default_is_keras_activations_default_exact_form():
    # keras.activations.gelu defaults to approximate=False (keras.ops.gelu defaults to True).
    assert resolve_activation("gelu").kwargs == {"approximate": False}
    assert gain("gelu") == gain("gelu", approximate=False)
    assert gain("gelu") != gain("gelu", approximate=True)


def test_results_are_cached():
    keras_inits.gains._expectation_cached.cache_clear()
    gain("mish")
    hits = keras_inits.gains._expectation_cached.cache_info().hits
    gain("mish")
    assert keras_inits.gains._expectation_cached.cache_info().hits == hits + 1
    # Defaults are bound before caching: the same entry.
    gain("leaky_relu", "forward")
    hits = keras_inits.gains._expectation_cached.cache_info().hits
    gain("leaky_relu", "forward", negative_slope=0.2)
    assert keras_inits.gains._expectation_cached.cache_info().hits == hits + 1


def test_unhashable_kwargs_are_computed_uncached():
    def scaled(x, scales=(1.0,)):
        return scales[0] * keras.ops.tanh(x)

    assert gain(scaled, scales=[2.0]) == pytest.approx(gain("tanh") / 2, rel=max(1e-10, CALLABLE_RTOL)
    )


def test_package_exports():
    assert keras_inits.gain is gain
    assert keras_inits.variance_slope is variance_slope


def test_docstring_examples():
    results = doctest.testmod(keras_inits.gains)
    assert results.attempted > 0
    assert results.failed == 0


# ------------------------------------------------------------------------------------------
# Bad input: each error names the argument and the value.
# ------------------------------------------------------------------------------------------


def test_unknown_name():
    with pytest.raises(ValueError, match=r"Received: activation='nope'") as info:
        gain("nope")
    assert "'relu'" in str(info.value)


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match=r"Did you mean .*'relu'"):
        gain("rellu")


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax", "glu"])
def test_not_elementwise_names(name):
    expected = rf"activation must be element-wise; {name} .*Received: activation='{name}'"
    with pytest.raises(ValueError, match=expected):
        gain(name)


def test_softmax_message_exactly():
    with pytest.raises(ValueError) as info:
        gain("softmax")
    assert str(info.value) == (
        "activation must be element-wise; softmax mixes the entries of its input. "
        "Received: activation='softmax'"
    )


def test_not_elementwise_keras_function_object():
    with pytest.raises(ValueError, match=r"element-wise; softmax.*Received: activation=<function"):
        gain(keras.activations.softmax)


@pytest.mark.parametrize(
    "function",
    [
        lambda x: x - keras.ops.mean(x),
        lambda x: keras.ops.cumsum(x),
        keras.ops.softmax,
        lambda x: x / keras.ops.norm(x),
        lambda x: keras.ops.sum(x),
    ],
    ids=["minus-mean", "cumsum", "ops-softmax", "normalize", "sum"],
)
def test_not_elementwise_custom_callables(function):
    with pytest.raises(ValueError, match=r"activation must be element-wise.*Received: activation="):
        gain(function)


def test_unknown_kwarg():
    with pytest.raises(TypeError) as info:
        gain("relu", bogus=1)
    message = str(info.value)
    assert "activation_kwargs has an argument that relu does not take: 'bogus'" in message
    assert "Received: activation_kwargs={'bogus': 1}" in message


def test_kwarg_of_an_activation_without_arguments():
    with pytest.raises(TypeError, match=r"tanh does not take: 'alpha'"):
        gain("tanh", alpha=1.0)


def test_missing_required_kwargs():
    with pytest.raises(TypeError, match=r"requires: 'threshold', 'default_value'"):
        gain("threshold")


def test_kwarg_of_wrong_type():
    with pytest.raises(TypeError, match=r"negative_slope.*Received: activation_kwargs="):
        gain("leaky_relu", negative_slope="0.1")
    with pytest.raises(TypeError, match=r"approximate.*bool"):
        gain("gelu", approximate="yes")


def test_bad_direction():
    with pytest.raises(ValueError, match=r"Received: direction='sideways'"):
        gain("relu", direction="sideways")


@pytest.mark.parametrize("activation", [3, 2.5, True, ["relu"]])
def test_wrong_type(activation):
    with pytest.raises(TypeError, match=r"Received: activation="):
        gain(activation)


def test_zero_expectation():
    with pytest.raises(ValueError, match=r"E\[phi\(z\)\^2\] is 0.*max_value"):
        gain("relu", max_value=0.0)
    with pytest.raises(ValueError, match=r"backward gain does not exist"):
        gain(lambda x: keras.ops.sign(x), "backward")


def test_infinite_expectation():
    with pytest.raises(ValueError, match=r"infinite"):
        gain(lambda x: keras.ops.exp(x**2))
    with pytest.raises(ValueError, match=r"infinite"):
        gain(lambda x: keras.ops.log(x))  # nan below 0
    if not backend.current().float64_available():
        return  # in float32, exp(0.2 z^2) overflows at |z| > 21: finite only in float64
    # Heavy but finite: E[exp(0.4 z^2)] = 1 / sqrt(0.2).
    assert gain(lambda x: keras.ops.exp(0.2 * x**2)) == pytest.approx(0.2**0.25, rel=1e-10)


# ------------------------------------------------------------------------------------------
# Serialization.
# ------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_inits_tests")
def lecun_tanh(x):
    return 1.7159 * keras.ops.tanh(2.0 / 3.0 * x)


@keras.saving.register_keras_serializable(package="keras_inits_tests")
class ScaledTanh:
    def __init__(self, scale=1.0):
        self.scale = scale

    def __call__(self, x):
        return self.scale * keras.ops.tanh(x)

    def get_config(self):
        return {"scale": self.scale}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_registered_function_round_trips():
    config = serialize_activation(lecun_tanh)
    assert isinstance(config, dict)
    restored = deserialize_activation(json.loads(json.dumps(config)))
    assert restored is lecun_tanh
    assert gain(restored) == gain(lecun_tanh)
    assert gain(config) == gain(lecun_tanh)  # resolve_activation also takes the config


def test_registered_class_instance_round_trips():
    config = serialize_activation(ScaledTanh(3.0))
    restored = deserialize_activation(json.loads(json.dumps(config)))
    assert isinstance(restored, ScaledTanh) and restored.scale == 3.0
    assert gain(restored) == pytest.approx(gain("tanh") / 3.0, rel=max(1e-10, CALLABLE_RTOL)
    )


@pytest.mark.parametrize("name", ["relu", "gelu", "swish", "hard_silu"])
def test_strings_stay_strings(name):
    assert serialize_activation(name) == name
    assert deserialize_activation(name) == name


def test_keras_builtins_become_names():
    assert serialize_activation(keras.activations.gelu) == "gelu"
    assert serialize_activation(keras.activations.swish) == "silu"
    assert deserialize_activation(serialize_activation(keras.activations.relu)) == "relu"


def test_none_round_trips():
    assert serialize_activation(None) is None
    assert deserialize_activation(None) is None


def test_lambda_is_refused():
    with pytest.raises(ValueError, match=r"'<lambda>'.*register_keras_serializable\(package="):
        serialize_activation(lambda x: x)


def test_unregistered_local_function_is_refused():
    def my_activation(x):
        return x

    with pytest.raises(ValueError, match=r"'my_activation'.*register_keras_serializable"):
        serialize_activation(my_activation)


def test_serialize_wrong_type():
    with pytest.raises(TypeError, match=r"Received: activation=3"):
        serialize_activation(3)
    with pytest.raises(TypeError, match=r"Received: config=3"):
        deserialize_activation(3)


# ------------------------------------------------------------------------------------------
# The activation registry: bounds, layer classes, the activation a layer applies.
# ------------------------------------------------------------------------------------------


def test_registry_covers_every_closed_form():
    assert set(REGISTRY) == set(CLOSED_FORMS)
    for name, spec in REGISTRY.items():
        kwargs = {"threshold": 0.0, "default_value": 0.0} if name == "threshold" else {}
        phi, derivative, kinks = spec.closed_form(**kwargs)
        assert callable(phi) and callable(derivative) and isinstance(kinks, tuple)


@pytest.mark.parametrize(
    "activation, kwargs, expected",
    [
        ("tanh", {}, (-1.0, 1.0)),
        ("sigmoid", {}, (0.0, 1.0)),
        ("hard_sigmoid", {}, (0.0, 1.0)),
        ("sparse_sigmoid", {}, (0.0, 1.0)),
        ("softsign", {}, (-1.0, 1.0)),
        ("hard_tanh", {}, (-1.0, 1.0)),
        ("relu6", {}, (None, 6.0)),
        ("relu", {"max_value": 4.0}, (None, 4.0)),
        ("relu", {}, None),
        ("gelu", {}, None),
        (keras.activations.tanh, {}, (-1.0, 1.0)),
        (lambda x: keras.ops.tanh(x), {}, None),
    ],
)
def test_bounds(activation, kwargs, expected):
    assert bounds(activation, **kwargs) == expected


@pytest.mark.parametrize(
    "make_layer, expected",
    [
        (lambda: keras.layers.Dense(3, activation="gelu"), ("gelu", {})),
        (lambda: keras.layers.Conv2D(3, 3, activation="swish"), ("silu", {})),
        (lambda: keras.layers.Dense(3), None),
        (lambda: keras.layers.Activation("tanh"), ("tanh", {})),
        (lambda: keras.layers.ReLU(), ("relu", {})),
        (lambda: keras.layers.ReLU(max_value=6.0), ("relu", {"max_value": 6.0})),
        (lambda: keras.layers.LeakyReLU(0.1), ("leaky_relu", {"negative_slope": 0.1})),
        (lambda: keras.layers.ELU(0.5), ("elu", {"alpha": 0.5})),
        (lambda: keras.layers.Softmax(), ("softmax", {})),
        # An `activation` attribute that configures something inside is not the output's.
        (lambda: keras.layers.LSTM(3, activation="relu"), None),
        (lambda: keras.layers.Flatten(), None),
    ],
)
def test_layer_activation(make_layer, expected):
    assert layer_activation(make_layer()) == expected


def test_layer_activation_of_prelu_is_its_mean_slope():
    layer = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25))
    layer.build((None, 4))
    assert layer_activation(layer) == ("leaky_relu", {"negative_slope": 0.25})


def test_layer_activation_of_a_custom_callable_is_the_callable():
    layer = keras.layers.Dense(3, activation=lecun_tanh)
    assert layer_activation(layer) == (lecun_tanh, {})


def test_activation_layer_types():
    for layer_type in (
        keras.layers.Activation,
        keras.layers.ReLU,
        keras.layers.LeakyReLU,
        keras.layers.ELU,
        keras.layers.PReLU,
        keras.layers.Softmax,
    ):
        assert layer_type in ACTIVATION_LAYER_TYPES
    assert keras.layers.Dense not in ACTIVATION_LAYER_TYPES
