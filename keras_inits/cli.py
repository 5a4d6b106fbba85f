"""The command line: ``python -m keras_inits diagnose MODEL.keras [options]``.

``diagnose`` loads a saved model in Keras's safe mode (after ``import keras_inits``, which
registers every initializer), probes it with the given data or with N(0, 1) inputs of the
model's input shape, prints the :class:`keras_inits.diagnose.DiagnosisReport` and writes the
depth-profile figure (std, pre-activation std and mean cosine similarity by layer) as
``<out>/<model name>_depth_profile.png``.

Exit status: 0 when the report is ok, 1 when it has findings, 2 when the command could not
run (bad usage: a missing file, an unknown option, ``--samples`` below 1; a file that is not
a model or not an array; data that does not fit the model), with a one-line message on
stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np

from keras_inits.diagnose import DiagnosisReport, diagnose, untrained_batch_norm
from keras_inits.stats import activation_statistics
from keras_inits.tensorboard import image

#: Probe samples when ``--samples`` is not given.
DEFAULT_SAMPLES = 256
#: Exit status of a report with no findings, with findings, and of a command that could not run.
EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
#: Suffix of the figure's file name, after the model file's stem.
FIGURE_SUFFIX = "_depth_profile.png"


class UsageError(Exception):
    """A reason the command cannot run: printed as one line, exit status 2."""


def _integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= minimum``, else a usage error naming the text."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}. Received: {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m keras_inits`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m keras_inits",
        description="keras_inits command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = commands.add_parser(
        "diagnose",
        help="probe a saved model and say what is wrong with its start",
        description="Load MODEL (a .keras file, safe mode), probe it with --data or N(0, 1) "
        "inputs, print the diagnosis and write the depth-profile figure. Exit status: 0 ok, "
        "1 findings, 2 the command could not run.",
    )
    command.add_argument("model", metavar="MODEL.keras", type=Path, help="the saved model")
    command.add_argument(
        "--data", type=Path, default=None, metavar="FILE",
        help="probe data: a .npy array, or a .npz with arrays x (and y: gradients too) or a "
        "single array (default: N(0, 1) inputs of the model's input shape)",
    )
    command.add_argument(
        "--samples", type=_integer_at_least(1), default=DEFAULT_SAMPLES, metavar="N",
        help=f"probe samples: the first N of --data, or N random inputs (default {DEFAULT_SAMPLES})",
    )
    command.add_argument(
        "--seed", type=_integer_at_least(0), default=0, metavar="S", help="seed of the N(0, 1) inputs (default 0)"
    )
    command.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR",
        help=f"folder of the figure MODEL{FIGURE_SUFFIX} (default: the current directory)",
    )
    return parser


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def load_model(path: Path) -> keras.Model:
    """``keras.models.load_model(path, safe_mode=True)``; a usage error if it cannot."""
    if not path.is_file():
        raise UsageError(f"no such model file: {str(path)!r}")
    try:
        with warnings.catch_warnings():
            # Keras rebuilds the optimizer lazily and warns that its variables were skipped.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.models.load_model(path, safe_mode=True)
    except Exception as error:  # any failure to load: a corrupt file, an unsafe lambda...
        raise UsageError(f"cannot load {str(path)!r}: {_first_line(error)}") from None


def load_data(path: Path, samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (and ``y``) from a .npy or .npz file (no pickles), the first ``samples`` of them."""
    if not path.is_file():
        raise UsageError(f"no such data file: {str(path)!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {str(path)!r} as .npy or .npz: {_first_line(error)}") from None
    y = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            try:
                if "x" in keys:
                    x = loaded["x"]
                    y = loaded["y"] if "y" in keys else None
                elif len(keys) == 1:
                    x = loaded[keys[0]]
                else:
                    raise UsageError(
                        f"{str(path)!r} must hold arrays 'x' (and 'y') or a single array. "
                        f"Received keys: {keys!r}"
                    )
            except ValueError as error:  # a pickled (object) member
                raise UsageError(f"cannot read {str(path)!r}: {_first_line(error)}") from None
    else:
        x = loaded
    if x.ndim == 0 or len(x) == 0:
        raise UsageError(f"{str(path)!r} holds no samples. Received shape: {x.shape!r}")
    if y is not None and (y.ndim == 0 or len(y) != len(x)):
        raise UsageError(
            f"{str(path)!r}: y must hold one target per sample of x. Received shapes: "
            f"x {x.shape!r}, y {y.shape!r}"
        )
    return x[:samples], (None if y is None else y[:samples])


def random_inputs(model: keras.Model, samples: int, seed: int) -> Any:
    """``samples`` N(0, 1) inputs of the model's input shape (float inputs only)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    shapes = getattr(model, "_build_shapes_dict", None)
    if inputs:
        structure = inputs[0] if len(inputs) == 1 else inputs
    elif shapes and len(shapes) == 1:
        structure = keras.KerasTensor(tuple(next(iter(shapes.values()))), dtype=keras.config.floatx())
    else:
        raise UsageError(
            f"the input shape of {model.name!r} is unknown (a subclassed model): pass --data"
        )
    rng = np.random.default_rng(seed)

    def sample(spec: Any) -> np.ndarray:
        dtype = keras.backend.standardize_dtype(spec.dtype)
        if "float" not in dtype:
            raise UsageError(
                f"{model.name!r} takes {dtype} inputs, which N(0, 1) cannot fill: pass --data"
            )
        shape = tuple(spec.shape[1:])
        if any(dim is None for dim in shape):
            raise UsageError(
                f"{model.name!r} has an open input dimension {shape!r}: pass --data"
            )
        return rng.standard_normal((samples, *shape)).astype(dtype)

    return keras.tree.map_structure(sample, structure)


def write_figure(report_statistics: Any, path: Path, title: str) -> Path | None:
    """The depth-profile PNG of the statistics at ``path``, titled; ``None`` without matplotlib."""
    if not image.matplotlib_available():
        return None
    png, _, _ = image.DepthProfilePlot().render(report_statistics, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def run_diagnose(arguments: argparse.Namespace) -> int:
    """The ``diagnose`` command; returns the exit status."""
    model = load_model(arguments.model)
    if arguments.data is not None:
        x, y = load_data(arguments.data, arguments.samples)
    else:
        x, y = random_inputs(model, arguments.samples, arguments.seed), None
    if y is not None and getattr(model, "loss", None) is None:
        print("note: y ignored (the model was saved without a compiled loss)", file=sys.stderr)
        y = None
    # As diagnose() does: untrained batch normalization is probed as fit runs it.
    training = bool(untrained_batch_norm(model))
    try:
        statistics = activation_statistics(model, x, y=y, gradients=y is not None,
                                           training=training)
    except (ValueError, TypeError) as error:
        raise UsageError(f"cannot probe the model with this data: {_first_line(error)}") from None
    report: DiagnosisReport = diagnose(model, x, statistics=statistics, training=training)
    print(report)
    mode = ", training mode" if training else ""
    figure = write_figure(statistics, arguments.out / f"{arguments.model.stem}{FIGURE_SUFFIX}",
                          title=f"{arguments.model.name}, as loaded{mode}")
    if figure is None:
        print("note: no figure (matplotlib is not installed)", file=sys.stderr)
    else:
        print(f"\ndepth profile: {figure}")
    return EXIT_OK if report.ok else EXIT_FINDINGS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits 2 itself on bad options)."""
    arguments = build_parser().parse_args(argv)
    try:
        return run_diagnose(arguments)
    except UsageError as error:
        print(f"python -m keras_inits diagnose: error: {error}", file=sys.stderr)
        return EXIT_USAGE
