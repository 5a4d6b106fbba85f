"""Quality benchmark: how well does each initialization keep the variance through depth?

A plain MLP of ``--width`` units (default 256) and ``--depth`` Dense layers (default 50; 100
too for relu and tanh) is fed a probe batch of N(0, 1) inputs. For each activation and each
initialization, over ``--seeds`` seeds (default 5), the table gives

    median [min, max] over seeds of pre_std(layer L) / pre_std(layer 1)

(pre_std: the std of a layer's output before its activation, the quantity the He/Xavier
derivation preserves) and the median over seeds of the mean pairwise cosine similarity of
the samples at layer L (1.0: every input mapped to the same vector).

Columns:

- ``keras glorot``: Keras's default ``glorot_uniform``;
- ``keras he_normal``: Keras's ``he_normal`` (the relu gain whatever the activation);
- ``torch gain``: PyTorch's convention, ``kaiming_normal_(nonlinearity=...)``, i.e.
  N(0, calculate_gain(phi)^2 / fan_in) where PyTorch has a gain (table below; no PyTorch
  dependency), ``n/a`` where it has none;
- ``He(phi)``: ``keras_inits.He(activation=phi)`` as every layer's kernel initializer;
- ``reinitialize``: ``keras_inits.reinitialize(model, "he")`` (each layer gets the gain of
  the activation that feeds it: linear for the first);
- ``lsuv``: ``keras_inits.lsuv(model, x)`` on top of the He model.

Then the backward side: the ratio grad_std(layer 1) / grad_std(layer L) of the gradient
with respect to each layer's output, for He ``mode="fan_in"`` against ``mode="fan_out"``.
The loss is a fixed random projection of the output, ``mean(r * output)`` with r ~ N(0, 1),
so the gradient arriving at layer L is noise independent of the forward pass and the ratio
measures how the backward pass alone scales it.

Runs on every Keras backend (``KERAS_BACKEND=tensorflow|jax|torch``; the gradients come from
that backend's autodiff).

Run: ``python benchmarks/depth.py`` (about 10 minutes on 2 cores; ``--quick``: depth 10,
2 seeds, no extra depth).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402

ACTIVATIONS = (
    "linear", "relu", "leaky_relu", "elu", "selu", "tanh",
    "sigmoid", "softplus", "gelu", "silu", "mish",
)
DEEP_ACTIVATIONS = ("relu", "tanh")
COLUMNS = ("keras glorot", "keras he_normal", "torch gain", "He(phi)", "reinitialize", "lsuv")

# torch.nn.init.calculate_gain, copied as numbers (PyTorch is not a dependency). Keras's
# leaky_relu has negative_slope 0.2, so the PyTorch gain is taken at a=0.2.
KERAS_LEAKY_SLOPE = 0.2
TORCH_GAINS = {
    "linear": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1.0 + KERAS_LEAKY_SLOPE**2)),
    "selu": 3.0 / 4.0,
}

STABLE = "stable"
NEUTRAL = "neutral"
UNSTABLE = "unstable"
SLOPE_TOLERANCE = 1e-3
REINITIALIZE_GOAL = (0.8, 1.25)
CELL = 27  # characters per table cell; cells are separated by two spaces
LSUV_GOAL = (0.95, 1.05)


def variance_map_kind(activation: str) -> str:
    slope = keras_inits.variance_slope(activation)
    if abs(slope - 1.0) < SLOPE_TOLERANCE:
        return NEUTRAL
    return STABLE if slope < 1.0 else UNSTABLE


def build_mlp(activation: str, depth: int, width: int, make_initializer) -> keras.Model:
    """``depth`` Dense layers; layer ``index`` gets ``make_initializer(index)`` (in Keras 3,
    one initializer instance shared by several layers gives them identical kernels)."""
    inputs = keras.Input(shape=(width,))
    hidden = inputs
    for index in range(depth):
        hidden = keras.layers.Dense(
            width, activation=activation, kernel_initializer=make_initializer(index), name=f"dense_{index + 1}"
        )(hidden)
    return keras.Model(inputs, hidden)


def layer_seed(seed: int, index: int) -> int:
    return seed * 10_000 + index


def make_model(column: str, activation: str, depth: int, width: int, seed: int, probe: np.ndarray):
    """The model of one table cell, or ``None`` where the column does not apply."""
    keras.utils.set_random_seed(seed)
    if column == "keras glorot":
        return build_mlp(activation, depth, width, lambda i: keras.initializers.GlorotUniform(seed=layer_seed(seed, i)))
    if column == "keras he_normal":
        return build_mlp(activation, depth, width, lambda i: keras.initializers.HeNormal(seed=layer_seed(seed, i)))
    if column == "torch gain":
        if activation not in TORCH_GAINS:
            return None
        std = TORCH_GAINS[activation] / math.sqrt(width)
        return build_mlp(
            activation, depth, width, lambda i: keras.initializers.RandomNormal(stddev=std, seed=layer_seed(seed, i))
        )
    he_model = build_mlp(activation, depth, width, lambda i: keras_inits.He(activation, seed=layer_seed(seed, i)))
    if column == "He(phi)":
        return he_model
    if column == "reinitialize":
        keras_inits.reinitialize(he_model, "he", seed=seed)
        return he_model
    if column == "lsuv":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keras_inits.lsuv(he_model, probe, seed=seed)
        return he_model
    raise ValueError(f"unknown column {column!r}")


def measure(model: keras.Model, probe: np.ndarray, depth: int) -> tuple[float, float]:
    """pre_std(layer depth) / pre_std(layer 1), and the cosine at layer ``depth``."""
    names = ["dense_1", f"dense_{depth}"]
    statistics = keras_inits.activation_statistics(model, probe, layers=names)
    first = statistics["dense_1"].pre_std
    last = statistics[f"dense_{depth}"]
    ratio = last.pre_std / first if first > 0 else float("nan")
    return ratio, last.cosine


def summarize(values: list[float]) -> str:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return "nan"
    return f"{np.median(finite):.3g} [{min(finite):.2g}, {max(finite):.2g}]"


def quality_table(args: argparse.Namespace, probe_by_seed: dict[int, np.ndarray]) -> dict:
    """Rows of (activation, depth) with, per column, the ratios and cosines over seeds."""
    rows = {}
    plan = [(activation, args.depth) for activation in args.activations]
    plan += [(activation, args.deep) for activation in DEEP_ACTIVATIONS if activation in args.activations and args.deep]
    for activation, depth in plan:
        row = {}
        for column in COLUMNS:
            ratios, cosines = [], []
            for seed, probe in probe_by_seed.items():
                model = make_model(column, activation, depth, args.width, seed, probe)
                if model is None:
                    break
                ratio, cosine = measure(model, probe, depth)
                ratios.append(ratio)
                cosines.append(cosine)
            row[column] = (ratios, cosines)
        rows[(activation, depth)] = row
        print(f"  measured {activation} at depth {depth}", file=sys.stderr, flush=True)
    return rows


def print_quality(rows: dict, width: int) -> None:
    print(
        f"\npre_std(layer L) / pre_std(layer 1), median [min, max] over seeds; width {width}, "
        f"{keras.backend.backend()} backend"
    )
    header = f"{'activation':<11}{'L':>4}  " + "  ".join(f"{column:<{CELL}}" for column in COLUMNS)
    print(header)
    print("-" * len(header))
    for (activation, depth), row in rows.items():
        cells = "  ".join(f"{summarize(row[column][0]) if row[column][0] else 'n/a':<{CELL}}" for column in COLUMNS)
        print(f"{activation:<11}{depth:>4}  {cells}")

    print("\nmean cosine similarity at layer L, median over seeds (1.0 = inputs collapsed)")
    print(header)
    print("-" * len(header))
    for (activation, depth), row in rows.items():
        cells = "  ".join(
            f"{np.median(row[column][1]):<{CELL}.3f}" if row[column][1] else f"{'n/a':<{CELL}}" for column in COLUMNS
        )
        print(f"{activation:<11}{depth:>4}  {cells}")


def print_goals(rows: dict) -> None:
    print("\ngoals")
    for (activation, depth), row in rows.items():
        kind = variance_map_kind(activation)
        reinit_ratios = row["reinitialize"][0]
        median = float(np.median(reinit_ratios))
        low, high = REINITIALIZE_GOAL
        if kind == STABLE:
            verdict = "met" if low <= median <= high else "NOT MET"
            print(f"  reinitialize {activation:<10} L={depth:<3} ({kind}): median {median:.3f} in [{low}, {high}]: {verdict}")
        else:
            print(
                f"  reinitialize {activation:<10} L={depth:<3} ({kind}): median {median:.3f}, "
                f"seed spread [{min(reinit_ratios):.3f}, {max(reinit_ratios):.3f}] (no goal: map not stable)"
            )
        lsuv_ratios = row["lsuv"][0]
        low, high = LSUV_GOAL
        verdict = "met" if all(low <= ratio <= high for ratio in lsuv_ratios) else "NOT MET"
        print(
            f"  lsuv         {activation:<10} L={depth:<3}: every seed in [{low}, {high}] "
            f"(got [{min(lsuv_ratios):.3f}, {max(lsuv_ratios):.3f}]): {verdict}"
        )


def random_projection_loss(projection, outputs):
    """``mean(r * output)``: its gradient at the output is ``r / size``, whatever the output."""
    return keras.ops.mean(keras.ops.multiply(projection, outputs))


def gradient_table(args: argparse.Namespace, probe_by_seed: dict[int, np.ndarray]) -> None:
    print(f"\nbackward: grad_std(layer 1) / grad_std(layer {args.depth}), random-projection loss, median [min, max] over seeds")
    print(f"{'activation':<11}{'He fan_in':<{CELL}}  {'He fan_out':<{CELL}}")
    for activation in args.activations:
        cells = []
        for mode in ("fan_in", "fan_out"):
            ratios = []
            for seed, probe in probe_by_seed.items():
                keras.utils.set_random_seed(seed)
                model = build_mlp(
                    activation,
                    args.depth,
                    args.width,
                    lambda i: keras_inits.He(activation, mode=mode, seed=layer_seed(seed, i)),
                )
                projection = np.random.default_rng(seed).standard_normal(probe.shape).astype("float32")
                names = ["dense_1", f"dense_{args.depth}"]
                statistics = keras_inits.activation_statistics(
                    model, probe, layers=names, y=projection, gradients=True, loss=random_projection_loss
                )
                last = statistics[f"dense_{args.depth}"].grad_std
                ratios.append(statistics["dense_1"].grad_std / last if last else float("nan"))
            cells.append(summarize(ratios))
        print(f"{activation:<11}{cells[0]:<{CELL}}  {cells[1]:<{CELL}}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--deep", type=int, default=100, help="extra depth for relu and tanh (0: none)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=512, help="probe batch size")
    parser.add_argument("--activations", nargs="+", default=list(ACTIVATIONS))
    parser.add_argument("--quick", action="store_true", help="depth 10, 2 seeds, no extra depth")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.deep, args.seeds = 10, 0, 2
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    probe_by_seed = {
        seed: np.random.default_rng(seed).standard_normal((args.samples, args.width)).astype("float32")
        for seed in range(args.seeds)
    }
    rows = quality_table(args, probe_by_seed)
    print_quality(rows, args.width)
    print_goals(rows)
    gradient_table(args, probe_by_seed)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
