"""The TensorBoard view of depth: tags in depth order, log10 of the stds, the profile runs
(step = depth index), the depth-profile image, and no chart that is always empty.

Every backend; read back with TensorBoard's own readers (the raw event files, and the
server's ``plugin_event_accumulator``, which applies ``SessionLog.START`` purges as a live
TensorBoard does). ``tests/test_tensorboard_server.py`` serves the same runs over HTTP.
"""

from __future__ import annotations

import errno
import io
import logging
import math
import os

import keras
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_file_loader, plugin_event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.custom_scalar import layout_pb2

import keras_inits
from keras_inits import backend
from keras_inits.tensorboard import image, writer as writer_module
from keras_inits.tensorboard.protos import LAYOUT_TAG
from keras_inits.tensorboard.writer import event_files

from _stats_helpers import batch, mlp, read_run, scalar_series

LAYERS = ("dense_0", "dense_1", "out")
#: The smallest font on the image, in pixels, that TensorBoard shows at the image's own size.
MIN_FONT_PIXELS = 12
#: tab:red, the colour of the zero-std sentence (and of the cosine line, in the right panel).
RED = np.array([214, 39, 40])
RED_TOLERANCE = 40


def profile_dir(log_dir, run="latest", statistics_run="activations"):
    return os.path.join(str(log_dir), f"{statistics_run}_profile", run)


def loaded_series(run_dir, tag):
    """``[(step, value)]`` as TensorBoard's Python loader (``--load_fast=false``) serves it.

    ``plugin_event_accumulator`` is what the server's multiplexer uses: it applies the
    ``SessionLog.START`` purge to every summary (the legacy ``event_accumulator`` does not
    purge tensors).
    """
    accumulator = plugin_event_accumulator.EventAccumulator(
        str(run_dir), tensor_size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, float(event.tensor_proto.float_val[0]))
            for event in accumulator.Tensors(tag)]


def expected_profile(statistics, name):
    values = [getattr(statistics[path], name) for path in statistics]
    return [(index, pytest.approx(value, rel=1e-6)) for index, value in enumerate(values)
            if value is not None]


def session_starts(run_dir):
    starts = 0
    for path in event_files(str(run_dir)):
        for event in event_file_loader.EventFileLoader(path).Load():
            starts += event.session_log.status == event_pb2.SessionLog.START
    return starts


def write_once(log_dir, model, x, **options):
    callback = keras_inits.ActivationStatistics(log_dir, x, **options)
    callback.set_model(model)
    statistics = callback.write()
    callback.close()
    return statistics


def named_like_keras(count, activation="tanh", width=2):
    """``count`` Dense layers named as Keras names them: ``dense``, ``dense_1``, ..."""
    layers = [keras.Input((3,))]
    for index in range(count):
        layers.append(keras.layers.Dense(
            width, activation=activation, name="dense" if index == 0 else f"dense_{index}",
            kernel_initializer=keras.initializers.GlorotNormal(seed=index)))
    return keras.Sequential(layers)


def test_profile_runs_hold_the_statistics_at_step_equal_depth(tmp_path):
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = batch(256)
    probe = (x[:64], y[:64])
    at_init = keras_inits.activation_statistics(model, probe[0], y=probe[1], gradients=True)
    callback = keras_inits.ActivationStatistics(tmp_path, probe, gradients=True, images=False)
    model.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
    callback.close()
    latest = callback.last_statistics

    init_run = read_run(profile_dir(tmp_path, "init"))
    assert set(init_run) == {f"depth_profile/{name}" for name in (
        "std", "log10_std", "pre_std", "log10_pre_std", "cosine", "dead_fraction",
        "saturation_fraction", "grad_std", "log10_grad_std")}
    for name in ("std", "pre_std", "cosine", "dead_fraction", "grad_std"):
        assert scalar_series(init_run, f"depth_profile/{name}") == expected_profile(at_init, name)
    # tanh layers 0 and 1 are bounded, the linear output (depth 2) is not.
    assert [step for step, _ in init_run["depth_profile/saturation_fraction"]] == [0, 1]
    log10_pre_std = [(index, pytest.approx(math.log10(at_init[path].pre_std), rel=1e-6))
                     for index, path in enumerate(LAYERS)]
    assert scalar_series(init_run, "depth_profile/log10_pre_std") == log10_pre_std
    assert session_starts(profile_dir(tmp_path, "init")) == 1

    # The latest run holds one profile per write (steps 0, 4, 8), each after a START...
    latest_dir = profile_dir(tmp_path, "latest")
    assert [step for step, _ in read_run(latest_dir)["depth_profile/std"]] == [0, 1, 2] * 3
    assert session_starts(latest_dir) == 3
    # ... which TensorBoard's loader turns into the latest profile alone.
    for name in ("std", "pre_std", "cosine", "grad_std"):
        assert loaded_series(latest_dir, f"depth_profile/{name}") == expected_profile(latest, name)
        assert loaded_series(profile_dir(tmp_path, "init"), f"depth_profile/{name}") == (
            expected_profile(at_init, name))


@pytest.mark.parametrize("count, digits", [(12, 2), (120, 3)])
def test_tags_sort_in_depth_order(tmp_path, count, digits):
    model = named_like_keras(count)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    statistics = write_once(tmp_path, model, x, images=False)
    run = read_run(tmp_path / "activations")
    paths = list(statistics)
    assert paths[:2] == ["dense", "dense_1"] and sorted(paths) != paths  # "dense_10" < "dense_2"
    for prefix in ("activations/std/", "activations/log10_pre_std/", "activations/histogram/"):
        tags = [tag for tag in run if tag.startswith(prefix)]
        in_depth_order = [f"{prefix}{index:0{digits}d}_{path}" for index, path in enumerate(paths)]
        assert sorted(tags) == in_depth_order
    assert f"activations/std/{0:0{digits}d}_dense" < f"activations/std/{5:0{digits}d}_dense_5"
    profile = read_run(profile_dir(tmp_path))
    assert [step for step, _ in profile["depth_profile/std"]] == list(range(count))


def test_log10_of_the_stds_and_no_log_of_zero(tmp_path):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden",
                                kernel_initializer=keras.initializers.GlorotNormal(seed=0))(inputs)
    tiny = keras.layers.Dense(8, name="tiny",
                              kernel_initializer=keras.initializers.RandomNormal(stddev=1e-8,
                                                                                 seed=1))(hidden)
    zero = keras.layers.Dense(4, name="zero", kernel_initializer="zeros")(tiny)
    model = keras.Model(inputs, zero)
    x, _ = batch(32)
    statistics = write_once(tmp_path, model, x, images=False)
    run = read_run(tmp_path / "activations")

    for index, path in enumerate(("hidden", "tiny")):
        (written,) = scalar_series(run, f"activations/log10_std/{index:02d}_{path}")
        assert written == (0, pytest.approx(math.log10(statistics[path].std), rel=1e-6))
    assert scalar_series(run, "activations/log10_std/01_tiny")[0][1] < -7  # a 1e-8 collapse
    assert scalar_series(run, "activations/std/02_zero") == [(0, 0.0)]
    assert not any(tag.endswith("02_zero") for tag in run if "log10" in tag)
    profile = read_run(profile_dir(tmp_path))
    assert [step for step, _ in profile["depth_profile/log10_std"]] == [0, 1]
    assert [step for step, _ in profile["depth_profile/std"]] == [0, 1, 2]


@pytest.mark.parametrize("activation, bounded", [("relu", False), ("tanh", True)])
def test_saturation_is_charted_only_for_bounded_activations(tmp_path, activation, bounded):
    model = mlp(activation=activation)
    x, _ = batch(32)
    write_once(tmp_path, model, x, images=False)
    run = read_run(tmp_path / "activations")
    profile = read_run(profile_dir(tmp_path))
    layout = layout_pb2.Layout.FromString(run[LAYOUT_TAG][0][1].item())
    charts = [chart.title for category in layout.category for chart in category.chart]
    written = {
        "scalar": any("saturation" in tag for tag in run),
        "profile": any("saturation" in tag for tag in profile),
        "layout": "saturation_fraction" in charts,
    }
    assert written == dict.fromkeys(written, bounded)
    assert charts.count("std") == 2  # the profile chart and the per-layer chart


def test_the_depth_profile_image_is_large_titled_and_says_when_std_is_zero():
    assert min(image.TICK_POINTS, image.LABEL_POINTS, image.TITLE_POINTS) * image.DPI / 72 >= (
        MIN_FONT_PIXELS)
    healthy = mlp()
    dead = mlp(activation="relu")
    for layer in dead.layers:
        layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
    x, _ = batch(32)
    plot = image.DepthProfilePlot()

    def left_panel_red_pixels(model, title):
        png, width, height = plot.render(keras_inits.activation_statistics(model, x),
                                         title=title, output="out")
        assert (width, height) == (1100, 440)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
        left = pixels[:, : width // 2]
        return int((np.abs(left - RED).sum(axis=-1) < RED_TOLERANCE).sum()), pixels

    healthy_red, healthy_pixels = left_panel_red_pixels(healthy, "run, step 0")
    dead_red, _ = left_panel_red_pixels(dead, "run, step 0")
    assert healthy_red == 0
    assert dead_red > 0  # the sentence, in red, in the std panel
    _, retitled = left_panel_red_pixels(healthy, "run, step 400")
    assert not np.array_equal(healthy_pixels, retitled)  # the title is drawn per render


def test_the_output_layer_is_found(tmp_path):
    callback = keras_inits.ActivationStatistics(tmp_path, batch(8)[0], images=False)
    callback.set_model(mlp())
    callback.write()
    callback.close()
    assert callback._output_path == "out"


def test_the_profile_survives_a_full_disk(tmp_path, monkeypatch, caplog):
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = batch(128)
    at_init = keras_inits.activation_statistics(model, x[:32])
    real_write = writer_module._os_write
    state = {"full": True}

    def write(fd, data):
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def free_at_epoch_1(epoch, logs=None):
        state["full"] = epoch < 1

    monkeypatch.setattr(writer_module, "_os_write", write)
    callback = keras_inits.ActivationStatistics(tmp_path, x[:32], images=False)
    free = keras.callbacks.LambdaCallback(on_epoch_begin=free_at_epoch_1)
    with caplog.at_level(logging.INFO, logger="keras_inits"):
        with pytest.warns(RuntimeWarning, match="No space left on device"):
            model.fit(x, y, batch_size=64, epochs=3, callbacks=[free, callback], verbose=0)
    callback.close()
    assert caplog.text.count("could not write the depth profile") == 1
    assert "the depth profile is written to" in caplog.text
    for name in ("std", "pre_std"):
        assert loaded_series(profile_dir(tmp_path, "init"), f"depth_profile/{name}") == (
            expected_profile(at_init, name))
        assert loaded_series(profile_dir(tmp_path, "latest"), f"depth_profile/{name}") == (
            expected_profile(callback.last_statistics, name))


def test_a_second_callback_gets_its_own_profile_and_a_worker_writes_none(tmp_path, monkeypatch):
    x, _ = batch(16)
    first = keras_inits.ActivationStatistics(tmp_path, x, images=False)
    first.set_model(mlp(seed=0))
    first.write()
    second = keras_inits.ActivationStatistics(tmp_path, x, images=False)
    second.set_model(mlp(seed=10))
    with pytest.warns(RuntimeWarning, match="written by another callback"):
        second_statistics = second.write()
    first.close()
    second.close()
    profile = read_run(profile_dir(tmp_path, "latest", statistics_run="activations_1"))
    assert scalar_series(profile, "depth_profile/std") == expected_profile(second_statistics,
                                                                           "std")

    worker_dir = tmp_path / "worker"
    monkeypatch.setattr(backend.current(), "is_chief", lambda: False)
    write_once(worker_dir, mlp(), x)
    assert not worker_dir.exists()
