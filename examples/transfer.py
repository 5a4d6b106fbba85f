"""Transfer learning: a body trained on digits 0-4 speeds up learning digits 5-9.

A small CNN (Conv2D 16 -> Conv2D 32 stride 2 -> Flatten -> Dense head of 5, relu,
``keras_inits.He``) is trained on the source task, digits 0-4, and saved as ``source.keras``.
The target task is digits 5-9 (labels remapped to 0-4). The target model has the same body and
a NEW head (another layer name, fresh He init); ``keras_inits.transfer(target, "source.keras",
layers=BODY)`` copies the body and the printed report shows the head not copied. The
transferred model and a from-scratch He model are then trained identically (same optimizer,
learning rate, batch, epochs, data order and seed); held-out accuracy and loss are recorded
before training (epoch 0) and after every epoch, over ``--seeds`` seeds (each seed changes the
init, the data order and the source model).

The defaults are a small-data regime, where a transferred body should help most: 100 target
training images (``--samples``), a source model trained 3 epochs on every source image
(``--source-epochs``, ``--source-samples``), then 6 target epochs of Adam at learning rate 3e-4,
batch 32, 3 seeds. The lead of the transferred model in accuracy is largest after a few epochs
and shrinks as scratch catches up; its lead in held-out loss is clearer and holds to the last
epoch. At epoch 0 both are at chance with a new head, and the transferred model's held-out loss
is usually slightly higher.

The first printed table gives, per start, the median held-out accuracy at epoch 0, 1 and the
last, the median held-out loss at epoch 0 and the last, and the epochs needed to reach
``TARGET_FRACTION`` (0.95) of scratch's final median accuracy: the "converges in fewer epochs"
claim, stated as measured (it says so when it does not hold). The second gives the medians at
every epoch.

Reference: J. Yosinski, J. Clune, Y. Bengio and H. Lipson, "How transferable are features in
deep neural networks?", NeurIPS 2014.

Outputs (under ``--out``): ``source.keras``, ``transfer.png`` (accuracy and loss per epoch,
median and min-max band over the seeds), a printed table, and one TensorBoard run per
(start, seed) with ``keras_inits.ActivationStatistics`` and the HParams tags.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import _common
import keras
import numpy as np

import keras_inits

EXAMPLE_NAME = "transfer"
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
HEAD_UNITS = len(TARGET_CLASSES)
BODY_LAYERS = ("conv_1", "conv_2")
SOURCE_HEAD_NAME = "source_head"
TARGET_HEAD_NAME = "target_head"
STARTS = ("transfer", "scratch")
# "epochs to reach X": X is this share of scratch's final median held-out accuracy.
TARGET_FRACTION = 0.95
PROBE_SAMPLES = 64
METRIC_DESCRIPTIONS = {
    "result/accuracy_epoch_1": "held-out accuracy after one epoch on the target task",
    "result/accuracy_last": "held-out accuracy after the last epoch",
    "result/loss_last": "held-out loss after the last epoch",
}


def he(seed: int) -> keras_inits.He:
    return keras_inits.He("relu", seed=seed)


def build_cnn(image_shape: tuple[int, ...], head_name: str, seed: int, name: str) -> keras.Model:
    """Conv2D 16 -> Conv2D 32 (stride 2) -> flattening -> Dense head of 5 logits."""
    inputs = keras.Input(image_shape, name="inputs")
    hidden = keras.layers.Conv2D(16, 3, padding="same", activation="relu",
                                 kernel_initializer=he(seed + 1), name=BODY_LAYERS[0])(inputs)
    hidden = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu",
                                 kernel_initializer=he(seed + 2), name=BODY_LAYERS[1])(hidden)
    hidden = keras.layers.Flatten(name="flatten")(hidden)
    outputs = keras.layers.Dense(HEAD_UNITS, kernel_initializer=keras_inits.He("linear", seed=seed + 3),
                                 name=head_name)(hidden)
    return keras.Model(inputs, outputs, name=name)


def split(x: np.ndarray, y: np.ndarray, classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``classes``, labels remapped to 0..len(classes)-1."""
    keep = np.isin(y, classes)
    remap = {label: index for index, label in enumerate(classes)}
    return x[keep], np.array([remap[int(label)] for label in y[keep]], dtype="int64")


def parse_args(argv: list[str] | None) -> Any:
    parser = _common.make_parser(EXAMPLE_NAME, __doc__)
    _common.add_dataset_argument(parser)
    parser.add_argument("--seeds", type=int, default=3, help="seeds (from --seed on)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs on the target task")
    parser.add_argument("--source-epochs", type=int, default=3, help="epochs on the source task")
    parser.add_argument("--samples", type=int, default=100, help="target training images")
    parser.add_argument("--source-samples", type=int, default=None, help="source training images (None: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size, source and target")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="Adam's, source and target")
    return parser.parse_args(argv)


def optimizer(args: Any) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=args.learning_rate)


def train_source(data: _common.Dataset, args: Any, seed: int, path: Path) -> None:
    """Train the source CNN on digits 0-4 and save it as ``path``."""
    x, y = split(data.x_train, data.y_train, SOURCE_CLASSES)
    x, y = x[: args.source_samples], y[: args.source_samples]
    model = build_cnn(data.image_shape, SOURCE_HEAD_NAME, seed, "source")
    _common.compile_classifier(model, optimizer(args))
    keras.utils.set_random_seed(seed)
    model.fit(x, y, epochs=args.source_epochs, batch_size=args.batch_size, shuffle=True, verbose=0)
    model.save(path)


def curves(model: keras.Model, train: tuple, test: tuple, args: Any, seed: int, run_dir: Path) -> dict:
    """Held-out accuracy and loss at epoch 0 and after every epoch."""
    _common.compile_classifier(model, optimizer(args))
    loss, accuracy = model.evaluate(*test, verbose=0)
    probe = train[0][:PROBE_SAMPLES]
    history = _common.fit_with_statistics(
        model, *train, run_dir=run_dir, probe=probe, epochs=args.epochs,
        batch_size=args.batch_size, seed=seed, validation_data=test,
    )
    return {
        "accuracy": [float(accuracy)] + [float(v) for v in history.history["val_accuracy"]],
        "loss": [float(loss)] + [float(v) for v in history.history["val_loss"]],
    }


def epochs_to_reach(accuracies: list[float], threshold: float) -> int | None:
    for epoch, accuracy in enumerate(accuracies):
        if accuracy >= threshold:
            return epoch
    return None


def plot(results: dict, args: Any, dataset: str, path: Path) -> Path:
    plt = _common.pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    epochs = np.arange(args.epochs + 1)
    for key, axis in zip(("accuracy", "loss"), axes):
        for start in STARTS:
            values = np.array([run[key] for run in results[start]])
            line, = axis.plot(epochs, np.median(values, axis=0), marker=".", label=start)
            axis.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
        axis.set_xlabel("epoch on digits 5-9")
        axis.set_ylabel(f"held-out {key}")
        axis.xaxis.set_major_locator(_common.integer_ticks())
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(f"Transfer of a 0-4 body vs He from scratch: {dataset}, {keras.backend.backend()}, "
                    f"{args.seeds} seeds (median, min-max), Adam lr {args.learning_rate}", fontsize=10)
    return _common.save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment.

    Returns:
        ``{"dataset", "results": {start: [{"accuracy", "loss"} per seed]}, "median", "median_loss",
        "reports", "body_equal", "head_equal", "head_is_source", "epochs_to_reach", "figures", "runs"}``:
        per seed, ``body_equal`` says every body weight equals the saved source's right after
        ``transfer``, ``head_equal`` that the head kept its own init, ``head_is_source`` that it
        equals the source's head.
    """
    args = parse_args(argv)
    _common.prepare_output(args.out)
    data = _common.load_dataset(args.dataset, seed=args.seed)
    x_target, y_target = split(data.x_train, data.y_train, TARGET_CLASSES)
    x_target, y_target = x_target[: args.samples], y_target[: args.samples]
    test = split(data.x_test, data.y_test, TARGET_CLASSES)
    to_numpy = keras_inits.backend.current().to_numpy
    results: dict[str, list] = {start: [] for start in STARTS}
    reports, body_equal, head_equal, head_is_source, records = [], [], [], [], []
    for seed in range(args.seed, args.seed + args.seeds):
        source_path = args.out / "source.keras"
        train_source(data, args, seed, source_path)
        saved = keras.models.load_model(source_path)
        target = build_cnn(data.image_shape, TARGET_HEAD_NAME, seed + 100, "transfer")
        head_before = to_numpy(target.get_layer(TARGET_HEAD_NAME).kernel)
        report = keras_inits.transfer(target, source_path, layers=list(BODY_LAYERS), report=False)
        print(f"seed {seed}: transfer report\n{report}")
        statuses = {path: entry.status for path, entry in report.items()}
        assert all(status == "copied" for status in statuses.values()), statuses
        assert not any(path.startswith(TARGET_HEAD_NAME) for path in statuses), statuses
        body_equal.append(all(
            np.array_equal(to_numpy(copied), to_numpy(original))
            for name in BODY_LAYERS
            for copied, original in zip(target.get_layer(name).weights, saved.get_layer(name).weights)
        ))
        head_kernel = to_numpy(target.get_layer(TARGET_HEAD_NAME).kernel)
        head_equal.append(np.array_equal(head_kernel, head_before))
        head_is_source.append(np.array_equal(head_kernel, to_numpy(saved.get_layer(SOURCE_HEAD_NAME).kernel)))
        reports.append(report)
        scratch = build_cnn(data.image_shape, TARGET_HEAD_NAME, seed + 100, "scratch")
        for start, model in (("transfer", target), ("scratch", scratch)):
            run_name = f"{start}-seed{seed}"
            run = curves(model, (x_target, y_target), test, args, seed,
                         _common.run_directory(args.out, run_name))
            results[start].append(run)
            hparams = {"start": start, "seed": seed, "dataset": data.name,
                       "backend": keras.backend.backend(), "epochs": args.epochs}
            metrics = {"result/accuracy_epoch_1": run["accuracy"][min(1, args.epochs)],
                       "result/accuracy_last": run["accuracy"][-1], "result/loss_last": run["loss"][-1]}
            records.append(_common.RunRecord(run_name, hparams, metrics))
    runs = _common.write_hparams(args.out, records, METRIC_DESCRIPTIONS)
    median = {start: np.median([run["accuracy"] for run in results[start]], axis=0).tolist() for start in STARTS}
    threshold = TARGET_FRACTION * median["scratch"][-1]
    reach = {start: epochs_to_reach(median[start], threshold) for start in STARTS}
    median_loss = {start: np.median([run["loss"] for run in results[start]], axis=0).tolist() for start in STARTS}
    header = ["start", "acc epoch 0", "acc epoch 1", f"acc epoch {args.epochs}", "loss epoch 0",
              f"loss epoch {args.epochs}", f"epochs to acc {threshold:.3f}"]
    rows = [[start, median[start][0], median[start][min(1, args.epochs)], median[start][-1],
             median_loss[start][0], median_loss[start][-1], reach[start]] for start in STARTS]
    print(f"{data.name}, {keras.backend.backend()} backend, {args.seeds} seeds, {len(y_target)} target images, "
          f"median held-out accuracy and loss; {threshold:.3f} = {TARGET_FRACTION} x scratch's final median "
          "accuracy ('-': never reached)")
    print(_common.format_table(header, rows))
    per_epoch = [[epoch] + [median[start][epoch] for start in STARTS] + [median_loss[start][epoch] for start in STARTS]
                 for epoch in range(args.epochs + 1)]
    print(_common.format_table(["epoch", *(f"{start} acc" for start in STARTS),
                                *(f"{start} loss" for start in STARTS)], per_epoch))
    faster = reach["transfer"] is not None and (reach["scratch"] is None or reach["transfer"] < reach["scratch"])
    verdict = "holds" if faster else "does NOT hold on this data"
    print(f"'transfer converges in fewer epochs' {verdict}")
    figure = plot(results, args, data.name, args.out / f"{EXAMPLE_NAME}.png")
    _common.print_outputs(args.out, [figure])
    return {"dataset": data.name, "results": results, "median": median, "reports": reports,
            "body_equal": body_equal, "head_equal": head_equal, "head_is_source": head_is_source,
            "median_loss": median_loss, "epochs_to_reach": reach,
            "figures": [figure], "runs": runs}


if __name__ == "__main__":
    main(sys.argv[1:])
