"""ActivationStatistics(diagnose=True): the findings in TensorBoard's Text tab and in the log."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

import keras_inits
from keras_inits.tensorboard import callback as callback_module
from keras_inits.tensorboard.protos import DIAGNOSIS_TAG

WIDTH = 32
DEPTH = 8
SAMPLES = 64


def tanh_mlp(std: float, seed: int = 0) -> keras.Model:
    """A tanh MLP whose kernels are N(0, std^2): 0.01 vanishes, Xavier's 1/sqrt(WIDTH) holds."""
    keras.utils.set_random_seed(seed)
    layers = [
        keras.layers.Dense(WIDTH, activation="tanh", name=f"dense_{index}",
                           kernel_initializer=keras.initializers.RandomNormal(0.0, std, seed=index))
        for index in range(DEPTH)
    ]
    model = keras.Sequential([keras.Input((WIDTH,)), *layers, keras.layers.Dense(4, name="head")])
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((SAMPLES, WIDTH)).astype("float32"), rng.integers(0, 4, SAMPLES)


def diagnosis_texts(run_dir: Path) -> list[tuple[int, str]]:
    """(step, text) of every diagnosis text in the run's event files, read as TensorBoard does."""
    texts = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == DIAGNOSIS_TAG:
                    assert value.metadata.plugin_data.plugin_name == "text"
                    texts.append((event.step, tensor_util.make_ndarray(value.tensor).item().decode()))
    return texts


def test_a_vanishing_start_is_named_in_the_text_tab_and_logged_once(tmp_path, caplog):
    x, y = data()
    model = tanh_mlp(0.01)
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, images=False, histograms=False)
    with caplog.at_level(logging.INFO, logger="keras_inits"):
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    texts = diagnosis_texts(Path(callback.run_dir))
    # written at the first write (step 0); later only when the findings change
    assert texts[0][0] == 0 and len(texts) <= 3
    text = texts[0][1]
    assert "vanishing_signal" in text and f"dense_{DEPTH - 1}" in text and "VANISHING_RATIO" in text
    assert "vanishing_signal" in callback.last_diagnosis.kinds()
    # three writes (steps 0, 4, 8), one log: at the first write of the fit
    logged = [record for record in caplog.records if "diagnosis" in record.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert "vanishing_signal" in logged[0].getMessage() and "step 0" in logged[0].getMessage()


def test_a_healthy_start_says_so_once(tmp_path, caplog):
    x, y = data()
    model = tanh_mlp(1.0 / np.sqrt(WIDTH))
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, images=False, histograms=False)
    with caplog.at_level(logging.INFO, logger="keras_inits"):
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    texts = diagnosis_texts(Path(callback.run_dir))
    assert len(texts) == 1 and texts[0][0] == 0
    assert "No problems found" in texts[0][1]
    assert callback.last_diagnosis.ok
    logged = [record for record in caplog.records if "No problems found" in record.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.INFO


def test_the_text_is_written_again_only_when_the_findings_change(tmp_path):
    x, _ = data()
    model = tanh_mlp(0.01)
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, images=False, histograms=False)
    callback.set_model(model)
    callback.write(0)
    callback.write(1)  # same weights, same findings: no text
    healthy = tanh_mlp(1.0 / np.sqrt(WIDTH))
    model.set_weights(healthy.get_weights())
    callback.write(2)  # the findings changed: a text that says so
    callback.write(3)
    callback.close()
    texts = diagnosis_texts(Path(callback.run_dir))
    assert [step for step, _ in texts] == [0, 2]
    assert "vanishing_signal" in texts[0][1] and "No problems found" in texts[1][1]


def test_diagnose_false_writes_no_text(tmp_path):
    x, y = data()
    model = tanh_mlp(0.01)
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, images=False, histograms=False, diagnose=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    assert diagnosis_texts(Path(callback.run_dir)) == []
    assert callback.last_diagnosis is None


def test_diagnose_must_be_a_bool(tmp_path):
    with pytest.raises(TypeError, match=r"diagnose.*Received: diagnose='yes'"):
        keras_inits.ActivationStatistics(str(tmp_path), data()[0], diagnose="yes")


def test_a_failing_diagnosis_never_stops_training(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(callback_module, "diagnose_statistics", broken)
    x, y = data()
    model = tanh_mlp(1.0 / np.sqrt(WIDTH))
    reference = tanh_mlp(1.0 / np.sqrt(WIDTH))
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, images=False, histograms=False)
    with caplog.at_level(logging.WARNING, logger="keras_inits"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback], shuffle=False)
    reference.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert any("no diagnosis at step 0: RuntimeError: boom" in r.getMessage() for r in caplog.records)
    assert diagnosis_texts(Path(callback.run_dir)) == []
    for got, expected in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, expected)


def test_untrained_batch_normalization_is_diagnosed_from_a_training_mode_pass(tmp_path, monkeypatch):
    # The statistics written stay inference-mode ones (batch normalization as identities:
    # the signal vanishes); the diagnosis is of the pass fit runs, until BN has trained.
    layers = [keras.Input((WIDTH,))]
    for index in range(6):
        layers += [keras.layers.Dense(WIDTH, use_bias=False, name=f"dense_{index}",
                                      kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05, seed=index)),
                   keras.layers.BatchNormalization(name=f"bn_{index}"),
                   keras.layers.ReLU(name=f"relu_{index}")]
    model = keras.Sequential([*layers, keras.layers.Dense(4, name="head")])
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data()
    passes = []
    measure = callback_module.diagnose_statistics

    def counting(*args, **kwargs):
        passes.append(kwargs.get("training"))
        return measure(*args, **kwargs)

    monkeypatch.setattr(callback_module, "diagnose_statistics", counting)
    at_init = keras_inits.activation_statistics(model, x)  # what step 0 writes
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, images=False, histograms=False)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    texts = diagnosis_texts(Path(callback.run_dir))
    assert texts[0][0] == 0 and "No problems found" in texts[0][1]
    assert "training mode (batch normalization never trained)" in texts[0][1]
    # One training-mode pass at step 0; after an epoch of training, the written statistics.
    assert passes == [True, None, None]
    assert at_init["head"].pre_std < 1e-2 * at_init["dense_0"].pre_std


def test_a_collapse_behind_a_rescaling_is_explained_from_the_probe_batch(tmp_path):
    # The callback gives diagnose its probe batch: N(0, 1) data (mean cosine ~0) behind a
    # Rescaling made for pixels gets the data remedy, as from diagnose() and the CLI.
    inputs = keras.Input((WIDTH,))
    hidden = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescaling")(inputs)
    for index in range(3):
        hidden = keras.layers.Dense(WIDTH, activation="tanh", name=f"dense_{index}",
                                    kernel_initializer=keras.initializers.GlorotNormal(index))(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(hidden))
    x, _ = data()
    callback = keras_inits.ActivationStatistics(str(tmp_path), x, images=False, histograms=False)
    callback.set_model(model)
    callback.write(0)
    callback.close()
    (finding,) = [f for f in callback.last_diagnosis.findings if f.kind == "collapsed_inputs"]
    assert abs(finding.evidence["input_cosine"]) < 0.1
    assert "Rescaling 'rescaling'" in finding.remedy
    (text,) = [text for _, text in diagnosis_texts(Path(callback.run_dir))]
    # The Text tab renders markdown with the HTML entities of the escaped text.
    assert "input_cosine" in text and "Rescaling 'rescaling'" in html.unescape(text)
