"""Tests of keras_inits.activation_statistics and the probe it stands on."""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_inits
from keras_inits import _probe, backend
from keras_inits.stats import HISTOGRAM_BUCKETS, LayerStatistics, mean_pairwise_cosine

from _stats_helpers import batch, mlp, weights_of


def brute_force_cosine(matrix):
    """Mean cosine over ordered pairs of distinct rows, zero rows per the documented rule."""
    n = matrix.shape[0]
    total = 0.0
    for i, j in itertools.permutations(range(n), 2):
        a, b = matrix[i].astype(np.float64), matrix[j].astype(np.float64)
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 and nb == 0:
            total += 1.0
        elif na == 0 or nb == 0:
            total += 0.0
        else:
            total += float(a @ b) / (na * nb)
    return total / (n * (n - 1))


def dense_with_kernel(kernel, activation=None, bias=None, name="d"):
    kernel = np.asarray(kernel, dtype="float32")
    inputs = keras.Input((kernel.shape[0],))
    layer = keras.layers.Dense(kernel.shape[1], activation=activation, use_bias=bias is not None,
                               name=name)
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([kernel] if bias is None else [kernel, np.asarray(bias, "float32")])
    return model


# --------------------------------------------------------------------------------------
# Exact values on hand-built cases
# --------------------------------------------------------------------------------------


def test_dense_with_known_kernel_gives_exact_statistics():
    # Column 2 is all zero (a dead unit); relu zeroes the negative entries.
    kernel = [[1.0, -1.0, 0.0, 2.0], [0.0, 1.0, 0.0, -1.0]]
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]], dtype="float32")
    model = dense_with_kernel(kernel, activation="relu")
    expected = np.maximum(x @ np.array(kernel, dtype="float32"), 0.0)

    stats = keras_inits.activation_statistics(model, x)["d"]

    assert stats.mean == pytest.approx(expected.mean())
    assert stats.std == pytest.approx(expected.std())
    assert stats.min == 0.0 and stats.max == pytest.approx(expected.max())
    assert stats.zero_fraction == pytest.approx(np.mean(expected == 0))
    assert stats.dead_fraction == pytest.approx(0.25)  # exactly one of four units
    assert stats.cosine == pytest.approx(brute_force_cosine(expected))
    assert stats.pre_std == pytest.approx((x @ np.array(kernel, dtype="float32")).std())
    assert stats.std_ratio == pytest.approx(expected.std() / x.std())
    assert stats.nonfinite_count == 0
    assert stats.saturation_fraction is None  # relu has no finite upper bound
    assert stats.histogram.counts.sum() == expected.size
    assert stats.histogram.counts.shape == (HISTOGRAM_BUCKETS,)
    assert stats.num_values == expected.size


def test_identical_rows_give_cosine_one_and_zero_rows_follow_the_rule():
    same = np.tile(np.array([[1.0, 2.0, -3.0]], dtype="float32"), (5, 1))
    assert mean_pairwise_cosine(same) == pytest.approx(1.0)
    zeros = np.zeros((4, 3), dtype="float32")
    assert mean_pairwise_cosine(zeros) == pytest.approx(1.0)
    mixed = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype="float32")
    assert mean_pairwise_cosine(mixed) == pytest.approx(brute_force_cosine(mixed))
    assert mean_pairwise_cosine(np.ones((1, 3))) is None


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(2, 7), st.integers(1, 5)),
        elements=st.sampled_from([0.0, 1.0, -1.0, 0.5, 3.0, -2.0]),
    )
)
def test_cosine_matches_brute_force(matrix):
    assert mean_pairwise_cosine(matrix) == pytest.approx(brute_force_cosine(matrix), abs=1e-6)


def test_tanh_saturation_and_pre_std():
    rng = np.random.default_rng(1)
    kernel = rng.normal(scale=3.0, size=(8, 32)).astype("float32")
    x = rng.normal(size=(128, 8)).astype("float32")
    model = dense_with_kernel(kernel, activation="tanh")
    pre = x @ kernel
    post = np.tanh(pre)

    stats = keras_inits.activation_statistics(model, x)["d"]

    assert stats.saturation_fraction == pytest.approx(np.mean(np.abs(post) >= 0.99), abs=2e-3)
    assert stats.saturation_fraction > 0.5
    assert stats.pre_std == pytest.approx(pre.std(), rel=1e-4)
    assert stats.std == pytest.approx(post.std(), rel=1e-4)
    assert stats.pre_std > 2.0 > 1.0 > stats.std  # tanh outputs cannot reach std 1


@pytest.mark.parametrize(
    "layer, bound_check",
    [
        (keras.layers.Activation("sigmoid"), lambda a: (a <= 0.01) | (a >= 0.99)),
        (keras.layers.Activation("softsign"), lambda a: np.abs(a) >= 0.99),
        (keras.layers.Activation("relu6"), lambda a: a >= 5.99),
        (keras.layers.ReLU(max_value=6.0), lambda a: a >= 5.99),
        (keras.layers.ReLU(), None),
        (keras.layers.LeakyReLU(), None),
    ],
    ids=["sigmoid", "softsign", "relu6", "ReLU-max6", "ReLU", "LeakyReLU"],
)
def test_standalone_activation_layers_are_monitored_with_their_bounds(layer, bound_check):
    x = np.random.default_rng(2).normal(scale=150.0, size=(64, 5)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), layer])
    stats = keras_inits.activation_statistics(model, x)
    assert list(stats) == [layer.name]
    result = stats[layer.name]
    if bound_check is None:
        assert result.saturation_fraction is None
    else:
        output = keras.ops.convert_to_numpy(layer(x))
        assert result.saturation_fraction == pytest.approx(np.mean(bound_check(output)))
        assert result.saturation_fraction > 0.0


def test_std_ratio_chains_through_the_layers():
    x, _ = batch(128)
    stats = keras_inits.activation_statistics(mlp(), x)
    values = list(stats.values())
    assert values[0].std_ratio == pytest.approx(values[0].std / x.std(), rel=1e-5)
    for previous, current in zip(values, values[1:]):
        assert current.std_ratio == pytest.approx(current.std / previous.std, rel=1e-5)


def test_nonfinite_values_are_counted_not_raised():
    x, _ = batch(32)
    x[0, 0] = np.nan
    x[1, 1] = np.inf
    model = mlp()
    stats = keras_inits.activation_statistics(model, x)
    first = stats["dense_0"]
    kernel, bias = model.layers[0].get_weights()
    with np.errstate(invalid="ignore", over="ignore"):
        expected = np.tanh(x @ kernel + bias)
    assert first.nonfinite_count == np.count_nonzero(~np.isfinite(expected)) == 16  # NaN row
    assert math.isfinite(first.mean) and math.isfinite(first.std)
    assert first.histogram.counts.sum() == first.num_values - first.nonfinite_count


def test_conv_dead_fraction_counts_channels():
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
    model = keras.Sequential([keras.Input((6, 6, 2)), conv])
    kernel, bias = conv.get_weights()
    kernel[..., 0] = np.abs(kernel[..., 0]) + 0.1  # positive for non-negative inputs: alive
    kernel[..., 1] = 0.0
    kernel[..., 2] = np.abs(kernel[..., 2]) + 0.1
    kernel[..., 3] = -np.abs(kernel[..., 3]) - 1.0  # negative for non-negative inputs
    conv.set_weights([kernel, np.zeros_like(bias)])
    x = np.abs(np.random.default_rng(3).normal(size=(8, 6, 6, 2))).astype("float32")
    stats = keras_inits.activation_statistics(model, x)["conv"]
    assert stats.dead_fraction == pytest.approx(0.5)


def test_histogram_matches_numpy():
    x, _ = batch(256)
    model = mlp(widths=(32,))
    kernel, bias = model.layers[0].get_weights()
    output = np.tanh(x @ kernel + bias)
    stats = keras_inits.activation_statistics(model, x)["dense_0"]
    counts, edges = np.histogram(output, bins=HISTOGRAM_BUCKETS,
                                 range=(output.min(), output.max()))
    np.testing.assert_allclose(stats.histogram.edges, edges, rtol=1e-5, atol=1e-6)
    # float32 vs float64 bucket arithmetic may move a value sitting on an edge.
    assert np.abs(stats.histogram.counts - counts).max() <= 1
    assert stats.histogram.counts.sum() == output.size


def test_scalars_and_as_dict():
    x, _ = batch(16)
    stats = keras_inits.activation_statistics(mlp(), x)["dense_0"]
    assert isinstance(stats, LayerStatistics)
    scalars = stats.scalars()
    assert list(scalars)[:3] == ["mean", "std", "min"]
    assert "grad_std" not in scalars
    assert all(isinstance(value, float) for value in scalars.values())
    as_dict = stats.as_dict()
    assert as_dict["path"] == "dense_0" and as_dict["layer_class"] == "Dense"
    assert len(as_dict["histogram"]["edges"]) == HISTOGRAM_BUCKETS + 1
    with pytest.raises(Exception):
        stats.std = 1.0  # frozen


def _outputs(kind):
    """Layer outputs (256 x 64) of the kinds where the statistics take a shortcut or a fallback."""
    rng = np.random.default_rng(7)
    normal = rng.normal(size=(256, 64)).astype("float32")
    if kind == "collapsed":  # squares of the deviations below float32's normal range
        return normal * np.float32(1e-21)
    if kind == "huge":  # squares past float32's range
        return normal * np.float32(1e22)
    if kind == "saturated":
        return np.tanh(4 * normal)
    if kind == "offset":  # a large mean, a small spread: the std from the deviations
        return np.float32(1000.0) + normal * np.float32(1e-2)
    if kind == "offset_one_pass":  # variance 4e-4 mean^2 > _ONE_PASS_VARIANCE: one pass
        return np.float32(10.0) + normal * np.float32(0.2)
    if kind == "relu_dead_unit":
        relu = np.maximum(normal, 0)
        relu[:, 5] = 0
        return relu
    if kind == "nan_and_inf":
        broken = np.tanh(normal)
        broken[3, :7] = np.nan
        broken[9, 2] = np.inf
        return broken
    return np.tanh(normal)


@pytest.mark.parametrize("kind", ["healthy", "collapsed", "huge", "saturated", "offset",
                                  "offset_one_pass", "relu_dead_unit", "nan_and_inf"])
def test_layer_statistics_equal_their_float64_definitions(kind):
    # The statistics take shortcuts (one min/max instead of a NaN scan, no per-unit scan
    # without zeros, no saturation scan when no value nears a bound, the variance as
    # E[x^2] - mean^2 when that is well conditioned): on each case where a shortcut is taken
    # or must not be, they equal the plain float64 definitions (the std to 1e-9).
    outputs = _outputs(kind)
    layer = keras.layers.Dense(64, activation="tanh")
    record = _probe.ProbeRecord(path="d", layer=layer, outputs=(outputs,),
                                pre_activations=(outputs * np.float32(2),))
    stats = keras_inits.stats.layer_statistics(record, previous_std=1.0)
    finite = outputs[np.isfinite(outputs)].astype(np.float64)
    assert stats.nonfinite_count == outputs.size - finite.size
    # abs=0: pytest.approx's default abs=1e-12 would pass any std of a collapsed layer.
    assert stats.mean == pytest.approx(finite.mean(), rel=1e-9, abs=0)
    assert stats.std == pytest.approx(finite.std(), rel=1e-9, abs=0)
    assert stats.std > 0
    doubled = (outputs * np.float32(2))[np.isfinite(outputs)].astype(np.float64)
    assert stats.pre_std == pytest.approx(doubled.std(), rel=1e-9, abs=0)
    assert (stats.min, stats.max) == (finite.min(), finite.max())
    assert stats.zero_fraction == np.count_nonzero(outputs == 0) / outputs.size
    assert stats.dead_fraction == np.count_nonzero(~np.any(outputs != 0, axis=0)) / 64
    finite32 = outputs[np.isfinite(outputs)]  # saturation counts among the finite values
    saturated = (finite32 <= np.float32(-0.99)) | (finite32 >= np.float32(0.99))
    assert stats.saturation_fraction == np.count_nonzero(saturated) / finite32.size
    rows = np.where(np.isfinite(outputs), outputs, 0)
    assert stats.cosine == pytest.approx(_cosine_float64(rows), abs=1e-9)
    edges = np.linspace(finite.min(), finite.max(), HISTOGRAM_BUCKETS + 1)
    counts, _ = np.histogram(finite, bins=edges)
    # np.histogram computes bucket positions in float64, the statistics in float32: a value
    # on a bucket edge may land one bucket apart; the total is exact.
    assert stats.histogram.counts.sum() == finite.size
    assert np.abs(stats.histogram.counts - counts).sum() <= 2 * max(1, finite.size // 10_000)


def _cosine_float64(matrix):
    rows = matrix.astype(np.float64)
    norms = np.linalg.norm(rows, axis=1)
    units = rows[norms > 0] / norms[norms > 0, None]
    zero = int(np.count_nonzero(norms == 0))
    n = rows.shape[0]
    gram = units @ units.T
    return (gram.sum() - len(units) + zero * (zero - 1)) / (n * (n - 1))


# --------------------------------------------------------------------------------------
# Model structures
# --------------------------------------------------------------------------------------


def nested_model():
    inner = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, activation="relu", name="dense_3"),
         keras.layers.Dropout(0.5, name="drop")],
        name="inner",
    )
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="tanh", name="first")(inputs)
    hidden = inner(hidden)
    outputs = keras.layers.Dense(1, name="last")(hidden)
    return keras.Model(inputs, outputs)


def test_nested_model_paths_and_order():
    x, _ = batch(32)
    stats = keras_inits.activation_statistics(nested_model(), x)
    assert list(stats) == ["first", "inner/dense_3", "last"]
    assert stats["inner/dense_3"].path == "inner/dense_3"


def test_layers_argument_by_path_class_and_predicate():
    x, _ = batch(32)
    model = nested_model()
    by_path = keras_inits.activation_statistics(model, x, layers=["inner/dense_3", "last"])
    assert list(by_path) == ["inner/dense_3", "last"]
    by_class = keras_inits.activation_statistics(model, x, layers=keras.layers.Dropout)
    assert list(by_class) == ["inner/drop"]
    by_predicate = keras_inits.activation_statistics(
        model, x, layers=lambda layer: layer.name.startswith("f")
    )
    assert list(by_predicate) == ["first"]
    nested_container = keras_inits.activation_statistics(model, x, layers=["inner"])
    assert list(nested_container) == ["inner"]


def test_unknown_layer_name_lists_the_available_ones():
    x, _ = batch(8)
    expected = r"Unknown layer 'nope'.*'inner/dense_3'.*Received: layers=\['nope'\]"
    with pytest.raises(ValueError, match=expected):
        keras_inits.activation_statistics(nested_model(), x, layers=["nope"])


class Reversed(keras.Model):
    """Attributes assigned in the opposite order of the calls."""

    def __init__(self):
        super().__init__(name="reversed")
        self.late = keras.layers.Dense(3, name="late")
        self.act = keras.layers.Activation("tanh", name="act")
        self.early = keras.layers.Dense(5, activation="relu", name="early")

    def call(self, inputs, training=False):
        return self.late(self.act(self.early(inputs)))


def test_subclassed_model_in_call_order_even_unbuilt():
    x, _ = batch(32)
    model = Reversed()  # never called: the probe builds it first
    stats = keras_inits.activation_statistics(model, x)
    assert list(stats) == ["early", "act", "late"]
    # An Activation layer's pre-activation is its input.
    assert stats["act"].pre_std == pytest.approx(stats["early"].std, rel=1e-5)


class TwoOutputs(keras.layers.Layer):
    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")

    def call(self, inputs):
        projected = keras.ops.matmul(inputs, self.kernel)
        return projected, keras.ops.tanh(projected) * 5.0


def test_layer_with_two_outputs_is_measured_over_both():
    x, _ = batch(32)
    layer = TwoOutputs(name="two")
    inputs = keras.Input((6,))
    first, second = layer(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate()([first, second]))
    a, b = (keras.ops.convert_to_numpy(t) for t in layer(x))
    stats = keras_inits.activation_statistics(model, x)["two"]
    both = np.concatenate([a, b], axis=1)
    assert stats.std == pytest.approx(both.std(), rel=1e-5)
    assert stats.cosine == pytest.approx(brute_force_cosine(both), abs=1e-5)
    assert stats.num_values == both.size


def test_layer_called_twice_is_measured_on_its_first_call():
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((6,))
    first = shared(inputs)
    second = shared(keras.layers.Lambda(lambda t: t * 10.0)(inputs))
    model = keras.Model(inputs, keras.layers.Add()([first, second]))
    x, _ = batch(32)
    records = _probe.run_probe(model, x, ["shared"])
    assert records["shared"].call_count == 2
    expected = keras.ops.convert_to_numpy(shared(x))
    np.testing.assert_allclose(records["shared"].outputs[0], expected, rtol=1e-6)
    stats = keras_inits.activation_statistics(model, x, layers=["shared"])
    assert stats["shared"].std == pytest.approx(expected.std(), rel=1e-5)


def test_mixed_precision_statistics_in_float32():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = mlp(widths=(32, 16))
        x, _ = batch(64)
        records = _probe.run_probe(model, x)
        stats = keras_inits.activation_statistics(model, x)
        reference = model.layers[0].compute_dtype
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert reference == "float16"
    assert all(r.outputs[0].dtype == np.float32 for r in records.values())
    first = stats["dense_0"]
    read = backend.current().to_numpy
    kernel = read(model.layers[0].kernel)
    pre = x @ kernel + read(model.layers[0].bias)
    assert first.pre_std == pytest.approx(pre.std(), rel=5e-3)
    assert first.std == pytest.approx(np.tanh(pre).std(), rel=5e-3)
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.scalars().values())


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------


@pytest.mark.backends("tensorflow")
def test_gradients_match_a_direct_gradient_tape():
    import tensorflow as tf

    x, y = batch(64)
    model = mlp(widths=(12,))
    model.compile(optimizer="sgd", loss="mse")
    stats = keras_inits.activation_statistics(model, x, y=y, gradients=True)

    hidden_layer, out_layer = model.layers
    with tf.GradientTape(persistent=True) as tape:
        hidden = hidden_layer(x)
        tape.watch(hidden)
        prediction = out_layer(hidden)
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, prediction))
    grad_hidden = tape.gradient(loss, hidden).numpy()
    grad_kernel = tape.gradient(loss, hidden_layer.kernel).numpy()

    assert stats["dense_0"].grad_std == pytest.approx(grad_hidden.std(), rel=1e-4)
    assert stats["dense_0"].kernel_grad_std == pytest.approx(grad_kernel.std(), rel=1e-4)
    histogram = stats["dense_0"].grad_histogram
    expected_counts, expected_edges = np.histogram(grad_hidden, bins=len(histogram.counts))
    np.testing.assert_allclose(histogram.edges, expected_edges, rtol=1e-5, atol=1e-12)
    assert abs(histogram.counts - expected_counts).sum() <= 2  # float32 rounding at bucket edges
    assert histogram.counts.sum() == grad_hidden.size
    assert keras_inits.activation_statistics(model, x)["dense_0"].grad_histogram is None
    assert "grad_std" in stats["out"].scalars()

    explicit = keras_inits.activation_statistics(model, x, y=y, gradients=True, loss="mae")
    assert explicit["dense_0"].grad_std != pytest.approx(stats["dense_0"].grad_std)


def test_gradients_of_activation_layer_without_kernel():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Activation("tanh", name="act"),
                              keras.layers.Dense(1, name="out")])
    x, y = batch(16)
    stats = keras_inits.activation_statistics(model, x, y=y, gradients=True, loss="mse")
    assert stats["act"].kernel_grad_std is None
    assert stats["act"].grad_std > 0.0


def test_gradients_need_targets_and_a_loss():
    x, y = batch(8)
    model = mlp()
    with pytest.raises(ValueError, match="Received: y=None"):
        keras_inits.activation_statistics(model, x, gradients=True)
    with pytest.raises(ValueError, match="Received: loss=None"):
        keras_inits.activation_statistics(model, x, y=y, gradients=True)


# --------------------------------------------------------------------------------------
# The probe changes nothing
# --------------------------------------------------------------------------------------


def test_probe_leaves_weights_seeds_and_batchnorm_untouched():
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.5, seed=3),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
    x, y = batch(32)
    before = weights_of(model)
    read = backend.current().to_numpy
    states_before = [read(v).copy() for v in model.non_trainable_variables]
    for training in (False, True):
        keras_inits.activation_statistics(model, x, y=y, gradients=True, training=training)
    after = weights_of(model)
    states_after = [read(v).copy() for v in model.non_trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert any(v.path.endswith("seed_generator_state") for v in model.non_trainable_variables)
    assert all(np.array_equal(a, b) for a, b in zip(states_before, states_after))
    assert all("call" not in vars(layer) for layer in model.layers)
    assert all(vars(layer).get("activation") in (None, keras.activations.relu,
                                                  keras.activations.linear)
               for layer in model.layers if "activation" in vars(layer))


def test_training_mode_runs_dropout():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dropout(0.5, seed=1, name="drop")])
    x, _ = batch(64)
    inference = keras_inits.activation_statistics(model, x, layers=["drop"])["drop"]
    training = keras_inits.activation_statistics(model, x, layers=["drop"], training=True)["drop"]
    assert inference.zero_fraction == 0.0
    assert 0.3 < training.zero_fraction < 0.7


class Exploding(keras.layers.Layer):
    def call(self, inputs):
        raise RuntimeError("boom")


def test_wrappers_are_removed_when_the_forward_pass_fails():
    dense = keras.layers.Dense(4, activation="tanh", name="dense")
    model = keras.Sequential([keras.Input((6,)), dense])
    original_activation = dense.activation
    x, _ = batch(4)
    with pytest.raises(RuntimeError):
        with _probe.LayerProbe({"dense": dense}):
            dense(x)
            raise RuntimeError("interrupted")
    assert "call" not in vars(dense)
    assert dense.activation is original_activation
    assert keras_inits.activation_statistics(model, x)["dense"].std > 0


def test_layer_probe_records_pre_activations_for_reuse():
    model = mlp(widths=(5,))
    x, _ = batch(16)
    layers = _probe.select_layers(model)
    with _probe.LayerProbe(layers) as probe:
        model(x, training=False)
    record = probe.records["dense_0"]
    kernel, bias = model.layers[0].get_weights()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(record.pre_activations[0]), x @ kernel + bias, rtol=1e-5, atol=1e-6
    )
    assert list(probe.records) == ["dense_0", "out"]
    assert probe.records["out"].pre_activations is None  # linear: nothing swapped


def test_run_probe_reduces_each_record_in_order_and_drops_it():
    """Without gradients a record reaches ``on_record`` in completion order, as float32 NumPy:
    as soon as its layer has run on the synchronous backends, once the next two monitored
    layers have been called (or the pass has ended) on JAX, as read-only views there; a
    record whose arrays ``on_record`` dropped stays dropped, so at most one (JAX: three)
    layers' outputs are held."""
    model = mlp(widths=(8, 7, 6))
    x, _ = batch(16)
    layers = _probe.select_layers(model)
    ran: list[str] = []
    for path, layer in layers.items():

        def logging_call(*args, _path=path, _call=layer.call, **kwargs):
            ran.append(_path)
            return _call(*args, **kwargs)

        object.__setattr__(layer, "call", logging_call)
    seen: list[tuple[str, list[str], list[str]]] = []

    def on_record(record):
        assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in record.outputs)
        assert all(a.dtype == np.float32 for a in record.pre_activations or ())
        writable = {a.flags.writeable for a in record.outputs + (record.pre_activations or ())}
        seen.append((record.path, list(ran), writable))
        record.outputs = ()
        record.pre_activations = None

    try:
        records = _probe.run_probe(model, x, layers, on_record=on_record)
    finally:
        for path, layer in layers.items():
            object.__delattr__(layer, "call")
    order = ["dense_0", "dense_1", "dense_2", "out"]
    assert [path for path, _, _ in seen] == order
    on_jax = keras.backend.backend() == "jax"
    assert bool(backend.current().ASYNC_DISPATCH) == on_jax
    behind = 2 if on_jax else 0
    for index, (path, ran_then, writable) in enumerate(seen):
        # JAX: reduced once the next two layers had been called (the last ones after the
        # pass), from views of JAX's immutable buffers; elsewhere copies.
        assert ran_then == order[: min(index + 1 + behind, len(order))]
        assert writable == {not on_jax}
    assert all(record.outputs == () for record in records.values())


class _AddOneInPlace(keras.layers.Layer):
    """Adds 1 to its input in place on torch (out of place elsewhere, where tensors are
    immutable): a later layer writing into an earlier layer's output."""

    def call(self, inputs):
        if keras.backend.backend() == "torch":
            return inputs.add_(1.0)
        return inputs + 1.0


def test_statistics_of_a_layer_are_taken_before_a_later_layer_writes_into_its_output():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, name="hidden",
                                kernel_initializer=keras.initializers.GlorotNormal(seed=1))(inputs)
    shifted = _AddOneInPlace()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(shifted))
    x, _ = batch(32)
    kernel, bias = model.get_layer("hidden").get_weights()
    expected = x @ kernel + bias
    stats = keras_inits.activation_statistics(model, x, layers=["hidden", "out"])
    assert stats["hidden"].mean == pytest.approx(float(expected.astype(np.float64).mean()), abs=1e-5)
    assert stats["hidden"].std == pytest.approx(float(expected.astype(np.float64).std()), rel=1e-5)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_wrong_input_shape_names_the_expected_shape():
    x = np.zeros((8, 5), dtype="float32")
    expected = r"expected shape \(None, 6\).*Received: x with shape \(8, 5\)"
    with pytest.raises(ValueError, match=expected):
        keras_inits.activation_statistics(mlp(), x)


def test_wrong_input_shape_on_subclassed_model_is_a_short_value_error():
    model = Reversed()
    model(np.zeros((2, 6), "float32"))
    expected = (r"could not run on the probe batch: ValueError: Input 0 .* expected axis -1 "
                r"of input shape to have value 6.*Received: x with shape\(s\) \(4, 3\)")
    with pytest.raises(ValueError, match=expected):
        keras_inits.activation_statistics(model, np.zeros((4, 3), "float32"))


def test_empty_batch_is_rejected():
    with pytest.raises(ValueError, match=r"empty batch.*Received: x with shape \(0, 6\)"):
        keras_inits.activation_statistics(mlp(), np.zeros((0, 6), "float32"))


def test_model_without_layers_to_monitor_is_rejected():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dropout(0.1), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="no layer to monitor"):
        keras_inits.activation_statistics(model, np.zeros((4, 6), "float32"))


def test_layer_probe_can_stop_the_forward_pass_after_a_layer():
    from keras_inits._probe import LayerProbe, select_layers

    model = mlp(widths=(8, 8))
    layers = select_layers(model)
    first, *rest = layers
    calls = []
    original_call = model.layers[-1].call
    object.__setattr__(model.layers[-1], "call", lambda *a, **k: calls.append(1) or original_call(*a, **k))
    try:
        with LayerProbe(layers, stop_after=first) as probe:
            model(batch(4)[0])
    finally:
        object.__delattr__(model.layers[-1], "call")
    assert list(probe.records) == [first]
    assert calls == []  # the last layer never ran
    assert "call" not in vars(model.layers[0])  # wrappers restored
    with pytest.raises(ValueError, match="stop_after"):
        LayerProbe(layers, stop_after="nope")
