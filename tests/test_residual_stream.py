"""The residual stream in ``activation_statistics`` and in the ``ActivationStatistics`` callback.

Every backend. The stream after each merge is checked against a hand computation on a
feature-extractor model of a Functional residual MLP; a subclassed twin (a ``+`` inside
``call``) with the same weights gives the same numbers; the callback's tags (and the stream
against depth in the depth-profile runs) are read back from the event files.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tensorboard.plugins.custom_scalar import layout_pb2

import keras_inits
from keras_inits import backend
from keras_inits.model.residual import provably_without_merges, residual_blocks
from keras_inits.tensorboard.callback import RUN_NAME
from keras_inits.tensorboard.protos import LAYOUT_TAG

from _stats_helpers import mlp, read_run, scalar_series

WIDTH = 8
BLOCKS = 3
SAMPLES = 32
TOLERANCE = 1e-5


def dense(name: str, activation: str | None = None, seed: int = 0) -> keras.layers.Dense:
    initializer = keras.initializers.HeNormal(seed=seed)
    return keras.layers.Dense(
        WIDTH, activation=activation, kernel_initializer=initializer, name=name
    )


def functional_mlp() -> keras.Model:
    """A stem, ``BLOCKS`` blocks ``h + outer(relu(inner(h)))`` with ``Add`` layers, a head."""
    inputs = keras.Input((WIDTH,))
    hidden = dense("stem", seed=100)(inputs)
    for index in range(BLOCKS):
        branch = dense(f"inner_{index}", "relu", seed=2 * index)(hidden)
        branch = dense(f"outer_{index}", seed=2 * index + 1)(branch)
        hidden = keras.layers.Add(name=f"add_{index}")([hidden, branch])
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))


class SubclassedMLP(keras.Model):
    """The same network with the merges written as ``+`` inside ``call``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stem = dense("stem")
        self.inner = [dense(f"inner_{index}", "relu") for index in range(BLOCKS)]
        self.outer = [dense(f"outer_{index}") for index in range(BLOCKS)]
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        hidden = self.stem(x)
        for inner, outer in zip(self.inner, self.outer):
            hidden = hidden + outer(inner(hidden))
        return self.head(hidden)


def probe_batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(SAMPLES, WIDTH)).astype("float32")


def hand_stream(model: keras.Model, x: np.ndarray) -> tuple[list[float], list[float]]:
    """Stds and growths of the merge outputs, from a feature-extractor model."""
    names = ["stem"] + [f"add_{index}" for index in range(BLOCKS)]
    extractor = keras.Model(model.inputs[0], [model.get_layer(name).output for name in names])
    read = backend.current().to_numpy
    arrays = [np.asarray(read(value), dtype=np.float64) for value in extractor(x)]
    stds = [float(array.std()) for array in arrays]
    return stds[1:], [stds[index + 1] / stds[index] for index in range(BLOCKS)]


def test_stream_statistics_equal_a_feature_extractor():
    model = functional_mlp()
    x = probe_batch()
    stream = keras_inits.activation_statistics(model, x).residual_stream
    stds, growths = hand_stream(model, x)
    assert [(block.index, block.merge) for block in stream] == [
        (index, f"add_{index}") for index in range(BLOCKS)
    ]
    np.testing.assert_allclose([block.std for block in stream], stds, rtol=TOLERANCE)
    np.testing.assert_allclose([block.growth for block in stream], growths, rtol=TOLERANCE)
    assert all(growth > 1.0 for growth in growths)  # unit-variance branches grow the stream


def test_subclassed_twin_gives_the_same_stream():
    functional = functional_mlp()
    x = probe_batch()
    twin = SubclassedMLP()
    twin(x[:2])
    for layer in [twin.stem, *twin.inner, *twin.outer, twin.head]:
        layer.set_weights(functional.get_layer(layer.name).get_weights())
    expected = keras_inits.activation_statistics(functional, x).residual_stream
    stream = keras_inits.activation_statistics(twin, x).residual_stream
    assert [block.merge for block in stream] == [f"+{index}" for index in range(BLOCKS)]
    for name in ("std", "growth"):
        np.testing.assert_allclose(
            [getattr(block, name) for block in stream],
            [getattr(block, name) for block in expected],
            rtol=TOLERANCE,
        )


def test_a_plain_model_has_an_empty_stream():
    statistics = keras_inits.activation_statistics(mlp(), probe_batch()[:, :6])
    assert statistics.residual_stream == ()
    assert list(statistics) == ["dense_0", "dense_1", "out"]


def test_callback_writes_the_stream_tags(tmp_path):
    model = functional_mlp()
    x = probe_batch()
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, histograms=False, images=False)
    callback.set_model(model)
    stream = callback.write().residual_stream
    callback.close()
    run = read_run(str(tmp_path / RUN_NAME))
    written = sorted(tag for tag in run if tag.startswith("residual_stream/"))
    expected_tags = sorted(
        [f"residual_stream/std/{index:02d}_add_{index}" for index in range(BLOCKS)]
        + [f"residual_stream/growth/{index:02d}_add_{index}" for index in range(BLOCKS)]
        + ["residual_stream/std_ratio_last_first"]
    )
    assert written == expected_tags
    for block in stream:
        for name in ("std", "growth"):
            tag = f"residual_stream/{name}/{block.index:02d}_{block.merge}"
            assert scalar_series(run, tag) == [(0, float(np.float32(getattr(block, name))))]
    ratio = scalar_series(run, "residual_stream/std_ratio_last_first")
    assert ratio == [(0, float(np.float32(stream[-1].std / stream[0].std)))]
    # The depth-profile runs: the stream against depth, step = block index.
    for profile_run in ("init", "latest"):
        profile = read_run(str(tmp_path / f"{RUN_NAME}_profile" / profile_run))
        for name in ("std", "growth"):
            assert scalar_series(profile, f"depth_profile/residual_stream_{name}") == [
                (block.index, float(np.float32(getattr(block, name)))) for block in stream]
    layout = layout_pb2.Layout.FromString(run[LAYOUT_TAG][0][1].item())
    titles = [category.title for category in layout.category]
    assert titles[-1] == "residual_stream (by block)"
    assert {"residual_stream_std", "residual_stream_growth"} <= {
        chart.title for chart in layout.category[0].chart}


def test_a_projection_shortcut_grows_against_the_stream_it_forked_from():
    inputs = keras.Input((WIDTH,))
    stem = dense("stem", seed=100)(inputs)
    skip = dense("projection", seed=7)(stem)
    branch = dense("outer_0", seed=8)(dense("inner_0", "relu", seed=9)(stem))
    merged = keras.layers.Add(name="add_0")([skip, branch])
    model = keras.Model(inputs, merged)
    x = probe_batch()
    (block,) = keras_inits.activation_statistics(model, x).residual_stream
    extractor = keras.Model(model.inputs[0], [stem, merged])
    read = backend.current().to_numpy
    entering, output = [np.asarray(read(value), dtype=np.float64) for value in extractor(x)]
    np.testing.assert_allclose(block.growth, output.std() / entering.std(), rtol=TOLERANCE)


class SubclassedPlainMLP(keras.Model):
    """A stack without merges that only a trace can tell apart from ``SubclassedMLP``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = dense("hidden", "tanh")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        return self.head(self.hidden(x))


def test_a_model_without_merges_is_traced_at_most_once(monkeypatch):
    # The callback measures at every write: a model without merges pays the traced pass
    # once, and a plain stack of Keras layers never (its structure shows there is no merge).
    calls = []
    traced = keras_inits.stats.residual_stream

    def counting(*args, **kwargs):
        calls.append(1)
        return traced(*args, **kwargs)

    monkeypatch.setattr(keras_inits.stats, "residual_stream", counting)
    x = probe_batch()
    plain = mlp()
    for _ in range(3):
        assert keras_inits.activation_statistics(plain, x[:, :6]).residual_stream == ()
    assert calls == []
    subclassed = SubclassedPlainMLP()
    subclassed(x)
    for _ in range(3):
        assert keras_inits.activation_statistics(subclassed, x).residual_stream == ()
    assert len(calls) == 1
    residual = functional_mlp()
    for _ in range(2):
        assert len(keras_inits.activation_statistics(residual, x).residual_stream) == BLOCKS
    assert len(calls) == 3


def _with_plus() -> keras.Model:
    inputs = keras.Input((WIDTH,))
    return keras.Model(inputs, inputs + dense("branch")(inputs))


def _nested_residual() -> keras.Model:
    return keras.Sequential([keras.Input((WIDTH,)), functional_mlp(), dense("after")])


def _conv_stack() -> keras.Model:
    return keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.MaxPooling2D(),
        keras.layers.SeparableConv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(2),
    ])


def _lstm_stack() -> keras.Model:
    return keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])


def _built(model_class) -> keras.Model:
    model = model_class()
    model(probe_batch())
    return model


@pytest.mark.parametrize("build, expected", [
    (mlp, True),
    (_conv_stack, True),
    (_lstm_stack, True),
    (lambda: keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), alpha=0.25,
                                          classes=3), True),
    (functional_mlp, False),
    (_with_plus, False),
    (_nested_residual, False),
    (lambda: _built(SubclassedMLP), False),
    (lambda: _built(SubclassedPlainMLP), False),
    (lambda: keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                            classes=3), False),
])
def test_provably_without_merges_agrees_with_the_trace(build, expected):
    model = build()
    assert provably_without_merges(model) is expected
    if expected:  # the shortcut never hides a merge the trace would find
        assert residual_blocks(model) == []
