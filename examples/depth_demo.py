"""Variance kept vs lost: a 50-layer, width-256 MLP under Keras's default and keras_inits.He.

For relu, tanh and gelu, the same network is built three ways: with Keras's default
``glorot_uniform`` kernels, with ``keras_inits.He(activation=...)``, and with He followed
by ``keras_inits.lsuv`` (for gelu, whose variance map is unstable, no formula can hold the
variance over 50 layers; a measured rescale can). A probe batch of N(0, 1) inputs goes
through each, and the pre-activation std of every layer (the quantity the He/Xavier
derivation preserves) is measured with ``keras_inits.activation_statistics``.

Outputs (under ``--out``, default ``runs/depth_demo``):

- a table of the std at layers 1, 10, 25 and 50 (printed);
- ``depth_profile.png``: std against depth, one panel per activation;
- one TensorBoard run per (activation, initializer) under ``tensorboard/``: the per-layer
  statistics in its ``activations`` folder, written by ``keras_inits.ActivationStatistics``
  at step 0 and after one short epoch, and in the run folder itself the HParams record
  (activation, initializer, lsuv, depth, width, samples, seed, backend) with the run's results
  (``result/...`` scalars), so that TensorBoard's HParams tab compares the nine runs.

It runs on every Keras backend (``KERAS_BACKEND=tensorflow|jax|torch``).

Run it with ``make demo`` or ``python examples/depth_demo.py --help``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402

import _hparams  # noqa: E402

ACTIVATIONS = ("relu", "tanh", "gelu")
REPORTED_LAYERS = (1, 10, 25, 50)
TENSORBOARD_SUBDIRECTORY = "tensorboard"
METRIC_DESCRIPTIONS = {
    "result/pre_std_first": "std of the first layer's pre-activations, at init",
    "result/pre_std_last": "std of the last hidden layer's pre-activations, at init",
    "result/last_over_first": "pre-activation std, last hidden layer / first, at init",
    "result/cosine_last": "mean pairwise cosine of the samples at the last hidden layer, at init "
    "(1: every input mapped to the same direction)",
}


def build_mlp(activation: str, make_initializer, depth: int, width: int, seed: int) -> keras.Model:
    """A plain MLP: ``depth`` Dense layers of ``width`` units with a fused activation.

    Every layer gets its own initializer from ``make_initializer(index)``: in Keras 3 one
    instance shared by several layers gives them identical kernels.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(width,))
    hidden = inputs
    for index in range(depth):
        hidden = keras.layers.Dense(
            width,
            activation=activation,
            kernel_initializer=make_initializer(index),
            name=f"dense_{index + 1}",
        )(hidden)
    outputs = keras.layers.Dense(10, name="logits")(hidden)
    return keras.Model(inputs, outputs, name=f"mlp_{activation}")


def initializers_for(activation: str, seed: int) -> dict[str, tuple[object, bool]]:
    """The starts compared: a per-layer initializer factory, and whether lsuv runs after it."""
    keras_default = lambda index: keras.initializers.GlorotUniform(seed=seed * 1000 + index)  # noqa: E731
    he = lambda index: keras_inits.He(activation=activation, seed=seed * 1000 + index)  # noqa: E731
    return {
        "glorot_uniform": (keras_default, False),
        "keras_inits.He": (he, False),
        "He + lsuv": (he, True),
    }


def hidden_layer_names(depth: int) -> list[str]:
    return [f"dense_{index + 1}" for index in range(depth)]


def measure(model: keras.Model, probe: np.ndarray, depth: int) -> tuple[np.ndarray, float]:
    """Per-layer std of the pre-activations (layers 1..depth), and the last layer's cosine."""
    names = hidden_layer_names(depth)
    statistics = keras_inits.activation_statistics(model, probe, layers=names)
    return np.array([statistics[name].pre_std for name in names]), float(statistics[names[-1]].cosine)


def run_name(activation: str, start: str) -> str:
    """A folder name for one TensorBoard run: ``gelu-He_lsuv``."""
    slug = "".join(character if character.isalnum() or character in "._" else "_" for character in start)
    return f"{activation}-{'_'.join(part for part in slug.split('_') if part)}"


def run_record(
    activation: str, start: str, with_lsuv: bool, stds: np.ndarray, cosine: float, args: argparse.Namespace
) -> _hparams.RunRecord:
    """The HParams record of one run: how it was built, and what it measured.

    Every setting goes in; ``_hparams`` keeps as hparams the ones that vary over the runs.
    """
    hparams = {
        "activation": activation,
        "initializer": start,
        "lsuv": with_lsuv,
        "depth": args.depth,
        "width": args.width,
        "samples": args.samples,
        "seed": args.seed,
        "backend": keras.backend.backend(),
    }
    metrics = {
        "result/pre_std_first": float(stds[0]),
        "result/pre_std_last": float(stds[-1]),
        "result/last_over_first": float(stds[-1] / stds[0]),
        "result/cosine_last": cosine,
    }
    return _hparams.RunRecord(run_name(activation, start), hparams, metrics)


def write_tensorboard_run(model: keras.Model, probe: np.ndarray, log_dir: Path, seed: int) -> None:
    """One short epoch of training with the statistics callback: step 0 is the init itself."""
    rng = np.random.default_rng(seed)
    x_train = rng.standard_normal((512, probe.shape[1])).astype("float32")
    y_train = rng.integers(0, 10, size=512)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callback = keras_inits.ActivationStatistics(str(log_dir), probe, images=True)
    model.fit(x_train, y_train, batch_size=128, epochs=1, verbose=0, callbacks=[callback])


def format_table(results: dict[tuple[str, str], np.ndarray], reported_layers: tuple[int, ...]) -> str:
    """Std at the reported layers, and the ratio last layer / first layer."""
    header = f"{'activation':<10} {'initializer':<16}" + "".join(
        f"{f'layer {layer}':>12}" for layer in reported_layers
    ) + f"{'last / 1':>12}"
    lines = [header, "-" * len(header)]
    for (activation, name), stds in results.items():
        cells = "".join(f"{stds[layer - 1]:>12.3g}" for layer in reported_layers)
        lines.append(f"{activation:<10} {name:<16}{cells}{stds[-1] / stds[0]:>12.3g}")
    return "\n".join(lines)


def plot(results: dict[tuple[str, str], np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(ACTIVATIONS), figsize=(4.2 * len(ACTIVATIONS), 3.6), sharey=True)
    for axis, activation in zip(axes, ACTIVATIONS):
        for (result_activation, name), stds in results.items():
            if result_activation != activation:
                continue
            depth = np.arange(1, len(stds) + 1)
            axis.semilogy(depth, np.maximum(stds, 1e-30), marker=".", label=name)
        axis.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axis.set_title(activation)
        axis.set_xlabel("layer")
        axis.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("std of pre-activations")
    axes[0].legend(loc="lower left")
    figure.suptitle("Variance through depth: Keras default, keras_inits.He, He + lsuv")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=50, help="hidden layers (default 50)")
    parser.add_argument("--width", type=int, default=256, help="units per layer (default 256)")
    parser.add_argument("--samples", type=int, default=512, help="probe batch size (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/depth_demo"), help="output folder")
    parser.add_argument("--no-tensorboard", action="store_true", help="skip the TensorBoard runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[tuple[str, str], np.ndarray]:
    args = parse_args(argv)
    reported_layers = tuple(layer for layer in REPORTED_LAYERS if layer < args.depth) + (args.depth,)
    tensorboard_directory = args.out / TENSORBOARD_SUBDIRECTORY
    args.out.mkdir(parents=True, exist_ok=True)
    # A second run must not append a second set of events to the same TensorBoard runs.
    shutil.rmtree(tensorboard_directory, ignore_errors=True)
    probe = np.random.default_rng(args.seed).standard_normal((args.samples, args.width)).astype("float32")

    results: dict[tuple[str, str], np.ndarray] = {}
    records = []
    for activation in ACTIVATIONS:
        for name, (make_initializer, with_lsuv) in initializers_for(activation, args.seed).items():
            model = build_mlp(activation, make_initializer, args.depth, args.width, args.seed)
            if with_lsuv:
                keras_inits.lsuv(model, probe, layers=hidden_layer_names(args.depth), seed=args.seed)
            stds, cosine = measure(model, probe, args.depth)
            results[(activation, name)] = stds
            records.append(run_record(activation, name, with_lsuv, stds, cosine, args))
            if not args.no_tensorboard:
                run = tensorboard_directory / run_name(activation, name)
                write_tensorboard_run(model, probe, run, args.seed)
    if not args.no_tensorboard:
        _hparams.write_hparams(tensorboard_directory, records, METRIC_DESCRIPTIONS)

    print(
        f"std of pre-activations, width {args.width}, N(0, 1) inputs, {args.samples} samples, "
        f"{keras.backend.backend()} backend"
    )
    print(format_table(results, reported_layers))
    figure_path = args.out / "depth_profile.png"
    plot(results, figure_path)
    print(f"\nfigure: {figure_path.resolve()}")
    if not args.no_tensorboard:
        print(f"TensorBoard runs: tensorboard --logdir {tensorboard_directory.resolve()}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
