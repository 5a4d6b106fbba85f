"""LooksLinear: mirrored orthogonal kernels make a ReLU network exactly linear at init."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
from scipy import stats

import keras_inits
from keras_inits import LooksLinear, backend

# float32 agreement of a network's output with its float64 effective linear map.
LINEAR_TOLERANCE = 1e-5
# float32 orthogonality of a block: |W0 W0^T - gain^2 I| entrywise.
ORTHOGONALITY_TOLERANCE = 1e-5
KS_P_VALUE = 1e-4
MLP_DEPTH = 20
MLP_INPUT = 6
MLP_WIDTH = 16
MLP_OUTPUT = 4
BATCH = 5


def to_numpy(value) -> np.ndarray:
    return np.asarray(backend.current().to_numpy(value), dtype=np.float64)


def block_of(kernel: np.ndarray, position: str) -> np.ndarray:
    """W0 of a mirrored (in, out) matrix, after checking that the matrix is mirrored exactly."""
    fan_in, fan_out = kernel.shape
    if position == "first":
        block = kernel[:, : fan_out // 2]
        np.testing.assert_array_equal(kernel, np.concatenate([block, -block], axis=1))
    elif position == "last":
        block = kernel[: fan_in // 2]
        np.testing.assert_array_equal(kernel, np.concatenate([block, -block], axis=0))
    else:
        block = kernel[: fan_in // 2, : fan_out // 2]
        top = np.concatenate([block, -block], axis=1)
        np.testing.assert_array_equal(kernel, np.concatenate([top, -top], axis=0))
    return block


def assert_orthogonal(block: np.ndarray, gain: float) -> None:
    rows, columns = block.shape
    gram = block @ block.T if rows <= columns else block.T @ block
    np.testing.assert_allclose(
        gram, gain**2 * np.eye(min(rows, columns)), rtol=0, atol=ORTHOGONALITY_TOLERANCE * gain**2
    )


def positions(depth: int) -> list[str]:
    return ["first"] + ["hidden"] * (depth - 2) + ["last"]


def relu_mlp(depth: int, gain: float, seed: int) -> keras.Model:
    layers = []
    for index, position in enumerate(positions(depth)):
        width = MLP_OUTPUT if position == "last" else MLP_WIDTH
        activation = None if position == "last" else "relu"
        initializer = LooksLinear(position, gain=gain, seed=seed + index)
        layers.append(keras.layers.Dense(width, activation, kernel_initializer=initializer))
    return keras.Sequential([keras.Input((MLP_INPUT,)), *layers])


@pytest.mark.parametrize(
    "position, shape",
    [
        ("first", (6, 8)),
        ("first", (12, 8)),
        ("hidden", (8, 8)),
        ("hidden", (8, 16)),
        ("hidden", (16, 8)),
        ("last", (8, 3)),
        ("last", (8, 6)),
    ],
)
def test_dense_kernel_is_mirrored_orthogonal(position, shape):
    gain = 1.5
    kernel = to_numpy(LooksLinear(position, gain=gain, seed=3)(shape))
    assert kernel.shape == shape
    assert_orthogonal(block_of(kernel, position), gain)


@pytest.mark.parametrize("shape", [(3, 4, 6), (3, 2, 4, 6), (2, 3, 3, 4, 4)])
def test_conv_kernel_is_delta_at_the_same_padding_tap(shape):
    kernel = to_numpy(LooksLinear("hidden", seed=1)(shape))
    centre = tuple((size - 1) // 2 for size in shape[:-2])
    off_centre = kernel.copy()
    off_centre[centre] = 0.0
    assert np.count_nonzero(off_centre) == 0
    assert_orthogonal(block_of(kernel[centre], "hidden"), 1.0)


def test_twenty_layer_relu_mlp_is_its_effective_linear_map():
    model = relu_mlp(MLP_DEPTH, gain=1.0, seed=10)
    inputs = np.random.default_rng(0).normal(size=(BATCH, MLP_INPUT)).astype("float32")
    outputs = to_numpy(model(inputs))
    effective = np.eye(MLP_INPUT)
    for layer, position in zip(model.layers, positions(MLP_DEPTH)):
        effective = effective @ block_of(to_numpy(layer.kernel), position)
    expected = inputs.astype(np.float64) @ effective
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=LINEAR_TOLERANCE)
    # Not a trivial map: the output carries the input's scale.
    assert np.min(np.linalg.norm(expected, axis=1)) > 0.1


def test_hidden_representation_norm_is_gain_to_the_depth():
    gain = 1.25
    depth = 6
    model = relu_mlp(depth, gain=gain, seed=20)
    inputs = np.random.default_rng(1).normal(size=(BATCH, MLP_INPUT)).astype("float32")
    hidden = keras.Model(model.inputs[0], model.layers[-2].output)
    norms = np.linalg.norm(to_numpy(hidden(inputs)), axis=1)
    expected = gain ** (depth - 1) * np.linalg.norm(inputs.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, expected, rtol=LINEAR_TOLERANCE)


def test_relu_cnn_is_its_effective_linear_map_at_every_position():
    channels = 8
    depth = 4
    layers = []
    for index, position in enumerate(positions(depth)):
        filters = 2 if position == "last" else channels
        activation = None if position == "last" else "relu"
        layers.append(
            keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation=activation,
                kernel_initializer=LooksLinear(position, seed=30 + index),
            )
        )
    model = keras.Sequential([keras.Input((5, 5, 3)), *layers])
    inputs = np.random.default_rng(2).normal(size=(2, 5, 5, 3)).astype("float32")
    outputs = to_numpy(model(inputs))
    effective = np.eye(3)
    for layer, position in zip(model.layers, positions(depth)):
        effective = effective @ block_of(to_numpy(layer.kernel)[1, 1], position)
    expected = inputs.astype(np.float64) @ effective
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=LINEAR_TOLERANCE)


def test_block_entries_follow_the_haar_law():
    size = 64
    kernel = to_numpy(LooksLinear("hidden", seed=5)((2 * size, 2 * size)))
    entries = block_of(kernel, "hidden").ravel() * np.sqrt(size)
    assert stats.kstest(entries, "norm").pvalue > KS_P_VALUE


def test_determinant_signs_are_mixed_over_draws():
    initializer = LooksLinear("hidden", seed=keras.random.SeedGenerator(7))
    signs = {
        np.sign(np.linalg.det(block_of(to_numpy(initializer((8, 8))), "hidden")))
        for _ in range(16)
    }
    assert signs == {-1.0, 1.0}


def test_low_precision_dtypes_are_cast_from_a_float32_factorization():
    for dtype in ("float16", "bfloat16"):
        kernel = LooksLinear("hidden", seed=4)((8, 8), dtype=dtype)
        assert keras.backend.standardize_dtype(kernel.dtype) == dtype
        reference = to_numpy(LooksLinear("hidden", seed=4)((8, 8)))
        np.testing.assert_allclose(to_numpy(kernel), reference, atol=1e-2)


def test_seeds():
    first = to_numpy(LooksLinear(seed=11)((8, 8)))
    np.testing.assert_array_equal(first, to_numpy(LooksLinear(seed=11)((8, 8))))
    assert not np.array_equal(first, to_numpy(LooksLinear(seed=12)((8, 8))))
    unseeded = LooksLinear()
    assert not np.array_equal(to_numpy(unseeded((8, 8))), to_numpy(unseeded((8, 8))))
    generator = LooksLinear(seed=keras.random.SeedGenerator(3))
    assert not np.array_equal(to_numpy(generator((8, 8))), to_numpy(generator((8, 8))))


@pytest.mark.parametrize(
    "position, shape",
    [
        ("first", (4, 7)),
        ("hidden", (7, 8)),
        ("hidden", (8, 7)),
        ("last", (7, 2)),
        ("hidden", (3, 3, 5, 8)),
    ],
)
def test_odd_mirrored_width_is_refused_naming_the_shape(position, shape):
    with pytest.raises(ValueError, match="even .*" + re.escape(f"Received: shape={shape!r}")):
        LooksLinear(position)(shape)


def test_odd_unmirrored_widths_are_accepted():
    assert tuple(LooksLinear("first", seed=0)((5, 4)).shape) == (5, 4)
    assert tuple(LooksLinear("last", seed=0)((4, 5)).shape) == (4, 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"position": "middle"}, "Received: position='middle'"),
        ({"gain": 0.0}, "Received: gain=0.0"),
        ({"gain": -1.0}, "Received: gain=-1.0"),
        ({"gain": "1"}, "Received: gain='1'"),
        ({"gain": float("nan")}, "Received: gain=nan"),
        ({"seed": 1.5}, "Received: seed=1.5"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LooksLinear(**kwargs)


@pytest.mark.parametrize("shape", [(8,), (1, 1, 1, 1, 8, 8)])
def test_bad_rank_is_refused(shape):
    with pytest.raises(ValueError, match=r"rank 2 .*Received: shape="):
        LooksLinear()(shape)


def test_overflowing_gain_is_refused():
    with pytest.raises(ValueError, match="Received: gain=100000.0, dtype='float16'"):
        LooksLinear(gain=1e5)((8, 8), dtype="float16")


def test_config_round_trip():
    initializer = LooksLinear("last", gain=0.5, seed=9)
    config = initializer.get_config()
    assert config == {"position": "last", "gain": 0.5, "seed": 9}
    rebuilt = LooksLinear.from_config(json.loads(json.dumps(config)))
    np.testing.assert_array_equal(to_numpy(rebuilt((8, 3))), to_numpy(initializer((8, 3))))
    serialized = keras.saving.serialize_keras_object(initializer)
    assert serialized["registered_name"] == "keras_inits>LooksLinear"
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


def test_config_refuses_a_seed_that_is_not_a_seed_generator():
    config = {"position": "hidden", "gain": 1.0, "seed": {"class_name": "Dense", "config": {}}}
    with pytest.raises(ValueError, match="Argument `seed` in a config"):
        LooksLinear.from_config(config)


def test_registered_name_builds_the_default():
    initializer = keras.initializers.get("keras_inits>LooksLinear")
    assert isinstance(initializer, LooksLinear)
    layer = keras.layers.Dense(4, kernel_initializer="keras_inits>LooksLinear")
    layer.build((None, 4))
    block_of(to_numpy(layer.kernel), "hidden")


def test_keras_file_reloads_with_identical_kernels(tmp_path):
    model = relu_mlp(3, gain=1.0, seed=40)
    path = tmp_path / "looks_linear.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for layer, original in zip(reloaded.layers, model.layers):
        assert isinstance(layer.kernel_initializer, keras_inits.LooksLinear)
        assert layer.kernel_initializer.get_config() == original.kernel_initializer.get_config()
        np.testing.assert_array_equal(to_numpy(layer.kernel), to_numpy(original.kernel))
    clone = keras.models.clone_model(model)
    for layer, original in zip(clone.layers, model.layers):
        np.testing.assert_array_equal(to_numpy(layer.kernel), to_numpy(original.kernel))
