"""Tests for the edge of chaos in keras_inits.gains.

References are independent of the code under test: ``scipy.integrate.quad`` for one-dimensional
Gaussian expectations, ``scipy.integrate.dblquad`` for the correlation map, and closed forms
(the arc-cosine kernel of relu, relu's and tanh's critical points at bias_std = 0).
"""

from __future__ import annotations

import dataclasses
import math
import re

import keras
import numpy as np
import pytest
from scipy import integrate

import keras_inits
from keras_inits import backend
from keras_inits.gains import (
    Criticality,
    correlation_map,
    depth_scale,
    edge_of_chaos,
    length_fixed_point,
)

# Brief: the critical points to 1e-6, chi_1 = 1 to 1e-8, the correlation map to ~1e-6 of dblquad;
# the map agrees with dblquad to ~4e-16, so a much tighter bound guards against degradation.
CRITICAL_ATOL = 1e-6
CHI_ATOL = 1e-8
DBLQUAD_RTOL = 1e-9
QUAD_RTOL = 1e-9
# Custom callables made of Keras ops are float32 on JAX without x64.
CALLABLE_RTOL = 1e-9 if backend.current().float64_available() else 1e-5
# z beyond +-10 carries a normal density below 1e-22.
REFERENCE_BOUND = 10.0
SQRT_2PI = math.sqrt(2.0 * math.pi)

SELU_SCALE = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772


def numpy_activation(name: str):
    functions = {
        "tanh": math.tanh,
        "relu": lambda x: max(x, 0.0),
        "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    }
    return functions[name]


def tanh_derivative(x):
    return 1.0 - math.tanh(x) ** 2


def elu(x):
    return x if x > 0.0 else math.expm1(x)


def elu_derivative(x):
    return 1.0 if x > 0.0 else math.exp(x)


def selu(x):
    return SELU_SCALE * (x if x > 0.0 else SELU_ALPHA * math.expm1(x))


def selu_derivative(x):
    return SELU_SCALE * (1.0 if x > 0.0 else SELU_ALPHA * math.exp(x))


# Independent float64 forms (value, derivative) for the quad references.
REFERENCE_FORMS = {
    "tanh": (math.tanh, tanh_derivative),
    "elu": (elu, elu_derivative),
    "selu": (selu, selu_derivative),
}


def density(z: float) -> float:
    return math.exp(-0.5 * z * z) / SQRT_2PI


def reference_expectation(function, q: float) -> float:
    """E[function(sqrt(q) z)] by scipy.integrate.quad."""
    root = math.sqrt(q)
    value, _ = integrate.quad(
        lambda z: float(function(root * z)) * density(z),
        -REFERENCE_BOUND,
        REFERENCE_BOUND,
        points=[0.0],
        epsabs=0.0,
        epsrel=1e-12,
        limit=500,
    )
    return value


def reference_correlation_map(name: str, c: float, weight_std: float, bias_std: float) -> float:
    """C(c) by scipy.integrate.dblquad at the q* of the code under test (checked separately)."""
    phi = numpy_activation(name)
    q = length_fixed_point(name, weight_std, bias_std)
    root = math.sqrt(q)
    spread = math.sqrt(1.0 - c * c)

    def integrand(z2: float, z1: float) -> float:
        u1 = root * z1
        u2 = root * (c * z1 + spread * z2)
        return float(phi(u1)) * float(phi(u2)) * density(z1) * density(z2)

    if name == "relu":
        # The integrand vanishes unless u1 > 0 and u2 > 0: integrate that wedge, where it is smooth.
        covariance, _ = integrate.dblquad(
            integrand,
            0.0,
            REFERENCE_BOUND,
            lambda z1: -c * z1 / spread,
            lambda z1: REFERENCE_BOUND + abs(c) * REFERENCE_BOUND / spread,
            epsabs=0.0,
            epsrel=1e-10,
        )
    else:
        covariance, _ = integrate.dblquad(
            integrand,
            -REFERENCE_BOUND,
            REFERENCE_BOUND,
            -REFERENCE_BOUND,
            REFERENCE_BOUND,
            epsabs=1e-13,
            epsrel=1e-10,
        )
    variance = weight_std**2 * reference_expectation(lambda x: phi(x) ** 2, q) + bias_std**2
    return (weight_std**2 * covariance + bias_std**2) / variance


# ------------------------------------------------------------------------------------------
# Critical points.
# ------------------------------------------------------------------------------------------


def test_relu_is_critical_at_sqrt_2():
    criticality = edge_of_chaos("relu")
    assert criticality.weight_std == pytest.approx(math.sqrt(2.0), abs=CRITICAL_ATOL)
    assert criticality.chi_1 == pytest.approx(1.0, abs=CHI_ATOL)
    assert criticality.length_depth_scale == math.inf


def test_tanh_is_critical_at_one():
    criticality = edge_of_chaos("tanh")
    assert criticality.weight_std == pytest.approx(1.0, abs=CRITICAL_ATOL)
    assert criticality.length_fixed_point == 0.0
    assert criticality.chi_1 == pytest.approx(1.0, abs=CHI_ATOL)


def test_leaky_relu_is_critical_at_its_backward_gain():
    criticality = edge_of_chaos("leaky_relu", negative_slope=0.1)
    expected = math.sqrt(2.0 / (1.0 + 0.1**2))
    assert criticality.weight_std == pytest.approx(expected, abs=CRITICAL_ATOL)


def test_selu_is_critical_at_the_limit_of_its_slopes_at_zero():
    # q* = 0: chi_1 -> weight_std^2 E[selu'(0+-)^2] = weight_std^2 scale^2 (1 + alpha^2) / 2.
    expected = 1.0 / (SELU_SCALE * math.sqrt((1.0 + SELU_ALPHA**2) / 2.0))
    assert edge_of_chaos("selu").weight_std == pytest.approx(expected, abs=CRITICAL_ATOL)


@pytest.mark.parametrize("name", ["tanh", "elu", "selu"])
def test_chi_1_is_one_at_the_returned_weight_std(name):
    """q* is a fixed point of the length map and chi_1 = 1 there, both by scipy.integrate.quad."""
    criticality = edge_of_chaos(name, bias_std=0.05)
    phi, derivative = REFERENCE_FORMS[name]
    q = criticality.length_fixed_point
    sigma_w = criticality.weight_std
    length = sigma_w**2 * reference_expectation(lambda x: phi(x) ** 2, q) + 0.05**2
    chi_1 = sigma_w**2 * reference_expectation(lambda x: derivative(x) ** 2, q)
    assert q > 0.0
    assert length == pytest.approx(q, rel=1e-7)
    assert criticality.chi_1 == pytest.approx(1.0, abs=CHI_ATOL)
    assert chi_1 == pytest.approx(1.0, abs=CHI_ATOL)
    assert math.isfinite(criticality.length_depth_scale)


def test_tanh_critical_weight_std_grows_with_bias_std():
    weights = [edge_of_chaos("tanh", bias_std=b).weight_std for b in (0.0, 0.05, 0.3)]
    assert weights[0] < weights[1] < weights[2]


def test_criticality_is_a_frozen_dataclass():
    criticality = edge_of_chaos("tanh")
    assert isinstance(criticality, Criticality)
    with pytest.raises(dataclasses.FrozenInstanceError):
        criticality.weight_std = 2.0


def test_custom_callable_matches_the_keras_name():
    custom = lambda x: keras.ops.tanh(x)
    assert edge_of_chaos(custom, bias_std=0.05).weight_std == pytest.approx(
        edge_of_chaos("tanh", bias_std=0.05).weight_std, rel=CALLABLE_RTOL
    )


def test_no_critical_point_for_relu_with_a_bias():
    with pytest.raises(ValueError, match=r"activation='relu'.*bias_std=0\.05"):
        edge_of_chaos("relu", bias_std=0.05)


def test_no_critical_point_for_gelu_without_a_bias():
    with pytest.raises(ValueError, match=r"No critical point.*activation='gelu'"):
        edge_of_chaos("gelu")


def test_no_critical_point_where_chi_1_reaches_1_only_as_the_variance_diverges():
    # softplus: chi_1 -> 1 as weight_std -> sqrt(2) from below, where q* -> inf.
    with pytest.raises(ValueError, match=r"No critical point.*activation='softplus'"):
        edge_of_chaos("softplus", bias_std=0.05)


def test_gelu_with_a_large_bias_has_a_critical_point():
    criticality = edge_of_chaos("gelu", bias_std=0.5)
    assert criticality.chi_1 == pytest.approx(1.0, abs=CHI_ATOL)
    assert criticality.length_fixed_point == pytest.approx(
        length_fixed_point("gelu", criticality.weight_std, 0.5), rel=1e-12
    )


# ------------------------------------------------------------------------------------------
# The length map.
# ------------------------------------------------------------------------------------------


def test_length_fixed_point_closed_forms():
    assert length_fixed_point("relu", 1.0, 1.0) == pytest.approx(2.0, rel=1e-15)
    assert length_fixed_point("linear", 0.5, 1.0) == pytest.approx(4.0 / 3.0, rel=1e-15)
    assert length_fixed_point("tanh", 0.9) == 0.0
    assert length_fixed_point("relu", math.sqrt(2.0)) == 1.0  # neutral: every q is fixed


def test_length_fixed_point_of_tanh_is_a_fixed_point():
    q = length_fixed_point("tanh", 1.5, 0.1)
    image = 1.5**2 * reference_expectation(lambda x: np.tanh(x) ** 2, q) + 0.1**2
    assert image == pytest.approx(q, rel=QUAD_RTOL)


def test_divergent_length_map_is_refused():
    with pytest.raises(ValueError, match=r"weight_std=2\.0, bias_std=0\.0, activation='relu'"):
        length_fixed_point("relu", 2.0)


# ------------------------------------------------------------------------------------------
# The correlation map.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, weight_std, bias_std, c",
    [
        ("tanh", 1.5, 0.1, -0.5),
        ("tanh", 1.5, 0.1, 0.3),
        ("tanh", 1.5, 0.1, 0.9),
        ("relu", math.sqrt(2.0), 0.0, -0.5),
        ("relu", 1.2, 0.5, 0.3),
        ("relu", 1.2, 0.5, 0.9),
        ("gelu", 1.2, 0.3, -0.5),
        ("gelu", 1.2, 0.3, 0.3),
        ("gelu", 1.2, 0.3, 0.9),
    ],
)
def test_correlation_map_matches_dblquad(name, weight_std, bias_std, c):
    expected = reference_correlation_map(name, c, weight_std, bias_std)
    mapped = correlation_map(name, c, weight_std, bias_std)
    assert mapped == pytest.approx(expected, rel=DBLQUAD_RTOL)


def test_relu_correlation_map_is_the_arc_cosine_kernel():
    c = np.linspace(-1.0, 1.0, 9)
    expected = (np.sqrt(1.0 - c * c) + (math.pi - np.arccos(c)) * c) / math.pi
    mapped = correlation_map("relu", c, math.sqrt(2.0))
    np.testing.assert_allclose(mapped, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "name, weight_std, bias_std", [("tanh", 1.5, 0.1), ("gelu", 1.2, 0.3), ("relu", 1.0, 0.2)]
)
def test_one_is_a_fixed_point_and_the_map_is_monotone(name, weight_std, bias_std):
    assert correlation_map(name, 1.0, weight_std, bias_std) == 1.0
    c = np.linspace(-1.0, 1.0, 9)
    mapped = correlation_map(name, c, weight_std, bias_std)
    assert mapped.shape == c.shape
    assert np.all(np.diff(mapped) > 0.0)
    assert mapped[-1] == 1.0
    near_one = correlation_map(name, 1.0 - 1e-9, weight_std, bias_std)
    assert near_one == pytest.approx(1.0, abs=1e-8)


def test_slope_at_one_is_chi_1():
    criticality = edge_of_chaos("tanh", bias_std=0.05)
    step = 1e-4
    below = correlation_map("tanh", 1.0 - step, criticality.weight_std, 0.05)
    assert (1.0 - below) / step == pytest.approx(criticality.chi_1, rel=1e-3)


def test_correlation_map_at_zero_variance_is_the_identity_limit():
    # tanh at weight_std < 1, bias 0: q* = 0, where tanh is linear.
    assert correlation_map("tanh", 0.3, 0.9) == pytest.approx(0.3, rel=1e-12)


# ------------------------------------------------------------------------------------------
# Depth scale.
# ------------------------------------------------------------------------------------------


def test_depth_scale_in_the_ordered_phase():
    # q* = 0: chi_1 = weight_std^2 tanh'(0)^2.
    assert depth_scale("tanh", 0.5) == pytest.approx(-1.0 / math.log(0.25), rel=1e-12)
    q = length_fixed_point("relu", 1.0, 0.2)
    assert q > 0.0
    assert depth_scale("relu", 1.0, 0.2) == pytest.approx(-1.0 / math.log(0.5), rel=1e-12)


def test_depth_scale_diverges_at_criticality():
    assert depth_scale("tanh", 1.0) == math.inf
    assert depth_scale("relu", math.sqrt(2.0)) == math.inf


def test_depth_scale_in_the_chaotic_phase():
    # tanh is odd and bias_std = 0: c* = 0, where u1 and u2 are independent, so
    # chi_c = weight_std^2 E[tanh'(sqrt(q*) z)]^2.
    q = length_fixed_point("tanh", 1.5)
    chi_c = 1.5**2 * reference_expectation(tanh_derivative, q) ** 2
    assert depth_scale("tanh", 1.5) == pytest.approx(-1.0 / math.log(chi_c), rel=1e-7)


# ------------------------------------------------------------------------------------------
# Bad input: each error names the argument and the value.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [2.0, -1.5, math.nan])
def test_bad_correlation(c):
    with pytest.raises(ValueError, match=rf"Received: c={c!r}"):
        correlation_map("tanh", c, 1.0)


def test_bad_correlation_array():
    with pytest.raises(ValueError, match=r"Received: c=array\(\[0\. , 1\.5\]\)"):
        correlation_map("tanh", np.array([0.0, 1.5]), 1.0)


@pytest.mark.parametrize("weight_std", [0.0, -1.0, math.inf])
def test_bad_weight_std(weight_std):
    with pytest.raises(ValueError, match=rf"Received: weight_std={weight_std!r}"):
        length_fixed_point("tanh", weight_std)
    with pytest.raises(ValueError, match=rf"Received: weight_std={weight_std!r}"):
        depth_scale("tanh", weight_std)


@pytest.mark.parametrize("bias_std", [-0.1, math.nan])
def test_bad_bias_std(bias_std):
    with pytest.raises(ValueError, match=rf"Received: bias_std={bias_std!r}"):
        edge_of_chaos("tanh", bias_std)
    with pytest.raises(ValueError, match=rf"Received: bias_std={bias_std!r}"):
        correlation_map("tanh", 0.5, 1.0, bias_std)


@pytest.mark.parametrize("value", ["1.0", True, None, [1.0]])
def test_wrong_types(value):
    with pytest.raises(TypeError, match=re.escape(f"Received: weight_std={value!r}")):
        depth_scale("tanh", value)
    with pytest.raises(TypeError, match=re.escape(f"Received: bias_std={value!r}")):
        edge_of_chaos("tanh", value)


def test_numpy_scalars_are_accepted():
    assert length_fixed_point("relu", np.float32(1.0), np.float64(1.0)) == pytest.approx(2.0)
    assert correlation_map("tanh", np.float64(1.0), np.int64(1)) == 1.0
    criticality = edge_of_chaos("tanh", np.float32(0.0))
    assert criticality.weight_std == pytest.approx(1.0, abs=CRITICAL_ATOL)
    assert type(criticality.bias_std) is float


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"Received: activation='nope'"):
        edge_of_chaos("nope")


def test_package_exports():
    assert keras_inits.edge_of_chaos is edge_of_chaos
    assert keras_inits.correlation_map is correlation_map
    assert keras_inits.depth_scale is depth_scale
    assert keras_inits.length_fixed_point is length_fixed_point
    assert keras_inits.Criticality is Criticality
