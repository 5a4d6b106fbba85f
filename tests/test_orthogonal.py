"""ScaledOrthogonal and DeltaOrthogonal: orthogonality, the Haar law, isometry, configs, bad input.

Exactness is checked where it is claimed: W^T W (or W W^T) = g^2 I to 1e-5 in float32, and
||conv(x)|| = g ||x|| at every position through Conv1D/2D/3D with padding="same". The law is
checked by Kolmogorov-Smirnov tests (p > 1e-4) against the exact law of a Haar matrix's entries.
Shapes are few and small: JAX compiles every op once per new shape.
"""

from __future__ import annotations

import json
import math
import re

import keras
import numpy as np
import pytest
from scipy import stats

from keras_inits import DeltaOrthogonal, ScaledOrthogonal, backend, gain
from keras_inits.initializers.orthogonal import HOUSEHOLDER_BLOCK

KS_P_MIN = 1e-4
ORTHOGONALITY_TOL = 1e-5
# Orthogonality of a kernel cast to a narrow dtype: a few units of its rounding (2**-11, 2**-8).
NARROW_TOL = {"float16": 4e-3, "bfloat16": 3e-2}
# Dense and convolution kernels of every aspect: (matrix rows, cols) after flattening.
ORTHOGONAL_SHAPES = [(16, 16), (24, 8), (8, 24), (3, 3, 4, 8), (2, 8, 20)]
HAAR_SIZE = 256
SMALL_SIZE = 8
DRAWS = 300


def to_numpy(tensor) -> np.ndarray:
    return backend.current().to_numpy(tensor)


def as_float64(tensor) -> np.ndarray:
    if keras.backend.standardize_dtype(tensor.dtype) != "float64":
        tensor = keras.ops.cast(tensor, "float32")
    return to_numpy(tensor).astype(np.float64)


def gram_error(kernel: np.ndarray, gain_value: float) -> float:
    """max |G - g^2 I| / g^2 for G the Gram matrix of the smaller side of the flattened kernel."""
    matrix = kernel.reshape(-1, kernel.shape[-1])
    if matrix.shape[0] < matrix.shape[1]:
        matrix = matrix.T
    gram = matrix.T @ matrix
    return float(np.abs(gram / gain_value**2 - np.eye(gram.shape[0])).max())


# ----------------------------------------------------------------------------------------------
# Orthogonality and gains.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ORTHOGONAL_SHAPES)
@pytest.mark.parametrize("activation, gain_value", [("relu", None), ("tanh", None), (None, 0.7)])
def test_scaled_orthogonal_is_orthogonal_times_the_gain(shape, activation, gain_value):
    initializer = ScaledOrthogonal(activation, gain=gain_value, seed=4)
    expected_gain = gain_value if gain_value is not None else gain(activation)
    assert initializer.gain == pytest.approx(expected_gain, rel=1e-12)
    kernel = as_float64(initializer(shape, "float32"))
    assert kernel.shape == shape
    assert gram_error(kernel, expected_gain) < ORTHOGONALITY_TOL


def test_default_gain_is_hes_relu_gain():
    assert ScaledOrthogonal().gain == pytest.approx(math.sqrt(2.0), rel=1e-12)
    assert DeltaOrthogonal().gain == pytest.approx(math.sqrt(2.0), rel=1e-12)
    leaky = ScaledOrthogonal("leaky_relu", activation_kwargs={"negative_slope": 0.5})
    assert leaky.gain == pytest.approx(math.sqrt(2.0 / 1.25), rel=1e-12)


def stewart_reference(gaussian):
    """Stewart's construction column by column in float64: the reflector of column j is built
    from gaussian[j:, j] alone, and Q = H_0 ... H_{k-1} I[:, :k] with column j times sign(beta_j)."""
    rows, cols = gaussian.shape
    q = np.eye(rows, cols)
    betas = np.empty(cols)
    for j in reversed(range(cols)):
        x = gaussian[j:, j].astype(np.float64)
        betas[j] = -(1.0 if x[0] >= 0 else -1.0) * np.linalg.norm(x)
        v = x / (x[0] - betas[j])
        v[0] = 1.0
        q[j:, :] -= np.outer(v, 2.0 * (v @ q[j:, :]) / (v @ v))
    return q * np.sign(betas)


@pytest.mark.parametrize("shape", [(4, 6), (300, 260)])
def test_int_seed_gives_the_documented_construction_on_every_backend(shape):
    # The documented recipe, so a seed gives the same kernel whatever the backend; (300, 260)
    # spans two blocks of HOUSEHOLDER_BLOCK reflectors.
    if max(shape) > HOUSEHOLDER_BLOCK:
        assert max(shape) < 2 * HOUSEHOLDER_BLOCK
    tall, short = max(shape), min(shape)
    gaussian = np.random.default_rng(5).standard_normal((tall, short), dtype=np.float32)
    expected = stewart_reference(gaussian) * 1.5
    if shape[0] < shape[1]:
        expected = expected.T
    kernel = as_float64(ScaledOrthogonal(gain=1.5, seed=5)(shape, "float32"))
    np.testing.assert_allclose(kernel, expected, rtol=0, atol=1e-5)


def test_seed_semantics():
    fixed = ScaledOrthogonal(seed=3)
    np.testing.assert_array_equal(as_float64(fixed((8, 8))), as_float64(fixed((8, 8))))
    unseeded = ScaledOrthogonal()
    assert not np.array_equal(as_float64(unseeded((8, 8))), as_float64(unseeded((8, 8))))
    generated = ScaledOrthogonal(seed=keras.random.SeedGenerator(1))
    first = as_float64(generated((8, 8), "float32"))
    second = as_float64(generated((8, 8), "float32"))
    assert not np.array_equal(first, second)
    assert gram_error(first, math.sqrt(2.0)) < ORTHOGONALITY_TOL
    assert gram_error(second, math.sqrt(2.0)) < ORTHOGONALITY_TOL


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_dtypes_are_float32_factorizations_cast(dtype):
    shape = (3, 4, 8)
    # ScaledOrthogonal: the flattened kernel is orthogonal; DeltaOrthogonal: its centre tap.
    cases = ((ScaledOrthogonal(seed=2), ...), (DeltaOrthogonal(seed=2), 1))
    for initializer, orthogonal_part in cases:
        narrow = initializer(shape, dtype)
        assert keras.backend.standardize_dtype(narrow.dtype) == dtype
        wide = initializer(shape, "float32")
        np.testing.assert_array_equal(as_float64(narrow), as_float64(keras.ops.cast(wide, dtype)))
        assert gram_error(as_float64(narrow)[orthogonal_part], math.sqrt(2.0)) < NARROW_TOL[dtype]


# ----------------------------------------------------------------------------------------------
# The Haar law.
# ----------------------------------------------------------------------------------------------


def unit_vector_coordinate_cdf(values: np.ndarray, size: int) -> np.ndarray:
    """CDF of one coordinate x of a uniform unit vector in R^size: x^2 ~ Beta(1/2, (size-1)/2)."""
    tail = stats.beta.cdf(values**2, 0.5, (size - 1) / 2.0)
    return 0.5 + 0.5 * np.sign(values) * tail


def test_entries_times_sqrt_n_are_standard_normal():
    kernel = as_float64(ScaledOrthogonal(gain=1.0, seed=11)((HAAR_SIZE, HAAR_SIZE), "float32"))
    result = stats.kstest(kernel.ravel() * math.sqrt(HAAR_SIZE), "norm")
    assert result.pvalue > KS_P_MIN


def test_corner_entry_follows_the_haar_law_over_draws():
    # Without R's sign correction LAPACK's Householder QR makes W[0, 0] <= 0 always.
    initializer = ScaledOrthogonal(gain=1.0)
    corners = np.array(
        [as_float64(initializer((SMALL_SIZE, SMALL_SIZE), "float32"))[0, 0] for _ in range(DRAWS)]
    )
    result = stats.kstest(corners, lambda x: unit_vector_coordinate_cdf(x, SMALL_SIZE))
    assert result.pvalue > KS_P_MIN


def test_determinant_signs_are_mixed_over_draws():
    initializer = ScaledOrthogonal(gain=1.0)
    signs = [
        np.sign(np.linalg.det(as_float64(initializer((SMALL_SIZE, SMALL_SIZE), "float32"))))
        for _ in range(DRAWS)
    ]
    positive = int(np.sum(np.array(signs) > 0))
    assert stats.binomtest(positive, DRAWS, 0.5).pvalue > KS_P_MIN


# ----------------------------------------------------------------------------------------------
# DeltaOrthogonal.
# ----------------------------------------------------------------------------------------------

CONVOLUTIONS = [
    (keras.layers.Conv1D, 3, (2, 7, 4), 6),
    (keras.layers.Conv2D, (3, 2), (2, 5, 6, 3), 5),
    (keras.layers.Conv3D, 3, (1, 4, 4, 3, 2), 2),
]


@pytest.mark.parametrize("layer_class, kernel_size, input_shape, filters", CONVOLUTIONS)
def test_delta_orthogonal_same_convolution_is_an_isometry_times_gain(
    layer_class, kernel_size, input_shape, filters
):
    initializer = DeltaOrthogonal("tanh", seed=7)
    layer = layer_class(
        filters, kernel_size, padding="same", use_bias=False, kernel_initializer=initializer
    )
    inputs = np.random.default_rng(0).standard_normal(input_shape).astype("float32")
    outputs = as_float64(layer(inputs))
    ratio = np.linalg.norm(outputs, axis=-1) / np.linalg.norm(inputs.astype(np.float64), axis=-1)
    np.testing.assert_allclose(ratio, gain("tanh"), rtol=ORTHOGONALITY_TOL, atol=0)


@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 5, 3, 3), (3, 2, 3, 2, 5)])
def test_delta_orthogonal_structure(shape):
    kernel = as_float64(DeltaOrthogonal(gain=0.5, seed=1)(shape, "float32"))
    centre = tuple((size - 1) // 2 for size in shape[:-2])
    tap = kernel[centre]
    assert gram_error(tap, 0.5) < ORTHOGONALITY_TOL
    rest = kernel.copy()
    rest[centre] = 0.0
    assert np.count_nonzero(rest) == 0


def test_delta_orthogonal_seed_generator_gives_new_isometries():
    initializer = DeltaOrthogonal(gain=1.0, seed=keras.random.SeedGenerator(3))
    first = as_float64(initializer((3, 4, 6), "float32"))
    second = as_float64(initializer((3, 4, 6), "float32"))
    assert not np.array_equal(first, second)
    for kernel in (first, second):
        assert gram_error(kernel[1], 1.0) < ORTHOGONALITY_TOL
        assert np.count_nonzero(kernel[[0, 2]]) == 0


@pytest.mark.backends("tensorflow")
def test_traces_inside_tf_function():
    import tensorflow as tf

    initializer = ScaledOrthogonal(seed=keras.random.SeedGenerator(2))
    kernel = tf.function(lambda: initializer((6, 4), "float32"))()
    assert gram_error(kernel.numpy().astype(np.float64), math.sqrt(2.0)) < ORTHOGONALITY_TOL


# ----------------------------------------------------------------------------------------------
# Configs and saving.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ScaledOrthogonal, DeltaOrthogonal])
def test_config_round_trip_gives_the_same_kernel(cls):
    initializer = cls("leaky_relu", seed=9, activation_kwargs={"negative_slope": 0.2})
    config = json.loads(json.dumps(initializer.get_config()))
    assert config["gain"] is None
    rebuilt = cls.from_config(config)
    assert rebuilt.get_config() == initializer.get_config()
    expected = as_float64(initializer((3, 4, 6)))
    np.testing.assert_array_equal(as_float64(rebuilt((3, 4, 6))), expected)
    given = cls(gain=0.3, seed=1)
    assert cls.from_config(given.get_config()).gain == 0.3


def test_saved_model_reloads_with_its_initializers(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.Conv1D(
                4, 3, padding="same", kernel_initializer=DeltaOrthogonal(gain=1.2, seed=2)
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(5, kernel_initializer=ScaledOrthogonal("tanh", seed=1)),
        ]
    )
    path = tmp_path / "orthogonal.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for original, reloaded in zip(model.layers, loaded.layers):
        if hasattr(original, "kernel_initializer"):
            assert type(reloaded.kernel_initializer) is type(original.kernel_initializer)
            reloaded_config = reloaded.kernel_initializer.get_config()
            assert reloaded_config == original.kernel_initializer.get_config()
            np.testing.assert_array_equal(to_numpy(reloaded.kernel), to_numpy(original.kernel))


# ScaledOrthogonal: the flattened kernel is orthogonal; DeltaOrthogonal: its centre tap.
@pytest.mark.parametrize("cls, orthogonal_part", [(ScaledOrthogonal, ...), (DeltaOrthogonal, 1)])
def test_registered_name_builds_a_default_instance(cls, orthogonal_part):
    assert keras.saving.get_registered_name(cls) == f"keras_inits>{cls.__name__}"
    layer = keras.layers.Conv1D(6, 3, kernel_initializer=f"keras_inits>{cls.__name__}")
    layer.build((None, 5, 4))
    assert type(layer.kernel_initializer) is cls
    kernel = as_float64(layer.kernel)[orthogonal_part]
    assert gram_error(kernel, math.sqrt(2.0)) < ORTHOGONALITY_TOL


@pytest.mark.parametrize("cls", [ScaledOrthogonal, DeltaOrthogonal])
def test_no_name_clash_with_keras_builtins(cls):
    from keras.src.initializers import ALL_OBJECTS_DICT
    from keras.src.utils.naming import to_snake_case

    builtin = {name.lower() for name in ALL_OBJECTS_DICT}
    builtin |= {name.lower() for name in dir(keras.initializers) if not name.startswith("_")}
    assert "orthogonal" in builtin
    assert cls.__name__.lower() not in builtin
    assert to_snake_case(cls.__name__) not in builtin


@pytest.mark.parametrize("cls", [ScaledOrthogonal, DeltaOrthogonal])
def test_from_config_refuses_an_unknown_activation(cls):
    config = {**cls(seed=1).get_config(), "activation": "keras.config.set_epsilon"}
    with pytest.raises(ValueError, match="activation"):
        cls.from_config(config)


# ----------------------------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ScaledOrthogonal, DeltaOrthogonal])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "2"])
def test_bad_gain(cls, value):
    with pytest.raises(ValueError, match=rf"`gain`.*Received: gain={value!r}"):
        cls(gain=value)


@pytest.mark.parametrize("cls", [ScaledOrthogonal, DeltaOrthogonal])
@pytest.mark.parametrize("value", [-1, 2**63, "7", 1.5])
def test_bad_seed(cls, value):
    with pytest.raises(ValueError, match=r"`seed`.*Received: seed="):
        cls(seed=value)


def test_delta_orthogonal_needs_out_at_least_in():
    with pytest.raises(ValueError, match=r"isometry.*Received: shape=\(3, 3, 8, 4\)"):
        DeltaOrthogonal(seed=1)((3, 3, 8, 4))


@pytest.mark.parametrize("shape", [(4, 6), (2, 2, 2, 2, 2, 4)])
def test_delta_orthogonal_needs_a_convolution_kernel(shape):
    with pytest.raises(ValueError, match="rank 3 to 5.*Received: shape=" + re.escape(repr(shape))):
        DeltaOrthogonal(seed=1)(shape)


def test_scaled_orthogonal_needs_a_matrix():
    with pytest.raises(ValueError, match=r"rank 2 or more.*Received: shape=\(5,\)"):
        ScaledOrthogonal(seed=1)((5,))


@pytest.mark.parametrize("cls", [ScaledOrthogonal, DeltaOrthogonal])
def test_gain_that_overflows_the_dtype(cls):
    with pytest.raises(ValueError, match=r"`gain`.*float16.*Received: gain=100000.0"):
        cls(gain=1e5, seed=1)((3, 4, 4), "float16")
