"""Laws, exact structure, dtypes, seeds and argument checks of keras_inits.initializers.

Laws are checked as in PyTorch's test/nn/test_init.py: a Kolmogorov-Smirnov test of the drawn
values against the exact distribution the docstring claims (p > 1e-4), on small shapes with
at least 10^4 entries. Exactness (non-zero counts, identity through a convolution) is checked
exactly.
"""

from __future__ import annotations

import itertools
import json
import math
from unittest import mock

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from keras_inits import Dirac, He, ScaledRandom, Sparse, Xavier, _sampling, backend
from keras_inits.fans import compute_fans
from keras_inits.gains import gain

KS_P_MIN = 1e-4
TRUNCATED_STD = 0.87962566103423978
# float64 exists on JAX only in its 64-bit mode (off by default): there it is a clear error.
FLOAT64 = ["float64"] if backend.current().float64_available() else []
FLOAT_DTYPES = ["float16", "bfloat16", "float32"] + FLOAT64
# The widest float dtype the backend holds.
WIDEST_DTYPE = (FLOAT64 or ["float32"])[0]
# A few shapes of ranks 2 to 5 (odd and even taps, square and rectangular channels): JAX
# compiles every op once per new shape, so property tests draw from a fixed set.
PROPERTY_SHAPES = [(6, 1), (1, 5), (3, 4, 2), (2, 5, 3, 3), (3, 2, 4, 2, 5), (4, 3, 6, 5)]
# Examples per property test; fewer on JAX, where each new shape and dtype compiles anew.
PROPERTY_EXAMPLES = 8 if backend.name() == "jax" else 30
# One instance of every class, each able to initialize a (4, 3, 6, 5) kernel.
EVERY_INITIALIZER = {
    "He": lambda: He(seed=1),
    "Xavier": lambda: Xavier(seed=1),
    "Sparse": lambda: Sparse(connections=3, seed=1),
    "Dirac": lambda: Dirac(),
    "ScaledRandom": lambda: ScaledRandom(seed=1),
}
RANDOM_INITIALIZERS = ["He", "Xavier", "Sparse", "ScaledRandom"]


def to_numpy(tensor) -> np.ndarray:
    return backend.current().to_numpy(tensor)


def values_of(initializer, shape, dtype=None) -> np.ndarray:
    """The values as float64 NumPy (through float32 for narrower dtypes: exact)."""
    tensor = initializer(shape, dtype)
    if keras.backend.standardize_dtype(tensor.dtype) != "float64":
        tensor = keras.ops.cast(tensor, "float32")
    return to_numpy(tensor).astype(np.float64)


def assert_law(sample: np.ndarray, distribution) -> None:
    result = stats.kstest(np.ravel(sample), distribution.cdf)
    assert result.pvalue > KS_P_MIN, (result, distribution.kwds, distribution.args)


def claimed_law(distribution: str, variance: float):
    """The scipy distribution a He/Xavier docstring promises for a given variance.

    As in Keras's `VarianceScaling`, "normal" is "truncated_normal".
    """
    if distribution == "untruncated_normal":
        return stats.norm(0.0, math.sqrt(variance))
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return stats.uniform(-limit, 2 * limit)
    scale = math.sqrt(variance) / TRUNCATED_STD
    return stats.truncnorm(-2.0, 2.0, loc=0.0, scale=scale)


# ----------------------------------------------------------------------------------------------
# Laws.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("distribution", ["untruncated_normal", "normal", "uniform"])
def test_he_law(activation, mode, distribution):
    shape = (100, 160)
    direction = "forward" if mode == "fan_in" else "backward"
    fan = shape[0] if mode == "fan_in" else shape[1]
    variance = gain(activation, direction) ** 2 / fan
    initializer = He(activation, mode=mode, distribution=distribution, seed=11)
    assert_law(values_of(initializer, shape), claimed_law(distribution, variance))


def test_he_relu_is_kerass_he_normal_variance():
    # Without the gains module: relu's gain is sqrt(2), so std = sqrt(2 / fan_in).
    sample = values_of(He("relu", distribution="untruncated_normal", seed=3), (200, 100))
    assert_law(sample, stats.norm(0.0, math.sqrt(2.0 / 200)))


def test_he_conv_kernel_uses_receptive_field_fans():
    shape = (3, 3, 16, 80)  # fan_in = 144, fan_out = 720
    sample = values_of(He("relu", mode="fan_out", distribution="uniform", seed=5), shape)
    assert_law(sample, claimed_law("uniform", 2.0 / 720))


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_he_truncated_normal_law_variance_and_bounds(activation):
    shape = (120, 100)
    variance = gain(activation) ** 2 / shape[0]
    sample = values_of(He(activation, seed=2), shape)
    assert_law(sample, claimed_law("truncated_normal", variance))
    bound = 2.0 * math.sqrt(variance) / TRUNCATED_STD
    assert np.abs(sample).max() <= bound * (1 + 1e-6)
    assert sample.var() == pytest.approx(variance, rel=0.03)


# ----------------------------------------------------------------------------------------------
# Kernel layouts: fans of depthwise and transposed kernels, on real layers.
# ----------------------------------------------------------------------------------------------

# Relative tolerance of a measured pre-activation std against the analytic one.
LAYER_STD_TOLERANCE = 0.10


@pytest.mark.parametrize(
    "shape, layout, expected",
    [
        ((784, 500), "standard", (784, 500)),
        ((3, 3, 16, 80), "standard", (144, 720)),
        ((3, 3, 64, 1), "depthwise", (9, 9)),
        ((5, 64, 2), "depthwise", (5, 10)),
        ((3, 3, 32, 64), "transpose", (576, 288)),
        ((2, 2, 2, 8, 4), "transpose", (32, 64)),
    ],
)
def test_compute_fans_layouts(shape, layout, expected):
    assert compute_fans(shape, layout) == expected


def test_compute_fans_bad_layout():
    with pytest.raises(ValueError, match="Received: layout='pointwise'"):
        compute_fans((3, 3, 4, 4), "pointwise")


def test_compute_fans_depthwise_needs_a_convolution_kernel():
    with pytest.raises(ValueError, match=r"Received: shape=\(4, 4\)"):
        compute_fans((4, 4), "depthwise")


@pytest.mark.parametrize("cls", [He, Xavier])
def test_bad_layout(cls):
    with pytest.raises(ValueError, match="Received: layout='channels_first'"):
        cls(layout="channels_first")


def test_sparse_bad_layout():
    with pytest.raises(ValueError, match="Received: layout=None"):
        Sparse(connections=3, layout=None)


def relu_inputs(shape, seed):
    """relu(z), z ~ N(0, 1): the input of a layer that follows a unit-variance ReLU layer."""
    z = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    return np.maximum(z, 0.0)


def test_depthwise_conv2d_he_keeps_variance():
    # fan_in = 9: Var(out) = 9 * (2 / 9) * E[relu(z)^2] = 1.
    channels = 64
    layer = keras.layers.DepthwiseConv2D(
        3,
        use_bias=False,
        depthwise_initializer=He("relu", layout="depthwise", seed=7),
    )
    outputs = backend.current().to_numpy(layer(relu_inputs((4, 10, 10, channels), 0)))
    assert outputs.std() == pytest.approx(1.0, rel=LAYER_STD_TOLERANCE)
    kernel = backend.current().to_numpy(layer.kernel)
    assert kernel.shape == (3, 3, channels, 1)
    assert_law(kernel, claimed_law("truncated_normal", 2.0 / 9))


def test_depthwise_conv2d_standard_layout_shrinks_the_std_by_sqrt_channels():
    # What 0.1 did: fan_in = 9 * 64, so the std is 1 / 8 of the analytic one.
    layer = keras.layers.DepthwiseConv2D(3, use_bias=False, depthwise_initializer=He(seed=7))
    outputs = backend.current().to_numpy(layer(relu_inputs((4, 10, 10, 64), 0)))
    assert outputs.std() == pytest.approx(1.0 / 8.0, rel=LAYER_STD_TOLERANCE)


def test_conv2d_transpose_he_keeps_variance():
    # Kernel (3, 3, out, in); fan_in = 9 * in: Var(out) = 9 * in * 2 / (9 * in) * 1/2 = 1 on
    # the interior pixels (stride 1, every tap lands on an input pixel).
    filters, channels = 48, 16
    layer = keras.layers.Conv2DTranspose(
        filters,
        3,
        use_bias=False,
        kernel_initializer=He("relu", layout="transpose", seed=3),
    )
    outputs = backend.current().to_numpy(layer(relu_inputs((4, 10, 10, channels), 1)))
    interior = outputs[:, 2:-2, 2:-2, :]
    assert interior.std() == pytest.approx(1.0, rel=LAYER_STD_TOLERANCE)
    kernel = backend.current().to_numpy(layer.kernel)
    assert kernel.shape == (3, 3, filters, channels)
    assert_law(kernel, claimed_law("truncated_normal", 2.0 / (9 * channels)))


def test_xavier_depthwise_fans():
    shape = (3, 3, 64, 2)  # fan_in = 9, fan_out = 18
    sample = values_of(Xavier(distribution="uniform", layout="depthwise", seed=2), shape)
    assert_law(sample, claimed_law("uniform", 2.0 / (9 + 18)))


def test_sparse_depthwise_counts_taps_per_filter():
    shape = (3, 3, 16, 2)
    kernel = values_of(Sparse(connections=4, layout="depthwise", seed=5), shape)
    per_filter = np.count_nonzero(kernel.reshape(9, 32), axis=0)
    assert np.all(per_filter == 4)


def test_sparse_transpose_counts_incoming_weights_per_output_channel():
    shape = (3, 3, 5, 6)  # (k, k, out, in): each of the 5 output channels has 54 weights
    kernel = values_of(Sparse(connections=7, layout="transpose", seed=5), shape)
    per_output_channel = np.count_nonzero(np.moveaxis(kernel, 2, 0).reshape(5, -1), axis=1)
    assert np.all(per_output_channel == 7)


def test_sparse_depthwise_connections_capped_at_taps():
    with pytest.raises(ValueError, match="Received: connections=10"):
        Sparse(connections=10, layout="depthwise")((3, 3, 4, 1))


@pytest.mark.parametrize(
    "activation, expected_variance",
    [
        ("linear", lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
        ("relu", lambda fan_in, fan_out: 4.0 / (fan_in + fan_out)),
        (
            "tanh",
            lambda fan_in, fan_out: 2.0
            / (fan_in / gain("tanh") ** 2 + fan_out / gain("tanh", "backward") ** 2),
        ),
    ],
)
@pytest.mark.parametrize("distribution", ["untruncated_normal", "uniform", "truncated_normal"])
def test_xavier_law(activation, expected_variance, distribution):
    shape = (80, 200)
    variance = expected_variance(*shape)
    initializer = Xavier(activation, distribution=distribution, seed=4)
    assert_law(values_of(initializer, shape), claimed_law(distribution, variance))


@pytest.mark.parametrize("cls", [He, Xavier])
def test_normal_means_truncated_normal_as_in_keras_variance_scaling(cls):
    # keras/src/initializers/random_initializers.py (3.15): VarianceScaling maps "normal" to
    # "truncated_normal". Same canonical config, same values for the same seed.
    alias = cls(distribution="normal", seed=8)
    assert alias.get_config()["distribution"] == "truncated_normal"
    assert keras.initializers.VarianceScaling(distribution="normal").distribution == (
        "truncated_normal"
    )
    truncated = cls(distribution="truncated_normal", seed=8)
    np.testing.assert_array_equal(values_of(alias, (30, 20)), values_of(truncated, (30, 20)))


def test_xavier_linear_matches_keras_glorot_uniform_limit():
    shape = (64, 192)
    ours = values_of(Xavier(seed=1), shape)
    limit = math.sqrt(6.0 / sum(shape))
    assert np.abs(ours).max() <= limit
    assert_law(ours, stats.uniform(-limit, 2 * limit))


@pytest.mark.parametrize("distribution", ["normal", "uniform", "truncated_normal"])
def test_scaled_random_law(distribution):
    scale = 0.03
    sample = values_of(ScaledRandom(scale, distribution=distribution, seed=8), (100, 120))
    law = {
        "normal": stats.norm(0.0, scale),
        "uniform": stats.uniform(-scale, 2 * scale),
        # `scale` is the std of the normal before truncation at +-2 scale.
        "truncated_normal": stats.truncnorm(-2.0, 2.0, loc=0.0, scale=scale),
    }[distribution]
    assert_law(sample, law)
    if distribution == "truncated_normal":
        assert np.abs(sample).max() <= 2 * scale * (1 + 1e-6)
        assert sample.std() == pytest.approx(TRUNCATED_STD * scale, rel=0.02)


@pytest.mark.parametrize(
    "initializer, std",
    [
        (Sparse(connections=40, seed=3), 1.0 / math.sqrt(40)),
        (Sparse(connections=40, activation="relu", seed=3), math.sqrt(2.0 / 40)),
        (Sparse(sparsity=0.5, std=0.3, seed=3), 0.3),
    ],
)
def test_sparse_nonzeros_are_normal(initializer, std):
    sample = values_of(initializer, (80, 400))
    nonzeros = sample[sample != 0]
    assert nonzeros.size >= 10**4
    assert_law(nonzeros, stats.norm(0.0, std))


@pytest.mark.parametrize("dtype", ["float32"] + FLOAT64)
def test_inverse_cdf_truncated_normal_sampler(dtype):
    values = to_numpy(
        _sampling.truncated_normal((200, 150), 1.0, dtype, seed=21)
    ).astype(np.float64)
    assert_law(values, stats.truncnorm(-2.0, 2.0))
    assert np.abs(values).max() <= 2.0 * (1 + 1e-6)
    assert values.var() == pytest.approx(TRUNCATED_STD**2, rel=0.03)
    # Tails: the fraction beyond +-1.9 sigma is the truncated law's, not squeezed to the bound.
    beyond = np.mean(np.abs(values) > 1.9)
    expected = 2 * stats.truncnorm(-2.0, 2.0).sf(1.9)
    assert beyond == pytest.approx(expected, rel=0.25)


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("law", ["normal", "uniform", "truncated_normal"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_tensorflow_fast_path_equals_generic_path(law, dtype):
    # The TensorFlow graph fast path runs the ops of the keras.random path: same values.
    sampler = getattr(_sampling, law)
    for make_seed in (lambda: 9, lambda: keras.random.SeedGenerator(9)):
        def draw(shape, dtype):
            return sampler(shape, 0.5, dtype, make_seed())

        fast = values_of(draw, (50, 40), dtype)
        with mock.patch.object(backend.current(), "fast_dense_draw", lambda *a, **k: None):
            generic = values_of(draw, (50, 40), dtype)
        if dtype == "float64":
            # Keras casts a Python minval/maxval through float32 (`tf.cast(-C, "float64")`),
            # so its float64 bound differs from the exact erf(sqrt 2) by ~1e-8.
            np.testing.assert_allclose(fast, generic, rtol=1e-6, atol=1e-9)
        else:
            np.testing.assert_array_equal(fast, generic)


# ----------------------------------------------------------------------------------------------
# Sparse structure.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, connections",
    [
        ((50, 30), 1),
        ((50, 30), 7),
        ((50, 30), 50),
        ((3, 3, 8, 12), 5),
        ((3, 8, 4), 24),
        ((2, 2, 2, 3, 5), 9),
    ],
)
def test_sparse_exact_count_per_unit(shape, connections):
    kernel = values_of(Sparse(connections=connections, seed=4), shape)
    counts = np.count_nonzero(kernel.reshape(-1, shape[-1]), axis=0)
    np.testing.assert_array_equal(counts, connections)


@pytest.mark.parametrize(
    "fan_in, sparsity, expected_k",
    [
        (10, 0.75, 3),  # 2.5 rounds half up
        (10, 0.9, 1),
        (10, 0.99, 1),  # 0.1 -> at least 1
        (10, 0.0, 10),
        (100, 0.9, 10),
        (7, 0.5, 4),  # 3.5 rounds half up
        (9, 0.7, 3),  # 2.7
    ],
)
def test_sparse_k_from_sparsity(fan_in, sparsity, expected_k):
    initializer = Sparse(sparsity=sparsity, seed=2)
    assert initializer.connections_for(fan_in) == expected_k
    kernel = values_of(initializer, (fan_in, 20))
    np.testing.assert_array_equal(np.count_nonzero(kernel, axis=0), expected_k)


def test_sparse_rows_are_uniform_over_inputs():
    fan_in, units, k = 37, 4000, 5
    mask = values_of(Sparse(connections=k, seed=12), (fan_in, units)) != 0
    result = stats.chisquare(mask.sum(axis=1))
    assert result.pvalue > KS_P_MIN, result


@pytest.mark.parametrize("fan_in, k", [(6, 2), (7, 3), (5, 2)])
def test_sparse_row_subsets_are_uniform(fan_in, k):
    # Every k-subset of the rows is equally likely (the Feistel bijection's law).
    units = 6000
    mask = values_of(Sparse(connections=k, seed=13), (fan_in, units)) != 0
    subsets = {subset: i for i, subset in enumerate(itertools.combinations(range(fan_in), k))}
    codes = [subsets[tuple(np.flatnonzero(column))] for column in mask.T]
    result = stats.chisquare(np.bincount(codes, minlength=len(subsets)))
    assert result.pvalue > KS_P_MIN, result


def test_sparse_feistel_rows_are_uniform_over_inputs():
    fan_in, units, k = 300, 2000, 30  # fan_in > 256: the Feistel path (sides 20 x 15)
    mask = values_of(Sparse(connections=k, seed=14), (fan_in, units)) != 0
    result = stats.chisquare(mask.sum(axis=1))
    assert result.pvalue > KS_P_MIN, result


def unordered_pair_probabilities(labels: np.ndarray) -> np.ndarray:
    """P(the labels of two distinct uniform rows are {i, j}), i <= j, flattened."""
    counts = np.bincount(labels).astype(np.float64)
    rows = counts.sum()
    ordered = (np.outer(counts, counts) - np.diag(counts)) / (rows * (rows - 1))
    unordered = np.triu(ordered + ordered.T) - np.diag(np.diag(ordered))
    return unordered[np.triu_indices(len(counts))]


@pytest.mark.parametrize(
    "fan_in, label",
    [(300, lambda rows: rows % 15), (300, lambda rows: rows // 15), (1001, lambda rows: rows % 28)],
)
def test_sparse_feistel_pairs_follow_uniform_law(fan_in, label):
    # Pairs of rows binned by the Feistel halves (x = left * b + right): a network that mixes
    # too little leaves its structure in these bins.
    units = 6000
    mask = values_of(Sparse(connections=2, seed=15), (fan_in, units)) != 0
    rows = np.sort(np.nonzero(mask.T)[1].reshape(units, 2), axis=1)
    first, second = label(rows[:, 0]), label(rows[:, 1])
    bins = int(label(np.arange(fan_in)).max()) + 1
    low, high = np.minimum(first, second), np.maximum(first, second)
    observed = np.zeros((bins, bins))
    np.add.at(observed, (low, high), 1)
    observed = observed[np.triu_indices(bins)]
    expected = unordered_pair_probabilities(label(np.arange(fan_in))) * units
    result = stats.chisquare(observed, expected)
    assert result.pvalue > KS_P_MIN, result


def test_sparse_units_differ():
    mask = values_of(Sparse(connections=4, seed=1), (200, 50)) != 0
    distinct_columns = {tuple(np.flatnonzero(column)) for column in mask.T}
    assert len(distinct_columns) == 50


@given(fan_in=st.integers(1, 200_000))
@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
def test_feistel_sides(fan_in):
    side_a, side_b = _sampling.feistel_sides(fan_in)
    assert side_a * side_b >= fan_in
    assert side_a * side_b - fan_in < side_a
    assert side_b <= side_a <= 2 * side_b


def test_sparse_float16_keeps_exact_count():
    # With std 1e-6 many float16 values are subnormal and some round to 0: those are rounded
    # away from 0 to the smallest subnormal instead, so the count holds and the law barely moves.
    std = 1e-6
    kernel = values_of(Sparse(connections=20, std=std, seed=3), (40, 300), "float16")
    np.testing.assert_array_equal(np.count_nonzero(kernel, axis=0), 20)
    assert np.abs(kernel).max() < 10 * std
    assert np.abs(kernel[kernel != 0]).min() >= 2.0**-24


# ----------------------------------------------------------------------------------------------
# Dirac.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer_class, kernel_size, input_shape",
    [
        (keras.layers.Conv1D, 3, (2, 11, 4)),
        (keras.layers.Conv1D, 4, (2, 11, 4)),
        (keras.layers.Conv2D, (3, 3), (2, 7, 8, 3)),
        (keras.layers.Conv2D, (2, 4), (2, 7, 8, 3)),
        (keras.layers.Conv2D, (5, 2), (2, 7, 8, 3)),
        (keras.layers.Conv3D, (3, 3, 3), (1, 5, 6, 4, 2)),
        (keras.layers.Conv3D, (2, 3, 4), (1, 5, 6, 4, 2)),
    ],
)
def test_dirac_is_identity_through_same_convolution(layer_class, kernel_size, input_shape):
    gain_value = 1.7
    channels = input_shape[-1]
    layer = layer_class(
        channels,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_initializer=Dirac(gain=gain_value),
        dtype=WIDEST_DTYPE,
    )
    inputs = np.random.default_rng(0).normal(size=input_shape).astype(WIDEST_DTYPE)
    outputs = to_numpy(layer(inputs))
    tolerance = 1e-12 if WIDEST_DTYPE == "float64" else 1e-6
    np.testing.assert_allclose(outputs, gain_value * inputs, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (1, 6)])
def test_dirac_rectangular_2d(shape):
    kernel = values_of(Dirac(gain=-2.0), shape)
    np.testing.assert_array_equal(kernel, -2.0 * np.eye(*shape))


def test_dirac_dense_identity():
    layer = keras.layers.Dense(6, use_bias=False, kernel_initializer=Dirac(0.5))
    inputs = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    np.testing.assert_allclose(to_numpy(layer(inputs)), 0.5 * inputs, rtol=1e-6)


def expected_dirac(shape, gain_value):
    kernel = np.zeros(shape)
    taps = tuple((size - 1) // 2 for size in shape[:-2])
    for channel in range(min(shape[-2], shape[-1])):
        kernel[taps + (channel, channel)] = gain_value
    return kernel




@given(
    shape=st.sampled_from(PROPERTY_SHAPES),
    gain_value=st.floats(-3, 3, allow_nan=False, allow_subnormal=False, width=32),  # no float32 subnormals: XLA flushes them to 0
)
@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
def test_dirac_structure_property(shape, gain_value):
    kernel = values_of(Dirac(gain_value), shape, WIDEST_DTYPE)
    expected = expected_dirac(shape, gain_value).astype(WIDEST_DTYPE).astype(np.float64)
    np.testing.assert_array_equal(kernel, expected)


# ----------------------------------------------------------------------------------------------
# Properties over ranks 2-5, dtypes and parameters.
# ----------------------------------------------------------------------------------------------

shapes_rank_2_to_5 = st.sampled_from(PROPERTY_SHAPES)


@given(
    shape=shapes_rank_2_to_5,
    dtype=st.sampled_from(FLOAT_DTYPES),
    distribution=st.sampled_from(["truncated_normal", "untruncated_normal", "uniform"]),
    which=st.sampled_from(["He", "Xavier", "ScaledRandom"]),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
def test_dense_random_property(shape, dtype, distribution, which, seed):
    initializer = {
        "He": lambda: He("tanh", distribution=distribution, seed=seed),
        "Xavier": lambda: Xavier("relu", distribution=distribution, seed=seed),
        "ScaledRandom": lambda: ScaledRandom(0.1, distribution=distribution, seed=seed),
    }[which]()
    tensor = initializer(shape, dtype)
    assert tuple(tensor.shape) == shape
    assert keras.backend.standardize_dtype(tensor.dtype) == dtype
    values = values_of(initializer, shape, dtype)
    assert np.all(np.isfinite(values))


@given(
    shape=shapes_rank_2_to_5,
    dtype=st.sampled_from(FLOAT_DTYPES),
    use_sparsity=st.booleans(),
    fraction=st.sampled_from([0.0, 0.3, 0.75, 0.99]),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
def test_sparse_property(shape, dtype, use_sparsity, fraction, seed):
    fan_in = math.prod(shape[:-1])
    if use_sparsity:
        initializer = Sparse(sparsity=fraction, seed=seed)
        expected = max(1, math.floor((1 - fraction) * fan_in + 0.5))
    else:
        expected = 1 + int(fraction * fan_in)
        initializer = Sparse(connections=expected, seed=seed)
    tensor = initializer(shape, dtype)
    assert tuple(tensor.shape) == shape
    assert keras.backend.standardize_dtype(tensor.dtype) == dtype
    kernel = values_of(initializer, shape, dtype).reshape(-1, shape[-1])
    np.testing.assert_array_equal(np.count_nonzero(kernel, axis=0), expected)


# ----------------------------------------------------------------------------------------------
# Dtypes, empty shapes, tf.function, seeds.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EVERY_INITIALIZER))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_float_dtypes(name, dtype):
    tensor = EVERY_INITIALIZER[name]()((4, 3, 6, 5), dtype=dtype)
    assert keras.backend.standardize_dtype(tensor.dtype) == dtype
    assert tuple(tensor.shape) == (4, 3, 6, 5)


@pytest.mark.parametrize("name", sorted(EVERY_INITIALIZER))
def test_default_dtype_is_floatx(name):
    tensor = EVERY_INITIALIZER[name]()((3, 3))
    assert keras.backend.standardize_dtype(tensor.dtype) == keras.config.floatx()


@pytest.mark.parametrize("name", sorted(EVERY_INITIALIZER))
@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_non_float_dtype_raises(name, dtype):
    with pytest.raises(ValueError, match=rf"dtype.*Received: dtype='{dtype}'"):
        EVERY_INITIALIZER[name]()((3, 3), dtype=dtype)


@pytest.mark.parametrize("name", sorted(EVERY_INITIALIZER))
@pytest.mark.parametrize("shape", [(0, 5), (4, 0), (3, 3, 0, 4), (2, 0, 3)])
def test_zero_size_shape_gives_empty_tensor(name, shape):
    tensor = EVERY_INITIALIZER[name]()(shape)
    assert tuple(tensor.shape) == shape


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("name", sorted(EVERY_INITIALIZER))
def test_inside_tf_function(name):
    import tensorflow as tf

    initializer = EVERY_INITIALIZER[name]()
    traced = tf.function(lambda: initializer((4, 3, 6, 5)))
    inside = traced()
    assert tuple(inside.shape) == (4, 3, 6, 5)
    # With an int seed the graph draws exactly what eager mode draws.
    eager = values_of(initializer, (4, 3, 6, 5))
    np.testing.assert_allclose(inside.numpy(), eager, rtol=1e-6, atol=1e-7)


@pytest.mark.backends("tensorflow")
def test_sparse_and_truncated_normal_trace_with_static_shape():
    import tensorflow as tf

    shapes = []

    @tf.function
    def traced():
        for initializer in (He(seed=1), Sparse(connections=2, seed=1)):
            tensor = initializer((5, 7))
            shapes.append(tuple(tensor.shape))
        return tensor

    traced()
    assert shapes == [(5, 7), (5, 7)]


@pytest.mark.backends("jax")
@pytest.mark.parametrize("name", sorted(EVERY_INITIALIZER))
def test_inside_jax_jit(name):
    import jax

    initializer = EVERY_INITIALIZER[name]()
    inside = jax.jit(lambda: initializer((4, 3, 6, 5)))()
    assert tuple(inside.shape) == (4, 3, 6, 5)
    # With an int seed the compiled function draws exactly what eager mode draws.
    eager = values_of(initializer, (4, 3, 6, 5))
    np.testing.assert_allclose(np.asarray(inside), eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", RANDOM_INITIALIZERS)
def test_int_seed_reproducible_across_calls_and_from_config(name):
    initializer = EVERY_INITIALIZER[name]()
    first = values_of(initializer, (6, 5))
    np.testing.assert_array_equal(values_of(initializer, (6, 5)), first)
    rebuilt = type(initializer).from_config(initializer.get_config())
    np.testing.assert_array_equal(values_of(rebuilt, (6, 5)), first)


@pytest.mark.parametrize("name", RANDOM_INITIALIZERS)
def test_different_int_seeds_differ(name):
    initializer = EVERY_INITIALIZER[name]()
    other = type(initializer).from_config({**initializer.get_config(), "seed": 2})
    assert not np.array_equal(values_of(initializer, (6, 5)), values_of(other, (6, 5)))


@pytest.mark.parametrize("name", RANDOM_INITIALIZERS)
def test_seed_generator_gives_new_values_each_call(name):
    config = {**EVERY_INITIALIZER[name]().get_config(), "seed": keras.random.SeedGenerator(5)}
    initializer = type(EVERY_INITIALIZER[name]()).from_config(config)
    first = values_of(initializer, (6, 5))
    second = values_of(initializer, (6, 5))
    assert not np.array_equal(first, second)
    # Two generators with the same seed give the same sequence.
    twin = type(initializer).from_config({**config, "seed": keras.random.SeedGenerator(5)})
    np.testing.assert_array_equal(values_of(twin, (6, 5)), first)


@pytest.mark.parametrize("name", RANDOM_INITIALIZERS)
def test_seed_none_gives_new_values_every_call(name):
    # Unlike Keras's RandomInitializer (a random int fixed at construction, so one unseeded
    # instance repeats its values), seed=None draws new values on every call; the config
    # stores None.
    config = {**EVERY_INITIALIZER[name]().get_config(), "seed": None}
    initializer = type(EVERY_INITIALIZER[name]()).from_config(config)
    first = values_of(initializer, (6, 5))
    second = values_of(initializer, (6, 5))
    assert not np.array_equal(first, second)
    assert initializer.get_config()["seed"] is None
    assert not np.array_equal(values_of(initializer.clone(), (6, 5)), first)


@pytest.mark.parametrize("name", RANDOM_INITIALIZERS)
def test_one_unseeded_instance_shared_by_layers_gives_independent_kernels(name):
    initializer = EVERY_INITIALIZER[name]().from_config({**EVERY_INITIALIZER[name]().get_config(), "seed": None})
    model = keras.Sequential(
        [keras.Input((16,))] + [keras.layers.Dense(16, kernel_initializer=initializer) for _ in range(3)]
    )
    kernels = [layer.kernel.numpy() for layer in model.layers]
    for index, kernel in enumerate(kernels):
        for other in kernels[index + 1:]:
            assert not np.array_equal(kernel, other)


def test_seed_matches_keras_semantics_for_he_normal():
    # Same law and seed handling as keras.initializers.HeNormal: an int seed is one stateless
    # stream; HeNormal(seed=s) is reproducible and so is He(seed=s).
    ours = He(seed=123)
    keras_own = keras.initializers.HeNormal(seed=123)
    np.testing.assert_array_equal(values_of(ours, (5, 5)), values_of(ours, (5, 5)))
    np.testing.assert_array_equal(values_of(keras_own, (5, 5)), values_of(keras_own, (5, 5)))


def test_numpy_integer_seed_accepted():
    numpy_seeded = values_of(He(seed=np.int64(7)), (4, 4))
    np.testing.assert_array_equal(numpy_seeded, values_of(He(seed=7), (4, 4)))
    assert He(seed=np.int64(7)).get_config()["seed"] == 7


@pytest.mark.parametrize("cls", [He, Xavier, Sparse, Dirac, ScaledRandom])
def test_registered_name_gives_a_working_default_instance(cls):
    initializer = keras.initializers.get(f"keras_inits>{cls.__name__}")
    assert type(initializer) is cls
    values = values_of(initializer, (3, 3, 4, 20))
    assert values.shape == (3, 3, 4, 20)
    assert np.all(np.isfinite(values)) and np.any(values != 0)


def test_numpy_scalars_accepted_like_python_numbers():
    scaled = ScaledRandom(scale=np.float32(0.25), seed=np.int64(3))
    np.testing.assert_array_equal(
        values_of(scaled, (4, 4)), values_of(ScaledRandom(scale=0.25, seed=3), (4, 4))
    )
    sparse = Sparse(sparsity=np.float64(0.5), connections=None, std=np.float32(0.5), seed=1)
    assert sparse.get_config()["sparsity"] == 0.5
    leaky = He("leaky_relu", activation_kwargs={"negative_slope": np.float32(0.5)}, seed=2)
    config = leaky.get_config()
    assert type(config["activation_kwargs"]["negative_slope"]) is float
    json.dumps(config)
    assert Sparse(connections=np.int32(4), seed=1).connections_for(10) == 4
    assert Dirac(gain=np.float16(2.0)).get_config() == {"gain": 2.0}


@pytest.mark.parametrize("seed", [-1, 2**63, -(2**63)])
def test_out_of_range_seed_raises(seed):
    with pytest.raises(ValueError, match=rf"`seed`.*2\*\*63.*Received: seed={seed}"):
        He(seed=seed)


def test_large_seed_is_reproducible_and_config_keeps_it():
    # Above 2**32 (where JAX's uint32 seeds end) the seed is folded to 32 bits.
    first = He(seed=2**40)
    assert first.get_config()["seed"] == 2**40
    again = He.from_config(first.get_config())
    np.testing.assert_array_equal(values_of(first, (5, 4)), values_of(again, (5, 4)))
    assert not np.array_equal(values_of(first, (5, 4)), values_of(He(seed=2**40 + 1), (5, 4)))
    top = values_of(He(seed=2**63 - 1), (5, 4))
    assert np.all(np.isfinite(top))


@pytest.mark.backends("jax")
@pytest.mark.parametrize("name", sorted(EVERY_INITIALIZER))
def test_float64_without_x64_is_a_clear_error_on_jax(name):
    import jax

    initializer = EVERY_INITIALIZER[name]()
    with jax.enable_x64(False):
        assert not backend.current().float64_available()
        with pytest.raises(ValueError, match=r"JAX_ENABLE_X64=1.*Received: dtype='float64'"):
            initializer((3, 4), "float64")
    with jax.enable_x64(True):
        assert backend.current().float64_available()
        tensor = initializer((3, 4), "float64")
        assert keras.backend.standardize_dtype(tensor.dtype) == "float64"


@pytest.mark.backends("tensorflow", "torch")
def test_float64_available():
    assert backend.current().float64_available()


# ----------------------------------------------------------------------------------------------
# Bad input: each names the argument and the value.
# ----------------------------------------------------------------------------------------------


def test_he_unknown_activation():
    with pytest.raises(ValueError, match=r"activation.*nope"):
        He(activation="nope")


def test_he_bad_mode():
    with pytest.raises(ValueError, match=r"`mode`.*Received: mode='fan_sideways'"):
        He(mode="fan_sideways")


def test_he_bad_distribution():
    with pytest.raises(ValueError, match=r"`distribution`.*Received: distribution='cauchy'"):
        He(distribution="cauchy")


def test_he_non_elementwise_activation():
    with pytest.raises(ValueError, match=r"activation.*softmax"):
        He(activation="softmax")


def test_xavier_unknown_activation_kwarg():
    with pytest.raises(TypeError, match=r"activation_kwargs.*bogus"):
        Xavier(activation_kwargs={"bogus": 1})


def test_activation_kwargs_not_a_dict():
    with pytest.raises(TypeError, match=r"activation_kwargs.*Received: activation_kwargs=3"):
        He(activation_kwargs=3)


def test_sparse_default_is_15_connections_capped_at_fan_in():
    wide = values_of(Sparse(seed=1), (40, 6))
    assert np.all(np.count_nonzero(wide, axis=0) == 15)
    narrow = values_of(Sparse(seed=1), (9, 6))
    assert np.all(np.count_nonzero(narrow, axis=0) == 9)


def test_sparse_sparsity_one():
    with pytest.raises(ValueError, match=r"`sparsity`.*Received: sparsity=1.0"):
        Sparse(sparsity=1.0)


def test_sparse_negative_sparsity():
    with pytest.raises(ValueError, match=r"`sparsity`.*Received: sparsity=-0.1"):
        Sparse(sparsity=-0.1)


def test_sparse_both_arguments():
    with pytest.raises(ValueError, match=r"Received: sparsity=0.5, connections=3"):
        Sparse(sparsity=0.5, connections=3)


def test_sparse_zero_connections():
    with pytest.raises(ValueError, match=r"`connections`.*Received: connections=0"):
        Sparse(connections=0)


def test_sparse_more_connections_than_fan_in():
    initializer = Sparse(connections=10)
    with pytest.raises(ValueError, match=r"`connections`.*fan_in.* = 5.*Received: connections=10"):
        initializer((5, 4))


def test_sparse_negative_std():
    with pytest.raises(ValueError, match=r"`std`.*Received: std=-1"):
        Sparse(connections=2, std=-1)


def test_sparse_rank_one_shape():
    with pytest.raises(ValueError, match=r"rank >= 2.*Received: shape=\(7,\)"):
        Sparse(connections=1)((7,))


def test_scaled_random_zero_scale():
    with pytest.raises(ValueError, match=r"`scale`.*Received: scale=0"):
        ScaledRandom(scale=0)


def test_scaled_random_nan_scale():
    with pytest.raises(ValueError, match=r"`scale`.*Received: scale=nan"):
        ScaledRandom(scale=float("nan"))


def test_dirac_rank_one():
    with pytest.raises(ValueError, match=r"rank.*Received: shape=\(7,\)"):
        Dirac()((7,))


def test_dirac_rank_six():
    with pytest.raises(ValueError, match=r"rank.*Received: shape=\(1, 1, 1, 1, 1, 1\)"):
        Dirac()((1, 1, 1, 1, 1, 1))


def test_dirac_non_finite_gain():
    with pytest.raises(ValueError, match=r"`gain`.*Received: gain=inf"):
        Dirac(gain=float("inf"))


@pytest.mark.parametrize("cls", [He, Xavier, ScaledRandom])
def test_string_seed(cls):
    with pytest.raises(ValueError, match=r"`seed`.*Received: seed='abc'"):
        cls(seed="abc")


def test_sparse_string_seed():
    with pytest.raises(ValueError, match=r"`seed`.*Received: seed='abc'"):
        Sparse(connections=1, seed="abc")


def test_undefined_shape():
    with pytest.raises(ValueError, match=r"`shape`.*Received: shape=\(None, 3\)"):
        He()((None, 3))


# ----------------------------------------------------------------------------------------------
# Names.
# ----------------------------------------------------------------------------------------------


def keras_builtin_initializer_names() -> set[str]:
    from keras.src.initializers import ALL_OBJECTS_DICT

    names = set(ALL_OBJECTS_DICT)
    names |= {name for name in dir(keras.initializers) if not name.startswith("_")}
    return {name.lower() for name in names}


@pytest.mark.parametrize("cls", [He, Xavier, Sparse, Dirac, ScaledRandom])
def test_no_name_clash_with_keras_builtins(cls):
    from keras.src.utils.naming import to_snake_case

    builtin = keras_builtin_initializer_names()
    assert "identity" in builtin and "he_normal" in builtin  # the registry was read
    assert cls.__name__.lower() not in builtin
    assert to_snake_case(cls.__name__) not in builtin
    assert keras.saving.get_registered_name(cls) == f"keras_inits>{cls.__name__}"
