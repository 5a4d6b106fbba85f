"""transfer: the per-weight table on a model with a new head, the two matching rules, the policies, bad input."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from keras_inits import backend, transfer

IMAGE_SHAPE = (6, 6, 1)
HIDDEN_UNITS = 5


def values(variable) -> np.ndarray:
    return backend.current().to_numpy(variable)


def cnn(head_units: int, head_name: str = "head", filters: int = 3, prefix: str = "") -> keras.Model:
    inner = keras.Sequential(
        [keras.Input((filters * 16,)), keras.layers.Dense(HIDDEN_UNITS, name=f"{prefix}hidden")],
        name=f"{prefix}inner",
    )
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            keras.layers.Conv2D(filters, 3, name=f"{prefix}conv"),
            keras.layers.Flatten(name=f"{prefix}flatten"),
            inner,
            keras.layers.Dense(head_units, name=head_name),
        ]
    )


def snapshot(model: keras.Model) -> dict[str, np.ndarray]:
    return {variable.path: values(variable) for variable in model.weights}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    model = cnn(3)
    model.save(folder / "base.keras")
    model.save_weights(folder / "base.weights.h5")
    return model, folder


def test_new_head_table(base):
    source, folder = base
    model = cnn(7, head_name="new_head")
    head_before = values(model.get_layer("new_head").kernel)
    report = transfer(model, folder / "base.keras")
    assert {path: entry.status for path, entry in report.items()} == {
        "conv/kernel": "copied",
        "conv/bias": "copied",
        "inner/hidden/kernel": "copied",
        "inner/hidden/bias": "copied",
        "new_head/kernel": "missing",
        "new_head/bias": "missing",
    }
    assert {entry.rule for path, entry in report.items() if entry.status == "copied"} == {"path"}
    assert report["inner/hidden/kernel"].source == "inner/hidden/kernel"
    assert report.counts() == {"copied": 4, "sliced": 0, "padded": 0, "skipped (shape)": 0, "missing": 2}
    assert report.unused == ("head",)
    np.testing.assert_array_equal(values(model.get_layer("conv").kernel), values(source.get_layer("conv").kernel))
    hidden = model.get_layer("inner").get_layer("hidden").kernel
    np.testing.assert_array_equal(values(hidden), values(source.get_layer("inner").get_layer("hidden").kernel))
    np.testing.assert_array_equal(values(model.get_layer("new_head").kernel), head_before)
    table = str(report).splitlines()
    assert table[0].split() == ["weight", "status", "rule", "source", "shape", "source", "shape"]
    assert table[2].split() == ["conv/kernel", "copied", "path", "conv/kernel", "3x3x1x3", "3x3x1x3"]
    assert table[-4].split() == ["new_head/kernel", "missing", "-", "-", "5x7", "-"]
    assert table[-2] == "4 copied, 0 sliced, 0 padded, 0 skipped (shape), 2 missing"


@pytest.mark.parametrize("kind", ["weights.h5", "model"])
def test_order_rule_when_names_differ(base, kind):
    source, folder = base
    model = cnn(3, head_name="renamed_head", prefix="x_")
    report = transfer(model, source if kind == "model" else folder / "base.weights.h5", report=False)
    assert all(entry.status == "copied" and entry.rule == "order" for entry in report.values())
    assert report["x_conv/kernel"].source == "conv/kernel"
    expected = [values(variable) for variable in source.weights]
    for variable, array in zip(model.weights, expected):
        np.testing.assert_array_equal(values(variable), array)


def test_policies_on_a_wider_and_a_narrower_head(base):
    source, folder = base
    source_head = values(source.get_layer("head").kernel)
    narrow = cnn(2)
    narrow_before = values(narrow.get_layer("head").kernel)
    skipped = transfer(narrow, folder / "base.keras", report=False)
    assert skipped["head/kernel"].status == "skipped (shape)"
    assert skipped["head/kernel"].source_shape == (HIDDEN_UNITS, 3)
    np.testing.assert_array_equal(values(narrow.get_layer("head").kernel), narrow_before)
    sliced = transfer(narrow, folder / "base.keras", on_mismatch="slice", report=False)
    assert (sliced["head/kernel"].status, sliced["head/bias"].status) == ("sliced", "sliced")
    np.testing.assert_array_equal(values(narrow.get_layer("head").kernel), source_head[:, :2])
    wide = cnn(4)
    wide_before = values(wide.get_layer("head").kernel)
    assert transfer(wide, folder / "base.keras", on_mismatch="slice", report=False)["head/kernel"].status == (
        "skipped (shape)"
    )
    padded = transfer(wide, folder / "base.keras", on_mismatch="pad", report=False)
    assert padded["head/kernel"].status == "padded"
    head = values(wide.get_layer("head").kernel)
    np.testing.assert_array_equal(head[:, :3], source_head)
    np.testing.assert_array_equal(head[:, 3:], wide_before[:, 3:])


def test_policies_on_conv_kernels(base):
    source, folder = base
    source_conv = values(source.get_layer("conv").kernel)
    wider = keras.Sequential([keras.Input(IMAGE_SHAPE), keras.layers.Conv2D(5, 3, name="conv")])
    before = values(wider.get_layer("conv").kernel)
    report = transfer(wider, folder / "base.keras", layers=["conv"], on_mismatch="pad", report=False)
    assert list(report) == ["conv/kernel", "conv/bias"]
    assert report["conv/kernel"].status == "padded"
    kernel = values(wider.get_layer("conv").kernel)
    np.testing.assert_array_equal(kernel[..., :3], source_conv)
    np.testing.assert_array_equal(kernel[..., 3:], before[..., 3:])
    narrower = keras.Sequential([keras.Input(IMAGE_SHAPE), keras.layers.Conv2D(2, 3, name="conv")])
    assert transfer(narrower, source, on_mismatch="slice", report=False)["conv/kernel"].status == "sliced"
    np.testing.assert_array_equal(values(narrower.get_layer("conv").kernel), source_conv[..., :2])


def test_error_policy_assigns_nothing(base):
    _, folder = base
    model = cnn(2)
    before = snapshot(model)
    with pytest.raises(ValueError, match="'head/kernel' has shape .* Received: on_mismatch='error'"):
        transfer(model, folder / "base.keras", on_mismatch="error")
    after = snapshot(model)
    assert all(np.array_equal(before[path], after[path]) for path in before)


def test_layers_selects_a_subtree(base):
    _, folder = base
    model = cnn(3)
    before = values(model.get_layer("conv").kernel)
    report = transfer(model, folder / "base.keras", layers=["inner"], report=False)
    assert list(report) == ["inner/hidden/kernel", "inner/hidden/bias"]
    np.testing.assert_array_equal(values(model.get_layer("conv").kernel), before)


def test_report_logs_the_table(base, caplog):
    _, folder = base
    with caplog.at_level(logging.INFO, logger="keras_inits"):
        transfer(cnn(3), folder / "base.keras")
    logged = [line.split() for line in caplog.text.splitlines()]
    assert ["inner/hidden/kernel", "copied", "path", "inner/hidden/kernel", "48x5", "48x5"] in logged


def test_bad_input(base, tmp_path):
    source, folder = base
    np.save(tmp_path / "array.npy", np.ones(3))
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    model = cnn(3)
    cases = [
        (TypeError, "Received: model=", dict(model="model", source=source)),
        (ValueError, "built model.*Received: model=", dict(model=unbuilt, source=source)),
        (ValueError, "built model.*Received: source=", dict(model=model, source=unbuilt)),
        (ValueError, "names no existing file. Received: source=", dict(model=model, source=tmp_path / "x.keras")),
        (ValueError, "is a directory.*Received: source=", dict(model=model, source=folder)),
        (ValueError, "must be a .keras or .weights.h5 file.*Received: source=",
         dict(model=model, source=tmp_path / "array.npy")),
        (TypeError, "Received: source=3", dict(model=model, source=3)),
        (ValueError, "Received: on_mismatch='crop'", dict(model=model, source=source, on_mismatch="crop")),
        (TypeError, "Received: layers='conv'", dict(model=model, source=source, layers="conv")),
        (ValueError, "'nope', which is not a layer path", dict(model=model, source=source, layers=["nope"])),
        (TypeError, "Received: report=1", dict(model=model, source=source, report=1)),
    ]
    for error, message, arguments in cases:
        with pytest.raises(error, match=message):
            transfer(**arguments)


def recurrent() -> keras.Model:
    inputs = keras.Input((5, 3))
    x = keras.layers.LSTM(4, return_sequences=True, name="lstm")(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(2), name="bi")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def test_recurrent_cells_and_both_directions(tmp_path):
    source = recurrent()
    for variable in source.weights:
        variable.assign(np.random.default_rng(len(variable.path)).normal(size=variable.shape))
    source.save(tmp_path / "recurrent.keras")
    model = recurrent()  # a second build: Keras names the GRU directions forward_gru_1, ...
    report = transfer(model, tmp_path / "recurrent.keras", report=False)
    assert report.counts()["copied"] == len(model.weights) == 15
    assert report["lstm/lstm_cell/kernel"].rule == "path"
    directions = [(path.split("/")[1], entry.source.split("/")[1]) for path, entry in report.items()
                  if path.startswith("bi/")]
    assert len(directions) == 6
    assert all(target.split("_")[0] == source.split("_")[0] for target, source in directions)
    for expected, variable in zip(source.weights, model.weights):
        np.testing.assert_array_equal(values(variable), values(expected))
