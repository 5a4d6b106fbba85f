"""Calibration of ``keras_inits.diagnose``: every configuration of the benchmarks and examples.

Each configuration is built at initialization and run through ``keras_inits.diagnose``
(with gradients: targets ``y`` and a loss), and the table gives, per configuration, the key
numbers the thresholds read and the findings:

- ``pre_std`` ratio: ``pre_std`` of the last layer over the first (``VANISHING_RATIO``,
  ``EXPLODING_RATIO`` read the deepest layers);
- ``grad`` ratio: ``grad_std`` of the first layer over the last (``GRADIENT_*``);
- cosine: largest mean cosine similarity over all layers (the rule leaves out the last one);
- dead and saturated: largest ``dead_fraction``, ``saturation_fraction``;
- stream: the residual stream's largest growth (``STREAM_GROWTH``).

Sections (``--sections``):

- ``depth``: ``benchmarks/depth.py``'s plain MLPs, width 256, depth 50 (and 100 for relu
  and tanh), every activation, every column (Keras's glorot and he_normal, torch's gain,
  ``He(phi)``, ``reinitialize``, ``lsuv``), N(0, 1) probes, the random-projection loss of
  its gradient table; ``--seeds`` seeds each.
- ``examples``: ``examples/glorot_tanh_mlp.py`` (zeros, N(0, 1), U(+-1/sqrt(fan_in)),
  Xavier on 784-500-400-300-200-100-10 tanh, probed with MNIST test images and their labels),
  ``examples/tanh_depth.py`` (10 tanh layers of 500: N(0, 0.01^2), N(0, 1), Xavier),
  ``examples/relu_depth.py`` (20 layers of 256: relu and gelu under Xavier, He(relu),
  He(gelu)), ``examples/dead_relu_bias.py`` (He relu 784-256x4-10, bias 0 and 0.01, MNIST),
  ``examples/symmetry.py`` (64-32-32-10 tanh: zeros, constant 0.05, Xavier, the 8x8
  digits).
- ``residual``: a residual MLP (stem, 16 blocks Dense-relu-Dense + Add, head; width 64)
  with Keras's default kernels, with ``reinitialize(model)`` (He, no scheme) and with
  ``reinitialize(model, residual="depth_scaled")``.
- ``resnet``: ``keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3),
  classes=10)`` at init, N(0, 1) images.

Run: ``python benchmarks/diagnose_calibration.py`` (about 30 minutes on 2 cores);
``--quick``: depth 10 and 1 seed for the depth section, no ResNet.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_inits  # noqa: E402
from keras_inits.diagnose import DiagnosisReport  # noqa: E402

BENCHMARKS_DIRECTORY = Path(__file__).resolve().parent
EXAMPLES_DIRECTORY = BENCHMARKS_DIRECTORY.parent / "examples"
sys.path.insert(0, str(BENCHMARKS_DIRECTORY))
sys.path.insert(0, str(EXAMPLES_DIRECTORY))
import depth  # noqa: E402  (benchmarks/depth.py: its model builders and loss)
import _common  # noqa: E402  (the examples' data and MLP builder)

SECTIONS = ("depth", "examples", "residual", "resnet")
PROBE_SAMPLES = 256
RESIDUAL_BLOCKS = 16
RESIDUAL_WIDTH = 64
RESNET_SAMPLES = 32
RESNET_SHAPE = (64, 64, 3)
CONFIG_WIDTH = 44
CLASSIFIER_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def key_numbers(report: DiagnosisReport, stats) -> dict[str, float | None]:
    """The numbers of the table, from the statistics the report was made of."""
    layers = list(stats.values())
    first, last = layers[0], layers[-1]
    pre_ratio = last.pre_std / first.pre_std if first.pre_std > 0 else math.nan
    grad_ratio = None
    if first.grad_std is not None and last.grad_std:
        grad_ratio = first.grad_std / last.grad_std
    return {
        "pre_std": pre_ratio,
        "grad": grad_ratio,
        "cosine": report.summary.get("max_cosine"),
        "dead": report.summary.get("max_dead_fraction"),
        "saturated": report.summary.get("max_saturation_fraction"),
        "stream": report.summary.get("stream_growth"),
    }


def cell(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 0.995 or abs(value) >= 1.005 else f"{value:.4f}"


HEADER = (
    f"{'configuration':<{CONFIG_WIDTH}} {'pre_std':>9} {'grad':>9} {'cosine':>7} "
    f"{'dead':>6} {'satur.':>6} {'stream':>6}  findings"
)


def row(name: str, model: keras.Model, x, y, loss) -> DiagnosisReport:
    """Diagnose one configuration and print its row."""
    stats = keras_inits.activation_statistics(model, x, y=y, gradients=y is not None, loss=loss)
    report = keras_inits.diagnose(model, x, statistics=stats)
    numbers = key_numbers(report, stats)
    found = ", ".join(report.kinds()) or "ok"
    print(
        f"{name:<{CONFIG_WIDTH}} {cell(numbers['pre_std']):>9} {cell(numbers['grad']):>9} "
        f"{cell(numbers['cosine']):>7} {cell(numbers['dead']):>6} {cell(numbers['saturated']):>6} "
        f"{cell(numbers['stream']):>6}  {found}",
        flush=True,
    )
    return report


def depth_section(args: argparse.Namespace) -> None:
    print(f"\n## benchmarks/depth.py: width {args.width}, N(0, 1) probe of {PROBE_SAMPLES}, "
          f"random-projection loss, seeds 0..{args.seeds - 1}")
    print(HEADER)
    plan = [(activation, args.depth) for activation in args.activations]
    plan += [(a, args.deep) for a in depth.DEEP_ACTIVATIONS if a in args.activations and args.deep]
    for activation, layers in plan:
        for column in depth.COLUMNS:
            for seed in range(args.seeds):
                x = np.random.default_rng(seed).standard_normal((PROBE_SAMPLES, args.width))
                x = x.astype("float32")
                model = depth.make_model(column, activation, layers, args.width, seed, x)
                if model is None:
                    break
                y = np.random.default_rng(seed).standard_normal(x.shape).astype("float32")
                row(f"{activation} L={layers} {column} s{seed}", model, x, y,
                    depth.random_projection_loss)


def mnist_probe(seed: int) -> tuple[np.ndarray, np.ndarray]:
    dataset = _common.load_dataset("mnist5k", seed=seed)
    return dataset.x_test_flat[:PROBE_SAMPLES], dataset.y_test[:PROBE_SAMPLES]


def examples_section(args: argparse.Namespace) -> None:
    import dead_relu_bias
    import glorot_tanh_mlp
    import relu_depth
    import symmetry
    import tanh_depth

    print("\n## examples (at init)")
    print(HEADER)
    x, y = mnist_probe(args.seed)
    for key, (label, factory) in glorot_tanh_mlp.INITIALIZERS.items():
        model = _common.build_mlp(x.shape[1], glorot_tanh_mlp.PAPER_WIDTHS, "tanh", factory,
                                  seed=args.seed, name=key)
        row(f"glorot_tanh_mlp {label}", model, x, y, CLASSIFIER_LOSS)

    width = 500
    gaussian = _common.gaussian_probe(PROBE_SAMPLES, width, args.seed)
    targets = np.random.default_rng(args.seed).standard_normal((PROBE_SAMPLES, width))
    targets = targets.astype("float32")
    for key, (label, factory) in tanh_depth.INITIALIZERS.items():
        model = _common.build_mlp(width, [width] * 10, "tanh", factory, seed=args.seed,
                                  output_units=None, name=f"tanh_{key}")
        row(f"tanh_depth {label}", model, gaussian, targets, depth.random_projection_loss)

    width = 256
    gaussian = _common.gaussian_probe(PROBE_SAMPLES, width, args.seed)
    targets = np.random.default_rng(args.seed).standard_normal((PROBE_SAMPLES, width))
    targets = targets.astype("float32")
    for configuration in relu_depth.CONFIGURATIONS:
        model = _common.build_mlp(
            width, [width] * 20, configuration.activation, configuration.factory,
            seed=args.seed, output_units=None,
            input_kernel_initializer=relu_depth.input_layer_initializer, name=configuration.key,
        )
        row(f"relu_depth {configuration.activation} {configuration.init_label}", model,
            gaussian, targets, depth.random_projection_loss)

    for key, bias in dead_relu_bias.BIASES.items():
        model = _common.build_mlp(
            x.shape[1], dead_relu_bias.DEFAULT_WIDTHS, "relu", dead_relu_bias.he_initializer,
            seed=args.seed, bias_initializer=keras.initializers.Constant(bias),
            name=key.replace(".", "_"),
        )
        row(f"dead_relu_bias {key}", model, x, y, CLASSIFIER_LOSS)

    digits = _common.load_dataset("digits", seed=args.seed)
    digits_x = digits.x_test_flat[:PROBE_SAMPLES]
    digits_y = digits.y_test[:PROBE_SAMPLES]
    for key, (label, factory) in symmetry.initializers(symmetry.DEFAULT_CONSTANT).items():
        model = _common.build_mlp(digits_x.shape[1], symmetry.DEFAULT_WIDTHS, "tanh", factory,
                                  seed=args.seed, name=key)
        row(f"symmetry {label}", model, digits_x, digits_y, CLASSIFIER_LOSS)


def residual_mlp(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((RESIDUAL_WIDTH,))
    hidden = keras.layers.Dense(RESIDUAL_WIDTH, name="stem")(inputs)
    for index in range(RESIDUAL_BLOCKS):
        branch = keras.layers.Dense(RESIDUAL_WIDTH, activation="relu", name=f"block{index}_1")(hidden)
        branch = keras.layers.Dense(RESIDUAL_WIDTH, name=f"block{index}_2")(branch)
        hidden = keras.layers.Add(name=f"block{index}_add")([hidden, branch])
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(hidden))


def residual_section(args: argparse.Namespace) -> None:
    print(f"\n## residual MLP: {RESIDUAL_BLOCKS} blocks, width {RESIDUAL_WIDTH}, N(0, 1) probe")
    print(HEADER)
    for seed in range(max(args.seeds, 2)):
        x = np.random.default_rng(seed).standard_normal((PROBE_SAMPLES, RESIDUAL_WIDTH))
        x = x.astype("float32")
        y = np.random.default_rng(seed).integers(0, 10, PROBE_SAMPLES)
        for label, scheme in (("keras default", "keep"), ("reinitialize he", None),
                              ("reinitialize depth_scaled", "depth_scaled")):
            model = residual_mlp(seed)
            if scheme != "keep":
                keras_inits.reinitialize(model, residual=scheme, x=x, seed=seed)
            row(f"residual {label} s{seed}", model, x, y, CLASSIFIER_LOSS)


def resnet_section(args: argparse.Namespace) -> None:
    print(f"\n## keras.applications.ResNet50V2(weights=None, input_shape={RESNET_SHAPE}, "
          f"classes=10), N(0, 1) probe of {RESNET_SAMPLES}")
    print(HEADER)
    keras.utils.set_random_seed(args.seed)
    model = keras.applications.ResNet50V2(weights=None, input_shape=RESNET_SHAPE, classes=10)
    x = np.random.default_rng(args.seed).standard_normal((RESNET_SAMPLES, *RESNET_SHAPE))
    x = x.astype("float32")
    report = row("ResNet50V2 at init", model, x, None, None)
    print(report)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--deep", type=int, default=100, help="extra depth for relu and tanh (0: none)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the examples and the ResNet")
    parser.add_argument("--activations", nargs="+", default=list(depth.ACTIVATIONS))
    parser.add_argument("--quick", action="store_true",
                        help="depth 10, 1 seed, no extra depth, no ResNet")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.deep, args.seeds = 10, 0, 1
        args.sections = [section for section in args.sections if section != "resnet"]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    print(f"keras_inits.diagnose calibration, {keras.backend.backend()} backend")
    sections = {"depth": depth_section, "examples": examples_section,
                "residual": residual_section, "resnet": resnet_section}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lsuv's non-convergence notes, Keras's input warnings
        for name in args.sections:
            sections[name](args)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
