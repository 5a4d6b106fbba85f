"""Tests of keras_inits.ActivationStatistics, read back with TensorBoard's event reader.

Every backend: the event files are written and read without TensorFlow
(``tensorboard.backend.event_processing.event_accumulator``, as TensorBoard itself reads).
Only what needs TensorFlow itself (Keras's own TensorBoard callback, tf.data,
MirroredStrategy) is marked for it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.util import tensor_util

import keras_inits
from keras_inits import backend
from keras_inits.stats import ACTIVATION_SCALARS

from _stats_helpers import batch, mlp, scalar_series

LAYOUT_TAG = "custom_scalars__config__"
DIAGNOSIS_TAG = "diagnosis"


def read_run(run_dir):
    """Every tensor summary of a run directory: {tag: [(step, ndarray)]}, by TensorBoard's reader."""
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return {
        tag: [(event.step, tensor_util.make_ndarray(event.tensor_proto))
              for event in accumulator.Tensors(tag)]
        for tag in accumulator.Tags()[event_accumulator.TENSORS]
    }


def read_metadata(run_dir, tag):
    """The SummaryMetadata TensorBoard recorded for ``tag``."""
    accumulator = event_accumulator.EventAccumulator(str(run_dir))
    accumulator.Reload()
    return accumulator.SummaryMetadata(tag)


def weights_of(model):
    """Copies of every weight of a model, read through the backend seam."""
    to_numpy = backend.current().to_numpy
    return [np.array(to_numpy(variable), copy=True) for variable in model.weights]


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0
        self.epochs = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


def compiled_mlp(**kwargs):
    model = mlp(**kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


class TwoDense(keras.Model):
    """A subclassed model: no ``inputs``, no ``layer.output``, built at its first call."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(
            8, activation="tanh", kernel_initializer=keras.initializers.GlorotNormal(seed=1),
            name="hidden")
        self.head = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.GlorotNormal(seed=2), name="head")

    def call(self, inputs):
        return self.head(self.hidden(inputs))


def unbuilt_sequential():
    """A Sequential without ``Input``: built by ``fit`` (on TensorFlow: in its first step)."""
    return keras.Sequential([
        keras.layers.Dense(8, activation="tanh",
                           kernel_initializer=keras.initializers.GlorotNormal(seed=1),
                           name="hidden"),
        keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotNormal(seed=2),
                           name="head"),
    ])


# --------------------------------------------------------------------------------------
# Steps, values and tags, read back from disk
# --------------------------------------------------------------------------------------


def test_steps_values_tags_and_layout(tmp_path):
    model = compiled_mlp()
    x, y = batch(256)
    probe_x = x[:64]
    before_fit = keras_inits.activation_statistics(model, probe_x)
    callback = keras_inits.ActivationStatistics(tmp_path, probe_x, images=True)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    after_first_fit = keras_inits.activation_statistics(model, probe_x)
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[callback], verbose=0)
    callback.close()

    run = read_run(tmp_path / "activations")
    std = scalar_series(run, "activations/std/00_dense_0")
    assert [step for step, _ in std] == [0, 4, 8, 12]  # no duplicate step 8 at the 2nd fit
    assert std[0][1] == pytest.approx(before_fit["dense_0"].std, rel=1e-6)
    assert std[2][1] == pytest.approx(after_first_fit["dense_0"].std, rel=1e-6)
    # Every scalar of the first two layers, std_ratio included (the first layer's divides by
    # the probe batch's std, which the callback computes once a fit).
    for index, layer in enumerate(("dense_0", "dense_1")):
        for name, value in before_fit[layer].scalars().items():
            written = scalar_series(run, f"activations/{name}/{index:02d}_{layer}")[0]
            assert written == (0, pytest.approx(value, rel=1e-6, abs=1e-12)), (layer, name)

    layers = [f"{index:02d}_{layer}" for index, layer in enumerate(("dense_0", "dense_1", "out"))]
    names = [name for name in ACTIVATION_SCALARS if name != "saturation_fraction"]
    names += ["log10_std", "log10_pre_std"]
    expected_tags = {f"activations/{name}/{layer}" for layer in layers for name in names}
    # tanh is bounded, the linear output layer is not: no saturation tag for it.
    expected_tags |= {"activations/saturation_fraction/00_dense_0",
                      "activations/saturation_fraction/01_dense_1"}
    expected_tags |= {f"activations/histogram/{layer}" for layer in layers}
    expected_tags |= {"activations/depth_profile/init", "activations/depth_profile/latest",
                      LAYOUT_TAG, DIAGNOSIS_TAG}
    assert set(run) == expected_tags
    for statistic in ("std", "pre_std"):
        written = scalar_series(run, f"activations/log10_{statistic}/01_dense_1")[0]
        assert written == (0, pytest.approx(np.log10(getattr(before_fit["dense_1"], statistic)),
                                            rel=1e-6))

    histogram = run["activations/histogram/00_dense_0"][0][1]
    assert histogram.shape == (30, 3)
    assert histogram[:, 2].sum() == 64 * 16
    np.testing.assert_allclose(histogram[:, 2], before_fit["dense_0"].histogram.counts)

    images = run["activations/depth_profile/latest"]
    assert [step for step, _ in images] == [0, 4, 8, 12]
    (init_image,) = run["activations/depth_profile/init"]  # the run's first write only
    assert init_image[0] == 0
    assert list(init_image[1]) == list(images[0][1])
    width, height, png = images[0][1]
    assert png.startswith(b"\x89PNG")
    assert (int(width), int(height)) == (1100, 440)

    tags = ("activations/std/00_dense_0", "activations/histogram/00_dense_0",
            "activations/depth_profile/init", LAYOUT_TAG, DIAGNOSIS_TAG)
    plugins = {tag: read_metadata(tmp_path / "activations", tag).plugin_data.plugin_name
               for tag in tags}
    assert plugins == dict(zip(tags, ("scalars", "histograms", "images", "custom_scalars", "text")))


def test_custom_scalars_layout_read_back_from_the_event_file(tmp_path):
    model = compiled_mlp()
    x, y = batch(128)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:32], images=False,
                                                histograms=False)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    callback.close()
    run_dir = tmp_path / "activations"
    run = read_run(run_dir)

    (layout_entry,) = run[LAYOUT_TAG]  # written once, with the first step
    assert layout_entry[0] == 0
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    (layout_event,) = accumulator.Tensors(LAYOUT_TAG)
    assert layout_event.tensor_proto.dtype == types_pb2.DT_STRING
    assert list(layout_event.tensor_proto.tensor_shape.dim) == []  # a scalar string
    layout = layout_pb2.Layout.FromString(layout_entry[1].item())
    assert [category.title for category in layout.category] == [
        "depth_profile (step = layer index)", "activations (by layer)"]
    profile_charts = {chart.title: chart.multiline.tag[0] for chart in layout.category[0].chart}
    assert list(profile_charts) == ["std", "log10_std", "pre_std", "log10_pre_std", "cosine",
                                    "dead_fraction", "saturation_fraction"]
    assert profile_charts["pre_std"] == "depth_profile/pre_std$"
    charts = {chart.title: chart.multiline.tag[0] for chart in layout.category[1].chart}
    names = list(ACTIVATION_SCALARS)
    names.insert(names.index("std") + 1, "log10_std")
    names.insert(names.index("pre_std") + 1, "log10_pre_std")
    assert list(charts) == names
    assert charts["std"] == "activations/std/"
    std_tags = {tag for tag in run if re.match(charts["std"], tag)}
    assert std_tags == {"activations/std/00_dense_0", "activations/std/01_dense_1",
                        "activations/std/02_out"}


def test_gradient_tags_values_and_layout(tmp_path):
    model = compiled_mlp()
    x, y = batch(256)
    probe_x, probe_y = x[:64], y[:64]
    before_fit = keras_inits.activation_statistics(model, probe_x, y=probe_y, gradients=True)
    callback = keras_inits.ActivationStatistics(tmp_path, (probe_x, probe_y), gradients=True)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    callback.close()

    run = read_run(tmp_path / "activations")
    for name in ("grad_std", "kernel_grad_std"):
        written = scalar_series(run, f"gradients/{name}/01_dense_1")
        assert [step for step, _ in written] == [0, 4, 8]
        assert written[0][1] == pytest.approx(getattr(before_fit["dense_1"], name), rel=1e-6)
    gradient_histogram = run["gradients/histogram/00_dense_0"][0][1]
    np.testing.assert_allclose(gradient_histogram[:, 2],
                               before_fit["dense_0"].grad_histogram.counts)
    assert {"gradients/histogram/00_dense_0", "gradients/histogram/01_dense_1",
            "gradients/histogram/02_out"} <= set(run)
    log10_grad_std = scalar_series(run, "gradients/log10_grad_std/01_dense_1")[0]
    assert log10_grad_std == (0, pytest.approx(np.log10(before_fit["dense_1"].grad_std),
                                               rel=1e-6))
    layout = layout_pb2.Layout.FromString(run[LAYOUT_TAG][0][1].item())
    assert [c.title for c in layout.category] == ["depth_profile (step = layer index)",
                                                  "activations (by layer)",
                                                  "gradients (by layer)"]
    assert [chart.title for chart in layout.category[2].chart] == [
        "grad_std", "kernel_grad_std", "log10_grad_std"]
    assert {"grad_std", "log10_grad_std"} <= {chart.title for chart in layout.category[0].chart}


@pytest.mark.backends("tensorflow")  # keras.callbacks.TensorBoard writes with tf.summary
def test_steps_are_keras_tensorboard_batch_steps(tmp_path):
    model = compiled_mlp()
    x, y = batch(256)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:64], images=False)
    keras_board = keras.callbacks.TensorBoard(tmp_path, update_freq=1)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[keras_board, callback], verbose=0)
    callback.close()
    ours = [step for step, _ in read_run(tmp_path / "activations")["activations/std/02_out"]]
    keras_steps = {step for step, _ in read_run(tmp_path / "train")["batch_loss"]}
    assert ours == [0, 4, 8]
    assert {4, 8} <= keras_steps


@pytest.mark.parametrize("update_freq, expected_steps", [
    ("batch", [0, 1, 2, 3, 4, 5, 6, 7, 8]),
    (3, [0, 3, 6]),
    ("epoch", [0, 4, 8]),
])
def test_update_freq_steps(tmp_path, update_freq, expected_steps):
    model = compiled_mlp(widths=(8,))
    x, y = batch(256)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:32], update_freq=update_freq,
                                                images=False, histograms=False)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(tmp_path / "activations")
    assert [step for step, _ in run["activations/mean/00_dense_0"]] == expected_steps


def test_no_image_by_default(tmp_path):
    model = compiled_mlp(widths=(8,))
    x, y = batch(128)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:32], histograms=False)
    assert callback.images is False
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(tmp_path / "activations")
    assert [step for step, _ in run["activations/std/00_dense_0"]] == [0, 2]
    assert not [tag for tag in run if "depth_profile" in tag]


def test_update_freq_in_steps_and_one_image_per_epoch(tmp_path):
    model = compiled_mlp(widths=(8,))
    x, y = batch(256)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:32], update_freq=3,
                                                histograms=False, images=True)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(tmp_path / "activations")
    assert [step for step, _ in run["activations/mean/00_dense_0"]] == [0, 3, 6]
    # Train begin (epoch 0) and the first write of epoch 2; never two in one epoch.
    assert [step for step, _ in run["activations/depth_profile/latest"]] == [0, 6]
    assert [step for step, _ in run["activations/depth_profile/init"]] == [0]
    assert "activations/histogram/00_dense_0" not in run  # histograms=False


@pytest.mark.backends("tensorflow", "jax")  # torch: Keras allows only steps_per_execution=1
def test_update_freq_in_steps_with_steps_per_execution(tmp_path):
    model = mlp(widths=(8,))
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    x, y = batch(256)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:32], update_freq=3, images=False,
                                                histograms=False)
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(tmp_path / "activations")
    # Batch ends arrive at steps 2, 4, 6, 8: a write each time a multiple of 3 was crossed.
    assert [step for step, _ in run["activations/mean/00_dense_0"]] == [0, 4, 6]


def test_update_freq_epoch_keeps_async_batch_dispatch():
    from keras.src.utils import python_utils

    x, _ = batch(8)
    assert python_utils.is_default(
        keras_inits.ActivationStatistics("unused", x).on_train_batch_end
    )
    assert not python_utils.is_default(
        keras_inits.ActivationStatistics("unused", x, update_freq=2).on_train_batch_end
    )


def test_nested_model_tags(tmp_path):
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="dense_3")],
                             name="inner")
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(1, name="head")(inner(keras.layers.Dense(8, name="stem")(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x, y = batch(64)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:16], images=False)
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(tmp_path / "activations")
    assert "activations/std/01_inner/dense_3" in run
    assert "activations/histogram/01_inner/dense_3" in run


# The probe batch has the fit's batch size: on jax and torch Keras builds an unbuilt
# Sequential with that batch size as its input's, and the probe's input check compares it.
@pytest.mark.parametrize("make_model", [unbuilt_sequential, TwoDense],
                         ids=["unbuilt_sequential", "subclassed"])
def test_unbuilt_and_subclassed_models(tmp_path, make_model):
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    assert not model.built
    x, y = batch(128)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:32], images=False)
    model.fit(x, y, batch_size=32, epochs=2, callbacks=[callback], verbose=0)
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(tmp_path / "activations")
    assert {tag for tag in run if tag.startswith("activations/std/")} == {
        "activations/std/00_hidden", "activations/std/01_head"}
    std = scalar_series(run, "activations/std/00_hidden")
    assert [step for step, _ in std] == [0, 4, 8, 12]
    final = keras_inits.activation_statistics(model, x[:32])
    assert std[-1][1] == pytest.approx(final["hidden"].std, rel=1e-6)
    assert run["activations/histogram/00_hidden"][0][1][:, 2].sum() == 32 * 8


# --------------------------------------------------------------------------------------
# Training is untouched
# --------------------------------------------------------------------------------------


def _train(tmp_path, with_callback, make_model, gradients):
    keras.utils.set_random_seed(7)
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = batch(192)
    callbacks = []
    if with_callback:
        callbacks.append(keras_inits.ActivationStatistics(
            tmp_path, (x[:32], y[:32]), update_freq=2, gradients=gradients, images=False))
    model.fit(x, y, batch_size=32, epochs=2, shuffle=True, callbacks=callbacks, verbose=0)
    return weights_of(model)


@pytest.mark.parametrize("make_model, gradients", [
    (lambda: mlp(dropout=0.3), False),
    (unbuilt_sequential, False),
    (lambda: mlp(dropout=0.3), True),
], ids=["dropout_mlp", "unbuilt_sequential", "dropout_mlp_gradients"])
def test_same_seed_same_final_weights_with_and_without_callback(tmp_path, make_model,
                                                                 gradients):
    without = _train(tmp_path, False, make_model, gradients)
    with_callback = _train(tmp_path, True, make_model, gradients)
    assert len(without) == len(with_callback)
    for a, b in zip(without, with_callback):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("update_freq", [0, -2, "weekly", 1.5, True, None])
def test_bad_update_freq_rejected_at_construction(update_freq):
    x, _ = batch(8)
    message = re.escape(f"Received: update_freq={update_freq!r}")
    with pytest.raises(ValueError, match=message):
        keras_inits.ActivationStatistics("logs", x, update_freq=update_freq)


@pytest.mark.parametrize("log_dir, error", [(None, TypeError), (123, TypeError),
                                            ("", ValueError)])
def test_bad_log_dir_rejected_at_construction(log_dir, error):
    x, _ = batch(8)
    with pytest.raises(error, match=re.escape(f"Received: log_dir={log_dir!r}")):
        keras_inits.ActivationStatistics(log_dir, x)


def test_freq_is_deprecated_for_update_freq(tmp_path):
    x, y = batch(128)
    with pytest.warns(DeprecationWarning, match="`update_freq`"):
        callback = keras_inits.ActivationStatistics(tmp_path, x[:16], freq=2, images=False)
    assert callback.update_freq == 2
    model = compiled_mlp(widths=(8,))
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(tmp_path / "activations")
    assert [step for step, _ in run["activations/mean/00_dense_0"]] == [0, 2, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_inits.ActivationStatistics(tmp_path, x[:16], update_freq=2, images=False)


def test_freq_and_update_freq_together_rejected():
    x, _ = batch(8)
    with pytest.raises(TypeError, match=re.escape("Received: freq=2, update_freq='batch'")):
        keras_inits.ActivationStatistics("logs", x, freq=2, update_freq="batch")


@pytest.mark.parametrize("freq", [0, "weekly"])
def test_bad_deprecated_freq_rejected_naming_freq(freq):
    x, _ = batch(8)
    with pytest.warns(DeprecationWarning):
        with pytest.raises(ValueError, match=re.escape(f"Received: freq={freq!r}")):
            keras_inits.ActivationStatistics("logs", x, freq=freq)


def test_gradients_without_targets_rejected_at_construction():
    x, _ = batch(8)
    with pytest.raises(ValueError, match="gradients=True"):
        keras_inits.ActivationStatistics("logs", x, gradients=True)


@pytest.mark.backends("tensorflow")
def test_dataset_as_data_rejected_at_construction():
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, 6), "float32")).batch(2)
    with pytest.raises(ValueError, match="Received: data of type"):
        keras_inits.ActivationStatistics("logs", dataset)


def test_empty_batch_rejected_at_construction():
    with pytest.raises(ValueError, match=r"empty batch.*Received: data with shape \(0, 6\)"):
        keras_inits.ActivationStatistics("logs", np.zeros((0, 6), "float32"))


# --------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------


def _fit_expecting(tmp_path, callback, error, match, model=None):
    model = model or compiled_mlp()
    x, y = batch(64)
    counter = BatchCounter()
    with pytest.raises(error, match=match):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback, counter], verbose=0)
    assert counter.batches == 0


def test_data_that_does_not_fit_fails_at_train_begin(tmp_path):
    callback = keras_inits.ActivationStatistics(tmp_path, np.zeros((8, 5), "float32"))
    _fit_expecting(tmp_path, callback, ValueError,
                   r"expected shape \(None, 6\).*Received: data with shape \(8, 5\)")


def test_unknown_layer_fails_at_train_begin_listing_names(tmp_path):
    x, _ = batch(8)
    callback = keras_inits.ActivationStatistics(tmp_path, x, layers=["nope"])
    _fit_expecting(tmp_path, callback, ValueError,
                   r"Unknown layer 'nope'. Available layers: \['dense_0', 'dense_1', 'out'\]")


def test_model_with_nothing_to_monitor_fails_at_train_begin(tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dropout(0.1),
                              keras.layers.Lambda(lambda t: t[:, :1])])
    model.compile(optimizer="sgd", loss="mse")
    x, _ = batch(8)
    callback = keras_inits.ActivationStatistics(tmp_path, x)
    _fit_expecting(tmp_path, callback, ValueError, "no layer to monitor", model=model)


def test_log_dir_that_cannot_be_created_fails_at_train_begin(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    x, _ = batch(8)
    callback = keras_inits.ActivationStatistics(blocker / "logs", x)
    _fit_expecting(tmp_path, callback, OSError, "Cannot create the TensorBoard run directory")


def test_nonfinite_activations_are_logged_not_raised(tmp_path, caplog):
    model = compiled_mlp()
    x, y = batch(64)
    probe = x[:16].copy()
    probe[0, 0] = np.nan
    callback = keras_inits.ActivationStatistics(tmp_path, probe)
    with caplog.at_level(logging.WARNING, logger="keras_inits"):
        history = model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
    callback.close()
    assert len(history.history["loss"]) == 1
    assert "non-finite activations at step 0: dense_0 (16 values)" in caplog.text
    run = read_run(tmp_path / "activations")
    assert scalar_series(run, "activations/nonfinite_count/00_dense_0")[0] == (0, 16.0)


# --------------------------------------------------------------------------------------
# No TensorFlow on jax and torch (a fresh process, so that nothing else imported it)
# --------------------------------------------------------------------------------------

NO_TENSORFLOW_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import keras_inits

    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = x[:, :1]
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = keras_inits.ActivationStatistics(sys.argv[1], x[:16])
    assert "tensorflow" not in sys.modules, "constructing the callback imported tensorflow"
    model.fit(x, y, batch_size=32, epochs=2, callbacks=[callback], verbose=0)
    callback.close()
    assert "tensorflow" not in sys.modules, "fit with the callback imported tensorflow"
    print("OK", keras.backend.backend())
    """
)


@pytest.mark.backends("jax", "torch")
def test_no_tensorflow_imported(tmp_path):
    script = tmp_path / "no_tensorflow.py"
    script.write_text(NO_TENSORFLOW_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=180, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert f"OK {keras.backend.backend()}" in result.stdout
    run = read_run(tmp_path / "logs" / "activations")
    assert [step for step, _ in run["activations/std/00_dense"]] == [0, 2, 4]


# --------------------------------------------------------------------------------------
# Distribution strategy (needs two logical CPUs before TensorFlow initializes: subprocess)
# --------------------------------------------------------------------------------------

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras
    import keras_inits
    sys.path.insert(0, sys.argv[2])
    from _stats_helpers import batch, mlp
    from test_callbacks import read_run

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = mlp()
        model.compile(optimizer="sgd", loss="mse")
    x, y = batch(256)
    callback = keras_inits.ActivationStatistics(sys.argv[1], (x[:32], y[:32]), gradients=True)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    callback.close()
    run = read_run(sys.argv[1] + "/activations")
    steps = [step for step, _ in run["activations/std/00_dense_0"]]
    grad_steps = [step for step, _ in run["gradients/kernel_grad_std/00_dense_0"]]
    print("STEPS", steps, grad_steps)
    assert steps == [0, 4, 8], steps
    assert grad_steps == [0, 4, 8], grad_steps
    print("OK")
    """
)


@pytest.mark.backends("tensorflow")
def test_mirrored_strategy_writes_once(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "logs"), os.path.dirname(__file__)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "OK" in result.stdout


def test_write_outside_fit_for_an_untrained_model(tmp_path):
    model = mlp()  # never compiled: no optimizer, so the step is 0
    x, _ = batch(64)
    callback = keras_inits.ActivationStatistics(tmp_path, x, images=False)
    with pytest.raises(ValueError, match="set_model"):
        callback.write()
    callback.set_model(model)
    statistics = callback.write()
    callback.write(step=7)
    callback.close()

    run = read_run(tmp_path / "activations")
    std = scalar_series(run, "activations/std/00_dense_0")
    assert [step for step, _ in std] == [0, 7]
    assert std[0][1] == pytest.approx(statistics["dense_0"].std, rel=1e-6)
