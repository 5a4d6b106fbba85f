"""Helpers shared by the statistics, callback and TensorBoard-server tests."""

from __future__ import annotations

import glob
import os
from collections import defaultdict

import keras
import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

from keras_inits import backend


def mlp(widths=(16, 8), activation="tanh", input_dim=6, name=None, dropout=None, seed=0):
    """A small Sequential MLP with seeded initializers."""
    layers = [keras.Input((input_dim,))]
    for index, width in enumerate(widths):
        layers.append(
            keras.layers.Dense(
                width,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotNormal(seed=seed + index),
                name=f"dense_{index}",
            )
        )
        if dropout is not None:
            layers.append(keras.layers.Dropout(dropout, seed=seed, name=f"dropout_{index}"))
    layers.append(keras.layers.Dense(1, name="out",
                                     kernel_initializer=keras.initializers.GlorotNormal(seed=99)))
    return keras.Sequential(layers, name=name)


def batch(n=64, dim=6, seed=0):
    """Standard-normal float32 inputs and a regression target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    y = (x[:, :1] * 0.5 + rng.normal(scale=0.1, size=(n, 1))).astype("float32")
    return x, y


def weights_of(model):
    """Copies of every weight of a model."""
    read = backend.current().to_numpy
    return [np.array(read(variable), copy=True) for variable in model.weights]


def read_run(run_dir):
    """Every tensor summary in a run directory: {tag: [(step, ndarray or bytes list)]}.

    Read with TensorBoard's own reader (``EventFileLoader`` + ``tensor_util.make_ndarray``),
    which needs no TensorFlow.
    """
    values = defaultdict(list)
    files = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
    assert files, f"no event file in {run_dir}"
    for path in files:
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.HasField("tensor"):
                    values[value.tag].append((event.step, tensor_util.make_ndarray(value.tensor)))
    return dict(values)


def scalar_series(run, tag):
    """[(step, float)] of one scalar tag."""
    return [(step, float(value)) for step, value in run[tag]]
