"""Why not zeros or a constant: identical units get identical gradients and stay identical.

If every incoming weight vector of a layer starts equal (all zeros, or all the same constant), every
unit of the layer computes the same activation, receives the same gradient and takes the same step:
after any number of gradient steps the units are still copies of each other, and the layer behaves
like a single unit however wide it is. Random initialization breaks this symmetry.

The script trains a small tanh MLP (``--widths``, default 64 -> 32 -> 32 -> 10) on the 8x8 digits
(``--dataset``) with plain SGD from three kernel initializations (biases zero, every layer initialized alike):

- ``zeros``: nothing but the output biases gets a non-zero gradient (tanh(0) = 0 and the zero
  output weights pass no gradient down); the hidden weights never move.
- ``constant``: every weight ``--constant``. The weights move, but in lockstep: the units stay
  identical (up to float32 rounding, see below).
- ``xavier``: ``keras_inits.Xavier()``: the units differ from the start and learn different
  features.

The evidence, per hidden layer: max |w_i - w_j| over pairs of units (i, j) of their incoming weight
vectors (0 means all units identical), the number of distinct units, and how far the weights moved;
plus the test accuracy. In exact arithmetic the constant initialization keeps max |w_i - w_j| at 0;
in float32 a matrix product may round the same sum differently in different output columns
(vectorized blocks and their remainders), so units can end up one float32 ulp apart (a relative
difference ~1e-7, against ~1 for random initialization). Differences below ``ROUNDING_TOLERANCE``
relative to the layer's largest weight count as identical.

Reference: I. Goodfellow, Y. Bengio and A. Courville, "Deep Learning", MIT Press 2016, section 8.4
("the need to break symmetry between different units").

Outputs (under ``--out``): ``symmetry.png`` (the change of the first hidden layer's kernel during
training, for each initialization), printed tables, and one TensorBoard run per initialization
(``keras_inits.ActivationStatistics`` during training, and the HParams tags).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import _common
import keras
import numpy as np

import keras_inits

EXAMPLE_NAME = "symmetry"
ACTIVATION = "tanh"
DEFAULT_WIDTHS = (32, 32)
DEFAULT_CONSTANT = 0.05
# Float32 matrix products may round the same sum differently for different output columns
# (vectorized blocks and their remainders), leaving 1-ulp differences (relative ~1e-7) between units
# that are identical in exact arithmetic. Differences below this relative size count as rounding.
ROUNDING_TOLERANCE = 1e-6
METRIC_DESCRIPTIONS = {
    "result/max_unit_difference": "largest |w_i - w_j| between two units of a hidden layer, "
    "after training",
    "result/distinct_units_first_layer": "distinct units of the first hidden layer, after training",
    "result/test_accuracy": "test accuracy after training",
}


def initializers(constant: float) -> dict[str, tuple[str, _common.InitializerFactory]]:
    """The three initializations, by key: (label, factory)."""

    def zeros(fan_in: int, seed: int) -> str:
        return "zeros"

    def same_constant(fan_in: int, seed: int) -> keras.initializers.Initializer:
        return keras.initializers.Constant(constant)

    def xavier(fan_in: int, seed: int) -> keras_inits.Xavier:
        return keras_inits.Xavier(seed=seed)

    return {
        "zeros": ("zeros", zeros),
        "constant": (f"constant {constant:g}", same_constant),
        "xavier": ("Xavier", xavier),
    }


def parse_args(argv: list[str] | None) -> Any:
    parser = _common.make_parser(EXAMPLE_NAME, __doc__)
    _common.add_dataset_argument(parser, default="digits")
    parser.add_argument(
        "--widths", type=int, nargs="+", default=list(DEFAULT_WIDTHS), help="hidden layer sizes"
    )
    parser.add_argument(
        "--constant", type=float, default=DEFAULT_CONSTANT, help="every weight of 'constant'"
    )
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="SGD minibatch")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--train-samples", type=int, default=5000, help="training images used")
    parser.add_argument("--probe-samples", type=int, default=256, help="test images in the probe")
    return parser.parse_args(argv)


def relative_unit_difference(kernel: np.ndarray) -> float:
    """``max |w_i - w_j|`` over the layer's largest weight magnitude (0 for an all-zero layer)."""
    scale = float(np.abs(kernel).max())
    return _common.max_unit_difference(kernel) / scale if scale > 0 else 0.0


def distinct_units(kernel: np.ndarray) -> int:
    """Number of different units of a layer.

    Incoming weight vectors that differ by more than ``ROUNDING_TOLERANCE`` times the layer's
    largest weight magnitude count as different.
    """
    per_unit = np.asarray(kernel).reshape(-1, kernel.shape[-1]).T
    tolerance = ROUNDING_TOLERANCE * float(np.abs(per_unit).max())
    representatives: list[np.ndarray] = []
    for weights in per_unit:
        if not any(np.abs(weights - other).max() <= tolerance for other in representatives):
            representatives.append(weights)
    return len(representatives)


def hidden_kernels(model: keras.Model) -> list[np.ndarray]:
    return [_common.kernel_of(model, name) for name in _common.hidden_layer_names(model)]


def run_one(
    key: str, factory: _common.InitializerFactory, args: Any, dataset: _common.Dataset
) -> dict[str, Any]:
    """Train one network; return the symmetry measurements before and after."""
    model = _common.build_mlp(
        dataset.input_dim, args.widths, ACTIVATION, factory, seed=args.seed, name=key
    )
    _common.compile_classifier(model, keras.optimizers.SGD(learning_rate=args.learning_rate))
    initial_kernels = hidden_kernels(model)
    probe = dataset.x_test_flat[: args.probe_samples]
    _common.fit_with_statistics(
        model,
        dataset.x_train_flat,
        dataset.y_train,
        run_dir=_common.run_directory(args.out, key),
        probe=probe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    trained_kernels = hidden_kernels(model)
    _, accuracy = model.evaluate(dataset.x_test_flat, dataset.y_test, verbose=0)
    pairs = list(zip(trained_kernels, initial_kernels))
    return {
        "layers": _common.hidden_layer_names(model),
        "max_unit_difference_init": [_common.max_unit_difference(k) for k in initial_kernels],
        "max_unit_difference": [_common.max_unit_difference(k) for k in trained_kernels],
        "relative_unit_difference": [relative_unit_difference(k) for k in trained_kernels],
        "distinct_units": [distinct_units(kernel) for kernel in trained_kernels],
        "weight_change": [float(np.abs(trained - initial).max()) for trained, initial in pairs],
        "test_accuracy": float(accuracy),
        "first_kernel_change": trained_kernels[0] - initial_kernels[0],
    }


def plot(results: dict[str, dict[str, Any]], labels: dict[str, str], path: Path) -> Path:
    plt = _common.pyplot()
    panels = len(results)
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.2), squeeze=False)
    for axis, (key, result) in zip(axes[0], results.items()):
        change = result["first_kernel_change"]
        limit = float(np.abs(change).max()) or 1.0
        image = axis.imshow(
            change, cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest"
        )
        distinct = result["distinct_units"][0]
        plural = "" if distinct == 1 else "s"
        axis.set_title(f"{labels[key]}: {distinct} distinct unit{plural}")
        axis.set_xlabel("unit of hidden_1")
        figure.colorbar(image, ax=axis, fraction=0.046)
    axes[0][0].set_ylabel("input")
    figure.suptitle(
        "What training changed in the first layer's weights: "
        "a column per unit (equal columns = equal units)"
    )
    return _common.save_figure(figure, path)


def layer_table(results: dict[str, dict[str, Any]], labels: dict[str, str]) -> str:
    header = [
        "init",
        "layer",
        "max|wi-wj| init",
        "max|wi-wj| trained",
        "relative",
        "distinct units",
        "max |dW|",
    ]
    rows = []
    for key, result in results.items():
        for index, layer in enumerate(result["layers"]):
            rows.append([
                labels[key] if index == 0 else "",
                layer,
                result["max_unit_difference_init"][index],
                result["max_unit_difference"][index],
                result["relative_unit_difference"][index],
                result["distinct_units"][index],
                result["weight_change"][index],
            ])
    return _common.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment.

    Returns:
        ``{"steps": SGD steps, "inits": {key: result}, "figures", "runs"}``; keys ``zeros``,
        ``constant``, ``xavier``; each result holds per-hidden-layer lists
        ``max_unit_difference_init``, ``max_unit_difference`` and ``relative_unit_difference``
        (after training), ``distinct_units``, ``weight_change``, and ``test_accuracy``.
    """
    args = parse_args(argv)
    _common.prepare_output(args.out)
    dataset = _common.load_dataset(args.dataset, seed=args.seed, train_samples=args.train_samples)
    choices = initializers(args.constant)
    labels = {key: label for key, (label, _) in choices.items()}
    steps = args.epochs * math.ceil(len(dataset.x_train) / args.batch_size)

    results: dict[str, dict[str, Any]] = {}
    records = []
    for key, (label, factory) in choices.items():
        result = run_one(key, factory, args, dataset)
        results[key] = result
        hparams = {
            "init": label,
            "activation": ACTIVATION,
            "depth": len(args.widths),
            "dataset": dataset.name,
            "steps": steps,
        }
        metrics = {
            "result/max_unit_difference": max(result["max_unit_difference"]),
            "result/distinct_units_first_layer": result["distinct_units"][0],
            "result/test_accuracy": result["test_accuracy"],
        }
        records.append(_common.RunRecord(key, hparams, metrics))
    runs = _common.write_hparams(args.out, records, METRIC_DESCRIPTIONS)

    architecture = _common.mlp_architecture(dataset.input_dim, args.widths)
    print(f"\n{architecture} tanh MLP, {steps} SGD steps "
          f"(learning rate {args.learning_rate}, batch {args.batch_size})")
    print("max|wi-wj|: largest difference between the incoming weights of two units "
          "(0: all identical)")
    print("relative: max|wi-wj| trained / largest |w| of the layer "
          "(float32 rounding alone: ~1e-7)")
    print(f"distinct units: units whose weights differ by more than {ROUNDING_TOLERANCE:g} "
          "relative")
    print("max |dW|: largest change of a weight during training")
    print(layer_table(results, labels))
    print()
    accuracy_rows = [[labels[key], result["test_accuracy"]] for key, result in results.items()]
    print(_common.format_table(["init", "test accuracy"], accuracy_rows))
    figure = plot(results, labels, args.out / f"{EXAMPLE_NAME}.png")
    _common.print_outputs(args.out, [figure])
    return {"steps": steps, "inits": results, "figures": [figure], "runs": runs}


if __name__ == "__main__":
    main(sys.argv[1:])
