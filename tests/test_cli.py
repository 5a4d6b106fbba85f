"""``python -m keras_inits diagnose``: exit status 0 ok, 1 findings, 2 the command could not run.

The command runs in a subprocess (``sys.executable -m keras_inits``, this backend, this
checkout on ``PYTHONPATH``) on models saved here; the usage errors that need no model run
in-process through :func:`keras_inits.cli.main`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_inits
from keras_inits import cli

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 16
DEPTH = 6
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment["KERAS_BACKEND"] = keras.backend.backend()
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run(
        [sys.executable, "-m", "keras_inits", *arguments],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=300,
    )


def save_mlp(path: Path, kernel, *, compiled: bool = False) -> Path:
    inputs = keras.Input((WIDTH,))
    hidden = inputs
    for index in range(DEPTH):
        hidden = keras.layers.Dense(
            WIDTH, activation="tanh", kernel_initializer=kernel(index), name=f"dense_{index}"
        )(hidden)
    model = keras.Model(inputs, hidden)
    if compiled:
        model.compile(loss="mse")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "healthy": save_mlp(folder / "healthy.keras", lambda i: keras_inits.Xavier(seed=i)),
        "saturated": save_mlp(
            folder / "saturated.keras",
            lambda i: keras.initializers.RandomNormal(0.0, 1.0, seed=i),
            compiled=True,
        ),
    }


def test_healthy_model_exits_0_and_writes_the_figure(models, tmp_path):
    result = run("diagnose", str(models["healthy"]), "--out", str(tmp_path / "figures"),
                 "--samples", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "No problems found" in result.stdout
    figure = tmp_path / "figures" / "healthy_depth_profile.png"
    assert figure.read_bytes().startswith(PNG_SIGNATURE)
    assert str(figure) in result.stdout


def test_untrained_batch_normalization_is_probed_in_training_mode(tmp_path):
    # Dense(std 0.05) + BatchNormalization + relu: in inference mode (BN as identities) the
    # signal vanishes; fit runs batch statistics, and so does the command.
    layers = [keras.Input((WIDTH,))]
    for index in range(DEPTH):
        layers += [keras.layers.Dense(WIDTH, use_bias=False, name=f"dense_{index}",
                                      kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05, seed=index)),
                   keras.layers.BatchNormalization(name=f"bn_{index}"), keras.layers.ReLU()]
    path = tmp_path / "batch_norm.keras"
    keras.Sequential(layers).save(path)
    result = run("diagnose", str(path), "--samples", "64", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No problems found" in result.stdout
    assert "in training mode (batch normalization never trained)" in result.stdout


def test_broken_model_with_data_exits_1(models, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "probe.npz"
    np.savez(data, x=rng.standard_normal((80, WIDTH)).astype("float32"),
             y=rng.standard_normal((80, WIDTH)).astype("float32"))
    result = run("diagnose", str(models["saturated"]), "--data", str(data), "--samples", "64",
                 cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "saturation" in result.stdout
    assert "dense_0" in result.stdout
    assert "Xavier('tanh')" in result.stdout
    assert "grad_std/last" in result.stdout  # y was used: gradients measured
    assert (tmp_path / "saturated_depth_profile.png").is_file()  # default --out: here


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("diagnose", "missing.keras"), "no such model file: 'missing.keras'"),
        (("diagnose", "{healthy}", "--samples", "0"), "--samples: must be an integer >= 1"),
    ],
)
def test_bad_usage_exits_2_with_one_line(models, tmp_path, arguments, message):
    arguments = [argument.format(healthy=models["healthy"]) for argument in arguments]
    result = run(*arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert result.stdout == ""


def test_usage_errors_in_process(models, tmp_path, capsys):
    not_a_model = tmp_path / "not_a_model.keras"
    not_a_model.write_bytes(b"not a zip")
    assert cli.main(["diagnose", str(not_a_model)]) == cli.EXIT_USAGE
    assert "cannot load" in capsys.readouterr().err

    two_arrays = tmp_path / "two.npz"
    np.savez(two_arrays, a=np.zeros((2, WIDTH)), b=np.zeros((2, WIDTH)))
    assert cli.main(["diagnose", str(models["healthy"]), "--data", str(two_arrays)]) == 2
    assert "Received keys: ['a', 'b']" in capsys.readouterr().err

    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert cli.main(["diagnose", str(models["healthy"]), "--data", str(pickled)]) == 2
    assert "cannot read" in capsys.readouterr().err

    wrong_shape = tmp_path / "wrong.npy"
    np.save(wrong_shape, np.zeros((4, WIDTH + 1), "float32"))
    assert cli.main(["diagnose", str(models["healthy"]), "--data", str(wrong_shape)]) == 2
    assert "cannot probe the model" in capsys.readouterr().err

    for bad in (["diagnose"], ["diagnose", "m.keras", "--bogus"], ["diagnose", "m.keras", "--seed", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(bad)
        assert exit_info.value.code == 2
    capsys.readouterr()
