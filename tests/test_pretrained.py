"""Pretrained: exact values from every file kind, save and reload, the checksum, mismatch policies, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_inits
from keras_inits import He, Pretrained, backend

SOURCE_SHAPE = (4, 3)
CONV_SHAPE = (3, 3, 2, 4)
RELOAD_TIMEOUT_SECONDS = 300


def values(tensor) -> np.ndarray:
    return backend.current().to_numpy(tensor)


def dense(initializer, units: int = SOURCE_SHAPE[1], inputs: int = SOURCE_SHAPE[0], **kwargs) -> keras.Model:
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(units, kernel_initializer=initializer, name="target", **kwargs)]
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, pathlib.Path]:
    """One source of every kind; the h5 and .keras files come from a model with a nested model."""
    folder = tmp_path_factory.mktemp("pretrained")
    array = np.random.default_rng(0).normal(size=SOURCE_SHAPE).astype("float32")
    np.save(folder / "kernel.npy", array)
    np.savez(folder / "arrays.npz", kernel=array, other=np.zeros(2))
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="inner")
    source = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, name="other"), keras.layers.Dense(3, name="src"), inner]
    )
    source.get_layer("src").kernel.assign(np.random.default_rng(1).normal(size=(5, 3)).astype("float32"))
    source.save_weights(folder / "model.weights.h5")
    source.save(folder / "model.keras")
    paths = {kind: folder / file for kind, file in (
        ("npy", "kernel.npy"), ("npz", "arrays.npz"), ("h5", "model.weights.h5"), ("keras", "model.keras"))}
    paths["folder"] = folder
    return paths


@pytest.fixture(scope="module")
def source_model(files) -> keras.Model:
    return keras.models.load_model(files["keras"])


@pytest.mark.parametrize(
    "kind, name, owners, variable",
    [
        ("h5", "src/kernel", ("src",), "kernel"),
        ("h5", "src/1", ("src",), "bias"),
        ("keras", "src/kernel", ("src",), "kernel"),
        ("keras", "inner/d/kernel", ("inner", "d"), "kernel"),
        ("keras", "layers/dense_1/vars/0", ("src",), "kernel"),
    ],
)
def test_values_equal_the_saved_model(files, source_model, kind, name, owners, variable):
    layer = source_model
    for owner in owners:
        layer = layer.get_layer(owner)
    expected = values(getattr(layer, variable))
    if expected.ndim == 1:
        np.testing.assert_array_equal(values(Pretrained(files[kind], name)(expected.shape)), expected)
        return
    model = dense(Pretrained(files[kind], name), units=expected.shape[1], inputs=expected.shape[0])
    np.testing.assert_array_equal(values(model.get_layer("target").kernel), expected)


@pytest.mark.parametrize("kind, name", [("npy", None), ("npz", "kernel")])
def test_values_equal_the_numpy_file(files, kind, name):
    expected = np.load(files["npy"])
    model = dense(Pretrained(files[kind], name))
    np.testing.assert_array_equal(values(model.get_layer("target").kernel), expected)


def test_dtype_is_the_layers(files):
    model = dense(Pretrained(files["npy"]), dtype="float16")
    kernel = model.get_layer("target").kernel
    assert keras.backend.standardize_dtype(kernel.dtype) == "float16"
    np.testing.assert_array_equal(values(kernel), np.load(files["npy"]).astype("float16"))


def test_config_holds_the_reference_not_the_array(files):
    initializer = Pretrained(files["npz"], "kernel")
    config = initializer.get_config()
    assert set(config) == {"source", "name", "sha256", "on_mismatch", "fallback"}
    assert config["sha256"] == hashlib.sha256(files["npz"].read_bytes()).hexdigest()
    assert len(json.dumps(config)) < 1000
    assert Pretrained.from_config(json.loads(json.dumps(config))).get_config() == config


def test_saved_model_reloads_in_another_process(files, tmp_path):
    model = dense(Pretrained(files["npy"]))
    model.save(tmp_path / "user.keras")
    out = tmp_path / "reloaded.npy"
    script = (
        "import sys, numpy as np, keras, keras_inits\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "np.save(sys.argv[2], keras_inits.backend.current().to_numpy(model.get_layer('target').kernel))\n"
    )
    package_root = str(pathlib.Path(keras_inits.__file__).resolve().parents[1])
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "PYTHONPATH": package_root}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "user.keras"), str(out)],
                   env=env, check=True, timeout=RELOAD_TIMEOUT_SECONDS, capture_output=True)
    np.testing.assert_array_equal(np.load(out), np.load(files["npy"]))


def test_changed_file_fails_the_reload_with_the_checksum(tmp_path):
    source = tmp_path / "kernel.npy"
    np.save(source, np.ones(SOURCE_SHAPE, "float32"))
    dense(Pretrained(source)).save(tmp_path / "user.keras")
    np.save(source, np.full(SOURCE_SHAPE, 2.0, "float32"))
    with pytest.raises((TypeError, ValueError), match="checksum .* differs") as raised:
        keras.models.load_model(tmp_path / "user.keras")
    assert "Expected: sha256=" in str(raised.value) and "Actual: sha256=" in str(raised.value)


def test_changed_file_fails_the_call(tmp_path):
    source = tmp_path / "kernel.npy"
    np.save(source, np.ones(SOURCE_SHAPE, "float32"))
    initializer = Pretrained(source)
    np.save(source, np.zeros(SOURCE_SHAPE, "float32"))
    with pytest.raises(ValueError, match="checksum .* differs"):
        initializer(SOURCE_SHAPE)


@pytest.mark.parametrize("source_shape, shape", [((6, 5), SOURCE_SHAPE), ((3, 3, 4, 6), CONV_SHAPE)])
def test_slice_takes_the_leading_block(tmp_path, source_shape, shape):
    array = np.random.default_rng(2).normal(size=source_shape).astype("float32")
    np.save(tmp_path / "big.npy", array)
    with pytest.raises(ValueError, match="on_mismatch='error'"):
        Pretrained(tmp_path / "big.npy")(shape)
    sliced = values(Pretrained(tmp_path / "big.npy", on_mismatch="slice")(shape))
    np.testing.assert_array_equal(sliced, array[tuple(slice(0, n) for n in shape)])


@pytest.mark.parametrize("source_shape, shape", [((2, 5), SOURCE_SHAPE), ((3, 3, 1, 6), CONV_SHAPE)])
def test_pad_copies_the_overlap_and_draws_the_rest(tmp_path, source_shape, shape):
    array = np.random.default_rng(3).normal(size=source_shape).astype("float32")
    np.save(tmp_path / "small.npy", array)
    with pytest.raises(ValueError, match='on_mismatch="pad"'):
        Pretrained(tmp_path / "small.npy", on_mismatch="slice")(shape)
    padded = values(Pretrained(tmp_path / "small.npy", on_mismatch="pad", fallback=He(seed=5))(shape))
    drawn = values(He(seed=5)(shape))
    overlap = tuple(slice(0, min(a, b)) for a, b in zip(source_shape, shape))
    expected = drawn.copy()
    expected[overlap] = array[overlap]
    np.testing.assert_array_equal(padded, expected)
    assert np.count_nonzero(padded != drawn) > 0


def test_pad_fallback_survives_the_config(tmp_path):
    np.save(tmp_path / "small.npy", np.ones((2, 2), "float32"))
    config = Pretrained(tmp_path / "small.npy", on_mismatch="pad", fallback="zeros").get_config()
    rebuilt = Pretrained.from_config(json.loads(json.dumps(config)))
    expected = np.zeros(SOURCE_SHAPE, "float32")
    expected[:2, :2] = 1.0
    np.testing.assert_array_equal(values(rebuilt(SOURCE_SHAPE)), expected)


def test_rank_mismatch_fails_under_every_policy(tmp_path):
    np.save(tmp_path / "vector.npy", np.ones(3, "float32"))
    for policy in ("error", "slice", "pad"):
        with pytest.raises(ValueError, match="ranks differ"):
            Pretrained(tmp_path / "vector.npy", on_mismatch=policy)(SOURCE_SHAPE)


def test_bad_input_fails_at_construction(files, tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "objects.npz", kernel=np.array([None, 1], dtype=object))
    (tmp_path / "kernel.txt").write_text("1 2 3")
    (tmp_path / "broken.keras").write_bytes(b"not a zip archive")
    cases = [
        (ValueError, "names no existing file. Received: source=", dict(source=tmp_path / "none.npy")),
        (ValueError, "is a directory.*Received: source=", dict(source=files["folder"])),
        (ValueError, "without pickle.*Received: source=", dict(source=tmp_path / "objects.npy")),
        (ValueError, "without pickle.*Received: source=", dict(source=tmp_path / "objects.npz", name="kernel")),
        (ValueError, "could not be read as a keras file.*Received: source=", dict(source=tmp_path / "broken.keras")),
        (ValueError, "must end in one of.*Received: source=", dict(source=tmp_path / "kernel.txt")),
        (TypeError, "Received: source=3", dict(source=3)),
        (ValueError, "names no weight.*Received: name='missing'", dict(source=files["npz"], name="missing")),
        (TypeError, "Received: name=None", dict(source=files["npz"])),
        (ValueError, "names no weight.*Received: name='src/gamma'", dict(source=files["keras"], name="src/gamma")),
        (ValueError, "names no weight.*Received: name='src'", dict(source=files["h5"], name="src")),
        (ValueError, "names no weight.*Received: name='src/7'", dict(source=files["h5"], name="src/7")),
        (ValueError, "must be None. Received: name='kernel'", dict(source=files["npy"], name="kernel")),
        (ValueError, "Received: on_mismatch='crop'", dict(source=files["npy"], on_mismatch="crop")),
        (ValueError, "Received: sha256='abc'", dict(source=files["npy"], sha256="abc")),
        (ValueError, "checksum .* differs", dict(source=files["npy"], sha256="0" * 64)),
        (TypeError, "Received: fallback=3", dict(source=files["npy"], fallback=3)),
    ]
    for error, message, arguments in cases:
        with pytest.raises(error, match=message):
            Pretrained(**arguments)


def test_config_fallback_from_another_module_is_refused(files):
    config = Pretrained(files["npy"]).get_config()
    config["fallback"] = {"module": "os", "class_name": "system", "config": {}, "registered_name": None}
    with pytest.raises(ValueError, match="Nothing was built. Received: fallback="):
        Pretrained.from_config(config)


def test_bfloat16_weights_of_a_saved_model(tmp_path):
    source = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d", dtype="bfloat16")])
    source.save(tmp_path / "bf16.keras")
    expected = values(keras.ops.cast(source.get_layer("d").kernel, "float32"))
    np.testing.assert_array_equal(values(Pretrained(tmp_path / "bf16.keras", "d/kernel")((4, 3))), expected)


def test_json_and_clone_rebuild_the_same_values(files):
    model = dense(Pretrained(files["npz"], "kernel"))
    expected = np.load(files["npy"])
    rebuilt = keras.models.model_from_json(model.to_json())
    cloned = keras.models.clone_model(model)
    for copy in (rebuilt, cloned):
        np.testing.assert_array_equal(values(copy.get_layer("target").kernel), expected)
