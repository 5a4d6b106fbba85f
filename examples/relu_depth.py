"""ReLU and GELU at depth: Xavier fades, He holds, and GELU needs its own gain.

A plain MLP of ``--depth`` layers of ``--width`` units receives a batch of N(0, 1) inputs, and the
std of every layer's pre-activations (the quantity the He/Xavier derivation keeps constant) is
measured at initialization with ``keras_inits.activation_statistics``. The first layer sees the
raw N(0, 1) inputs, not an activation's output, so it is ``He("linear")`` (Var(W) = 1 / fan_in) in
every network: a gain belongs to the activation that *feeds* a layer. The networks differ from
layer 2 on:

- ReLU with ``keras_inits.Xavier()`` (Glorot's Var(W) = 2 / (fan_in + fan_out), derived for a
  linear/tanh unit): ReLU zeroes half of its input, so with fan_in = fan_out every layer halves the
  variance and the std fades as 2^(-depth/2).
- ReLU with ``keras_inits.He("relu")`` (Var(W) = 2 / fan_in): the factor 2 exactly makes up for
  the halving; the std holds (up to the random spread of a finite width).
- GELU with ``Xavier()``: fades even faster than ReLU.
- GELU with ``He("relu")``: GELU keeps less of its input than ReLU (E[gelu(z)^2] = 0.425 against
  0.5 for z ~ N(0, 1)), so the relu gain lets the std decay: slowly at first, then the variance
  halves every layer once the signal is small (GELU is ~z/2 near 0).
- GELU with ``He("gelu")``: the gain computed from GELU itself, g = 1 / sqrt(E[gelu(z)^2]) = 1.53,
  holds the std. GELU's variance map has a slope slightly above 1 at q = 1 (1.14), so over many
  layers even the exact gain drifts slowly upward (see ``examples/depth_demo.py`` at depth 50).

Reference: K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers: Surpassing
Human-Level Performance on ImageNet Classification", ICCV 2015.

Outputs (under ``--out``): ``relu_depth.png`` (std against depth), a printed table, and one
TensorBoard run per (activation, initializer) with the step-0 statistics and the HParams tags.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
import numpy as np

import keras_inits


EXAMPLE_NAME = "relu_depth"
ACTIVATIONS = ("relu", "gelu")
# Layers shown in the printed table (besides the last one).
REPORTED_LAYERS = (1, 5, 10)
METRIC_DESCRIPTIONS = {
    "result/pre_std_last_over_first": "pre-activation std of the last layer / the first, at init",
    "result/pre_std_last": "pre-activation std of the last layer, at init",
}


@dataclass(frozen=True)
class Configuration:
    """One network of the comparison: its activation and the initializer of layers 2..depth."""

    activation: str
    init_label: str
    factory: _common.InitializerFactory

    @property
    def key(self) -> str:
        return f"{self.activation}-{_common.slug(self.init_label)}"


def xavier(fan_in: int, seed: int) -> keras_inits.Xavier:
    return keras_inits.Xavier(seed=seed)


def he_relu(fan_in: int, seed: int) -> keras_inits.He:
    return keras_inits.He("relu", seed=seed)


def he_gelu(fan_in: int, seed: int) -> keras_inits.He:
    return keras_inits.He("gelu", seed=seed)


def input_layer_initializer(fan_in: int, seed: int) -> keras_inits.He:
    """The first layer sees the N(0, 1) inputs, not an activation's output: Var(W) = 1/fan_in."""
    return keras_inits.He("linear", seed=seed)


CONFIGURATIONS = (
    Configuration("relu", "Xavier", xavier),
    Configuration("relu", "He(relu)", he_relu),
    Configuration("gelu", "Xavier", xavier),
    Configuration("gelu", "He(relu)", he_relu),
    Configuration("gelu", "He(gelu)", he_gelu),
)


def parse_args(argv: list[str] | None) -> Any:
    parser = _common.make_parser(EXAMPLE_NAME, __doc__)
    parser.add_argument("--depth", type=int, default=20, help="number of hidden layers")
    parser.add_argument("--width", type=int, default=256, help="units per layer and inputs")
    parser.add_argument("--samples", type=int, default=512, help="N(0, 1) probe batch size")
    return parser.parse_args(argv)


def measure(configuration: Configuration, args: Any, probe: np.ndarray) -> tuple[Any, list[float]]:
    """Build one network; return it with the pre-activation std of each hidden layer."""
    model = _common.build_mlp(
        args.width,
        [args.width] * args.depth,
        configuration.activation,
        configuration.factory,
        seed=args.seed,
        output_units=None,
        input_kernel_initializer=input_layer_initializer,
        name=configuration.key,
    )
    hidden_layers = _common.hidden_layer_names(model)
    statistics = keras_inits.activation_statistics(model, probe, layers=hidden_layers)
    return model, [layer.pre_std for layer in statistics.values()]


def plot(results: dict[str, list[float]], depth: int, width: int, path: Path) -> Path:
    plt = _common.pyplot()
    panels = len(ACTIVATIONS)
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), sharey=True)
    layer_numbers = np.arange(1, depth + 1)
    for axis, activation in zip(axes, ACTIVATIONS):
        for configuration in CONFIGURATIONS:
            if configuration.activation != activation:
                continue
            stds = _common.on_log_axis(results[configuration.key])
            axis.semilogy(layer_numbers, stds, marker=".", label=configuration.init_label)
        axis.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axis.set_title(activation)
        axis.set_xlabel("layer")
        axis.xaxis.set_major_locator(_common.integer_ticks())
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(loc="lower left")
    axes[0].set_ylabel("std of pre-activations")
    figure.suptitle(f"Variance through depth at initialization: width {width}, N(0, 1) inputs")
    return _common.save_figure(figure, path)


def table(results: dict[str, list[float]], depth: int) -> str:
    reported = [layer for layer in REPORTED_LAYERS if layer < depth] + [depth]
    header = ["activation", "init"] + [f"layer {layer}" for layer in reported] + ["last / first"]
    rows = []
    for configuration in CONFIGURATIONS:
        stds = results[configuration.key]
        cells = [stds[layer - 1] for layer in reported]
        ratio = stds[-1] / stds[0]
        rows.append([configuration.activation, configuration.init_label, *cells, ratio])
    return _common.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment.

    Returns:
        ``{"pre_std": {key: per-layer list}, "ratio": {key: last / first}, "figures", "runs"}``
        with keys ``relu-Xavier``, ``relu-He_relu``, ``gelu-Xavier``, ``gelu-He_relu`` and
        ``gelu-He_gelu``.
    """
    args = parse_args(argv)
    _common.prepare_output(args.out)
    probe = _common.gaussian_probe(args.samples, args.width, args.seed)

    results: dict[str, list[float]] = {}
    records = []
    for configuration in CONFIGURATIONS:
        model, stds = measure(configuration, args, probe)
        results[configuration.key] = stds
        run_dir = _common.run_directory(args.out, configuration.key)
        _common.write_initial_statistics(model, run_dir, probe)
        hparams = {
            "init": configuration.init_label,
            "activation": configuration.activation,
            "depth": args.depth,
            "width": args.width,
        }
        metrics = {
            "result/pre_std_last_over_first": stds[-1] / stds[0],
            "result/pre_std_last": stds[-1],
        }
        records.append(_common.RunRecord(configuration.key, hparams, metrics))
    runs = _common.write_hparams(args.out, records, METRIC_DESCRIPTIONS)

    print(f"std of pre-activations, {args.depth} layers of {args.width} units, "
          f"{args.samples} N(0, 1) inputs; layer 1 is He('linear') in every network")
    print(table(results, args.depth))
    figure = plot(results, args.depth, args.width, args.out / f"{EXAMPLE_NAME}.png")
    _common.print_outputs(args.out, [figure])
    ratios = {key: stds[-1] / stds[0] for key, stds in results.items()}
    return {"pre_std": results, "ratio": ratios, "figures": [figure], "runs": runs}


if __name__ == "__main__":
    main(sys.argv[1:])
