"""Ten tanh layers: too-small weights collapse the signal, too-large ones saturate, Xavier keeps it.

The classic demonstration (Glorot & Bengio 2010, and the CS231n "weight initialization" notes):
a plain MLP of ``--depth`` tanh layers of ``--width`` units receives a batch of N(0, 1) inputs,
and the distribution of every layer's activations is measured at initialization with
``keras_inits.activation_statistics``. Three kernel initializers:

- ``small``: N(0, 0.01^2) (``keras_inits.ScaledRandom(0.01)``). Each layer multiplies the std by
  about ``0.01 * sqrt(width)`` (0.22 for width 500), so by layer 10 the activations are all ~0
  and so are the gradients.
- ``normal``: N(0, 1) (``keras_inits.ScaledRandom(1.0)``). Pre-activations have std ~sqrt(width),
  so almost every unit sits at -1 or +1 where tanh's derivative vanishes.
- ``xavier``: ``keras_inits.Xavier()``, Var(W) = 2 / (fan_in + fan_out). The activations keep a
  spread-out distribution through all the layers.

Reference: X. Glorot and Y. Bengio, "Understanding the difficulty of training deep feedforward
neural networks", AISTATS 2010.

Outputs (under ``--out``): ``tanh_depth.png`` (per-layer mean and std, and per-layer histograms,
one row per initializer), a printed table, and one TensorBoard run per initializer with the step-0
statistics and the HParams tags.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import _common
import numpy as np

import keras_inits

EXAMPLE_NAME = "tanh_depth"
ACTIVATION = "tanh"
SMALL_SCALE = 0.01
LARGE_SCALE = 1.0
# Half width of a layer's horizontal histogram in the figure, in units of the layer axis.
VIOLIN_HALF_WIDTH = 0.42
ACTIVATION_AXIS_LIMIT = 1.05
METRIC_DESCRIPTIONS = {
    "result/std_last_over_first": "activation std of the last layer / the first, at init",
    "result/saturation_last": "share of last-layer activations with |a| >= 0.99, at init",
}


def small_normal(fan_in: int, seed: int) -> keras_inits.ScaledRandom:
    return keras_inits.ScaledRandom(scale=SMALL_SCALE, distribution="normal", seed=seed)


def unit_normal(fan_in: int, seed: int) -> keras_inits.ScaledRandom:
    return keras_inits.ScaledRandom(scale=LARGE_SCALE, distribution="normal", seed=seed)


def xavier(fan_in: int, seed: int) -> keras_inits.Xavier:
    return keras_inits.Xavier(seed=seed)


INITIALIZERS: dict[str, tuple[str, _common.InitializerFactory]] = {
    "small": ("N(0, 0.01^2)", small_normal),
    "normal": ("N(0, 1)", unit_normal),
    "xavier": ("Xavier", xavier),
}


def parse_args(argv: list[str] | None) -> Any:
    parser = _common.make_parser(EXAMPLE_NAME, __doc__)
    parser.add_argument("--depth", type=int, default=10, help="number of tanh layers")
    parser.add_argument("--width", type=int, default=500, help="units per layer and inputs")
    parser.add_argument("--samples", type=int, default=1000, help="N(0, 1) probe batch size")
    return parser.parse_args(argv)


def measure(key: str, args: Any, probe: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """Build the net with one initializer and return it with its per-layer statistics."""
    _, factory = INITIALIZERS[key]
    model = _common.build_mlp(
        args.width,
        [args.width] * args.depth,
        ACTIVATION,
        factory,
        seed=args.seed,
        output_units=None,
        name=f"tanh_{key}",
    )
    hidden_layers = _common.hidden_layer_names(model)
    statistics = keras_inits.activation_statistics(model, probe, layers=hidden_layers)
    layers = list(statistics.values())
    result = {
        "mean": [layer.mean for layer in layers],
        "std": [layer.std for layer in layers],
        "saturation_fraction": [layer.saturation_fraction for layer in layers],
        "histograms": [(layer.histogram.counts, layer.histogram.edges) for layer in layers],
    }
    return model, result


def plot_layer_distributions(axis: Any, histograms: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """One horizontal histogram per layer, side by side (a violin plot built from the histograms).

    Each layer's shape is scaled to the same maximal width, while the value axis stays in absolute
    units, so a collapsing signal shows as shapes shrinking to a line at 0.
    """
    colors = _common.depth_colors(len(histograms))
    for layer_number, ((counts, edges), color) in enumerate(zip(histograms, colors), start=1):
        counts = np.asarray(counts, dtype="float64")
        peak = counts.max()
        half_widths = VIOLIN_HALF_WIDTH * counts / peak if peak > 0 else counts
        levels = np.repeat(np.asarray(edges), 2)[1:-1]
        widths = np.repeat(half_widths, 2)
        left = layer_number - widths
        right = layer_number + widths
        axis.fill_betweenx(levels, left, right, color=color, alpha=0.8)
    axis.set_xticks(np.arange(1, len(histograms) + 1))
    axis.set_ylim(-ACTIVATION_AXIS_LIMIT, ACTIVATION_AXIS_LIMIT)


def plot(results: dict[str, dict[str, Any]], depth: int, path: Path) -> Path:
    plt = _common.pyplot()
    rows = len(results)
    figure, axes = plt.subplots(rows, 2, figsize=(10, 2.7 * rows), squeeze=False)
    layer_numbers = np.arange(1, depth + 1)
    for row, (key, result) in enumerate(results.items()):
        label = INITIALIZERS[key][0]
        profile_axis = axes[row][0]
        stds = _common.on_log_axis(result["std"])
        absolute_means = _common.on_log_axis(np.abs(result["mean"]))
        profile_axis.semilogy(layer_numbers, stds, marker="o", label="std")
        profile_axis.semilogy(
            layer_numbers, absolute_means, marker="x", linestyle="--", label="|mean|"
        )
        profile_axis.set_title(f"{label}: std and |mean| of the activations")
        profile_axis.set_xticks(layer_numbers)
        profile_axis.grid(True, alpha=0.3)
        profile_axis.legend(loc="lower left", fontsize="small")
        distribution_axis = axes[row][1]
        plot_layer_distributions(distribution_axis, result["histograms"])
        distribution_axis.set_title(f"{label}: distribution of the activations")
        distribution_axis.set_ylabel("activation value")
        distribution_axis.grid(True, axis="y", alpha=0.3)
    axes[-1][0].set_xlabel("layer")
    axes[-1][1].set_xlabel("layer")
    figure.suptitle(f"{depth} tanh layers of N(0, 1) inputs, at initialization")
    return _common.save_figure(figure, path)


def table(results: dict[str, dict[str, Any]], depth: int) -> str:
    header = ["layer"]
    for key in results:
        header += [f"{key} mean", f"{key} std", f"{key} sat"]
    rows = []
    for index in range(depth):
        row: list[Any] = [index + 1]
        for result in results.values():
            row.append(result["mean"][index])
            row.append(result["std"][index])
            row.append(result["saturation_fraction"][index])
        rows.append(row)
    return _common.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment.

    Returns:
        ``{"inits": {key: result}, "figures": [paths], "runs": [run directories]}`` with keys
        ``small``, ``normal``, ``xavier``; each result holds the per-layer lists ``mean``,
        ``std``, ``saturation_fraction`` and ``histograms`` (``(counts, edges)`` pairs).
    """
    args = parse_args(argv)
    _common.prepare_output(args.out)
    probe = _common.gaussian_probe(args.samples, args.width, args.seed)

    results: dict[str, dict[str, Any]] = {}
    records = []
    for key, (label, _) in INITIALIZERS.items():
        model, result = measure(key, args, probe)
        results[key] = result
        _common.write_initial_statistics(model, _common.run_directory(args.out, key), probe)
        hparams = {
            "init": label,
            "activation": ACTIVATION,
            "depth": args.depth,
            "width": args.width,
        }
        metrics = {
            "result/std_last_over_first": result["std"][-1] / result["std"][0],
            "result/saturation_last": result["saturation_fraction"][-1],
        }
        records.append(_common.RunRecord(key, hparams, metrics))
    runs = _common.write_hparams(args.out, records, METRIC_DESCRIPTIONS)

    print(f"{args.depth} tanh layers of {args.width} units, {args.samples} N(0, 1) inputs")
    print(", ".join(f"{key} = {label}" for key, (label, _) in INITIALIZERS.items()))
    print("sat: share of activations with |a| >= 0.99")
    print(table(results, args.depth))
    figure = plot(results, args.depth, args.out / f"{EXAMPLE_NAME}.png")
    _common.print_outputs(args.out, [figure])
    return {"inits": results, "figures": [figure], "runs": runs}


if __name__ == "__main__":
    main(sys.argv[1:])
