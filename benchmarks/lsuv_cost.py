"""Cost of `lsuv` in units of one forward pass, and whether it converges, on real models.

Cost: the wall time of one `lsuv(model, x, seed=0)` call divided by the median time of one
eager inference pass `model(x, training=False)` of the same model on the same batch (median
of FORWARD_REPEATS timed passes after a warm-up pass), with two exact counts that no machine
load disturbs: the full forward passes lsuv made (`report.forward_passes`) and the
rescalings (each one single-layer re-run; the sum of `iterations`). Models:

- Dense stacks, width 256, gelu, depth 10, 20, 40, 80, on 256 samples: the cost must grow
  linearly with depth (constant per layer), not with its square;
- keras.applications ResNet50V2, EfficientNetB0, DenseNet121 (weights=None, 64x64x3,
  include_top=False) on 32 samples: goal at most 10x one forward pass (issue 8).

With `--convergence` it also runs `lsuv` on MobileNetV3Small, ConvNeXtTiny, VGG16, keras-hub
BertBackbone and GPT2Backbone (tiny random configs, no download), LSTM/GRU/Bidirectional,
SeparableConv2D, DepthwiseConv2D, Conv2DTranspose, Conv3D and EinsumDense models, and prints
for each how many layers it touched, how many converged, how many it restored, and whether
the model's output is finite afterwards.

Run: `KERAS_BACKEND=jax .venv/jax/bin/python benchmarks/lsuv_cost.py [--convergence]`.

Before (0.1's lsuv, two probe passes per layer from the input; TensorFlow, 2 cores shared
with other jobs, load 4-8, so forward times are noisy but each ratio is taken in one process):

| model          | fwd ms | lsuv s | cost x | x / layer |
|----------------|--------|--------|--------|-----------|
| Dense x10      |   21.6 |   0.96 |   44.3 |     4.43  |
| Dense x20      |  114.9 |   2.33 |   20.3 |     1.01  |
| Dense x40      |  142.2 |   8.17 |   57.4 |     1.44  |
| Dense x80      |  243.5 |  30.28 |  124.3 |     1.55  |
| ResNet50V2     |  811.0 |  64.27 |   79.2 |     1.50  |
| EfficientNetB0 | 1246.4 | 125.22 |  100.5 |     1.24  |
| DenseNet121    | 3033.5 | 612.28 |  201.8 |     1.68  |

(JAX, 0.1: Dense x10 281.6x.) After (one pass that rescales as it goes; the orthonormal
pre-init and the rescaling in NumPy; on torch the pass runs under `no_grad`; quiet machine,
2 cores; cost x, by backend):

| model          | tensorflow | torch | jax   |
|----------------|------------|-------|-------|
| ResNet50V2     |   7.4      |  9.6  |  7.9  |
| EfficientNetB0 |   2.6      |  6.3  |  3.1  |
| DenseNet121    |   2.6      |  7.5  |  3.9  |

Dense stacks (before the NumPy rescaling; quiet machine): tensorflow 9.4, 8.9, 9.3, 8.7x and
jax 16.7, 16.1, 17.8, 16.2x at depth 10, 20, 40, 80 (torch 22-44x: its Dense forward passes
take 12-60 ms, too short to time reliably): lsuv's time grows linearly with depth (0.23,
0.44, 0.84, 1.72 s on tensorflow). Every row: 1 forward pass, every touched layer converged,
0 restored. Before the NumPy pre-init and rescaling, jax paid 46-58x on ResNet50V2: eager
JAX compiled `keras.random.normal`, the QR and the multiply once per kernel shape (the
pre-init alone was 83% of lsuv's time).

Convergence table (TensorFlow): MobileNetV3Small 52/52, ConvNeXtTiny 58/58, VGG16 13/13, ResNet50V2
53/53, EfficientNetB0 81/81, DenseNet121 120/120, BertBackbone 13/13, GPT2Backbone 12/12,
LSTM 2/2, GRU 2/2, Bidirectional 2/2, SeparableConv2D 2/2, DepthwiseConv2D 3/3,
Conv2DTranspose 2/2, Conv3D 2/2, EinsumDense 2/2 converged, 0 restored, output finite;
the same counts on torch.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402

FORWARD_REPEATS = 5
DENSE_WIDTH = 256
DENSE_DEPTHS = (10, 20, 40, 80)
DENSE_SAMPLES = 256
IMAGE_SHAPE = (64, 64, 3)
IMAGE_SAMPLES = 32
COST_GOAL = 10.0
COST_APPLICATIONS = ("ResNet50V2", "EfficientNetB0", "DenseNet121")
SEQUENCE_LENGTH = 16
VOCABULARY = 1000


def dense_stack(depth: int) -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((DENSE_WIDTH,))]
    layers += [keras.layers.Dense(DENSE_WIDTH, activation="gelu") for _ in range(depth)]
    x = np.random.default_rng(0).standard_normal((DENSE_SAMPLES, DENSE_WIDTH)).astype("float32")
    return keras.Sequential(layers), x


def application(name: str) -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(0)
    builder = getattr(keras.applications, name)
    model = builder(weights=None, input_shape=IMAGE_SHAPE, include_top=False)
    x = np.random.default_rng(0).uniform(0.0, 255.0, (IMAGE_SAMPLES,) + IMAGE_SHAPE).astype("float32")
    return model, x


def sequential(layers: list, input_shape: tuple[int, ...], samples: int = 64) -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(input_shape)] + layers)
    x = np.random.default_rng(0).standard_normal((samples,) + input_shape).astype("float32")
    return model, x


def token_batch(samples: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "token_ids": rng.integers(0, VOCABULARY, (samples, SEQUENCE_LENGTH)).astype("int32"),
        "padding_mask": np.ones((samples, SEQUENCE_LENGTH), "int32"),
    }


def gpt2() -> tuple[keras.Model, dict]:
    import keras_hub

    keras.utils.set_random_seed(0)
    model = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=SEQUENCE_LENGTH,
    )
    return model, token_batch()


def bert() -> tuple[keras.Model, dict]:
    import keras_hub

    keras.utils.set_random_seed(0)
    model = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=SEQUENCE_LENGTH,
    )
    batch = token_batch()
    batch["segment_ids"] = np.zeros_like(batch["token_ids"])
    return model, batch


def convergence_models() -> dict:
    layers = keras.layers
    return {
        "MobileNetV3Small": lambda: application("MobileNetV3Small"),
        "ConvNeXtTiny": lambda: application("ConvNeXtTiny"),
        "VGG16": lambda: application("VGG16"),
        "ResNet50V2": lambda: application("ResNet50V2"),
        "EfficientNetB0": lambda: application("EfficientNetB0"),
        "DenseNet121": lambda: application("DenseNet121"),
        "BertBackbone": bert,
        "GPT2Backbone": gpt2,
        "LSTM": lambda: sequential([layers.LSTM(32, return_sequences=True), layers.LSTM(32)], (12, 8)),
        "GRU": lambda: sequential([layers.GRU(32, return_sequences=True), layers.GRU(32)], (12, 8)),
        "Bidirectional": lambda: sequential([layers.Bidirectional(layers.LSTM(16)), layers.Dense(8)], (12, 8)),
        "SeparableConv2D": lambda: sequential(
            [layers.SeparableConv2D(16, 3, activation="relu"), layers.SeparableConv2D(16, 3)], (16, 16, 4)),
        "DepthwiseConv2D": lambda: sequential(
            [layers.Conv2D(8, 3), layers.DepthwiseConv2D(3, activation="relu"), layers.Conv2D(8, 1)], (16, 16, 3)),
        "Conv2DTranspose": lambda: sequential(
            [layers.Conv2DTranspose(8, 3, strides=2, activation="relu"), layers.Conv2DTranspose(4, 3)], (8, 8, 3)),
        "Conv3D": lambda: sequential([layers.Conv3D(8, 3, activation="relu"), layers.Conv3D(8, 3)], (8, 8, 8, 2)),
        "EinsumDense": lambda: sequential(
            [layers.EinsumDense("abc,cd->abd", (None, 16), activation="gelu"),
             layers.EinsumDense("abd,de->abe", (None, 16))], (6, 12)),
    }


def block(value) -> None:
    for tensor in keras.tree.flatten(value):
        if hasattr(tensor, "block_until_ready"):
            tensor.block_until_ready()


def forward_seconds(model: keras.Model, x) -> float:
    block(model(x, training=False))
    times = []
    for _ in range(FORWARD_REPEATS):
        start = time.perf_counter()
        block(model(x, training=False))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_lsuv(model: keras.Model, x) -> tuple[float, dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)
        start = time.perf_counter()
        report = keras_inits.lsuv(model, x, seed=0)
        seconds = time.perf_counter() - start
    return seconds, report, [str(w.message)[:200] for w in caught]


def summary(report: dict) -> str:
    touched = len(report)
    converged = sum(bool(entry.converged) for entry in report.values())
    restored = sum(bool(getattr(entry, "restored", False)) for entry in report.values())
    return f"{converged}/{touched} converged, {restored} restored"


def finite_output(model: keras.Model, x) -> bool:
    outputs = keras.tree.flatten(model(x, training=False))
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(t))) for t in outputs)


def cost_row(label: str, model: keras.Model, x) -> None:
    forward = forward_seconds(model, x)
    seconds, report, caught = run_lsuv(model, x)
    cost = seconds / forward
    passes = getattr(report, "forward_passes", None)
    reruns = sum(entry.iterations for entry in report.values())
    print(f"| {label:<16} | {forward * 1e3:9.1f} | {seconds:8.2f} | {cost:7.1f} | "
          f"{cost / max(len(report), 1):9.3f} | {passes} | {reruns} | {summary(report)} |", flush=True)
    for message in caught:
        print(f"    warning: {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convergence", action="store_true", help="also run the convergence table")
    parser.add_argument("--skip-cost", action="store_true", help="only the convergence table")
    parser.add_argument("--models", nargs="*", default=None,
                        help="cost rows to run (dense, ResNet50V2, EfficientNetB0, DenseNet121); default all")
    arguments = parser.parse_args()
    wanted = set(arguments.models) if arguments.models else {"dense", *COST_APPLICATIONS}
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, "
          f"python {platform.python_version()}, {os.cpu_count()} cores")
    if not arguments.skip_cost:
        print("\n| model            | fwd ms    | lsuv s   | cost x  | x / layer | passes | rescalings | report |")
        print("|------------------|-----------|----------|---------|-----------|--------|------------|--------|")
        if "dense" in wanted:
            for depth in DENSE_DEPTHS:
                cost_row(f"Dense x{depth}", *dense_stack(depth))
        for name in COST_APPLICATIONS:
            if name in wanted:
                cost_row(name, *application(name))
        print(f"(goal: at most {COST_GOAL:g}x on the three applications; constant x / layer on Dense)")
    if arguments.convergence:
        print("\n| model            | lsuv s   | report | output finite |")
        print("|------------------|----------|--------|---------------|")
        for name, build in convergence_models().items():
            model, x = build()
            seconds, report, caught = run_lsuv(model, x)
            print(f"| {name:<16} | {seconds:8.2f} | {summary(report)} | {finite_output(model, x)} |", flush=True)
            for message in caught:
                print(f"    warning: {message}", flush=True)


if __name__ == "__main__":
    main()
