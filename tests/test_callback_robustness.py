"""ActivationStatistics when things go wrong: unbuilt models, a full disk, a deleted event
file, a restart, two callbacks on one log_dir, bad arguments; and training stays untouched.

The full disk is a real small tmpfs where ``mount`` is permitted (root, as here and in CI),
otherwise the writer's low-level write fails with ENOSPC (``writer._os_write`` patched).
Event files are read back with TensorBoard's own ``EventFileLoader``.
"""

from __future__ import annotations

import errno
import gc
import glob
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
import warnings

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2, summary_pb2

import keras_inits
from keras_inits.tensorboard import callback as callback_module
from keras_inits.tensorboard import writer as writer_module

from _stats_helpers import batch, mlp, read_run, scalar_series, weights_of

#: Size of the tmpfs that plays the full disk.
DISK_BYTES = 1024 * 1024
#: One scalar tag checked for its steps in every test.
TAG = "activations/std/00_dense_0"


def compiled_mlp():
    model = mlp(widths=(8,))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def make_callback(log_dir, x, **kwargs):
    kwargs.setdefault("update_freq", "batch")
    kwargs.setdefault("images", False)
    return keras_inits.ActivationStatistics(log_dir, x[:16], **kwargs)


def steps_of(run_dir, tag=TAG):
    return [step for step, _ in scalar_series(read_run(str(run_dir)), tag)]


def all_records_readable(run_dir):
    """Every record of every event file parses (TensorBoard's loader checks the crc32c)."""
    count = 0
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        events = list(event_file_loader.EventFileLoader(path).Load())
        assert events[0].file_version == writer_module.FILE_VERSION
        count += len(events)
        records = list(event_file_loader.RawEventFileLoader(path).Load())
        assert len(records) == len(events)
        assert os.path.getsize(path) == sum(len(record) + 16 for record in records), path
    return count


class AtEpochBegin(keras.callbacks.Callback):
    """Runs ``action(epoch)`` at every epoch begin (put it before the statistics callback)."""

    def __init__(self, action):
        super().__init__()
        self.action = action

    def on_epoch_begin(self, epoch, logs=None):
        self.action(epoch)


# --------------------------------------------------------------------------------------
# The full disk: a real tmpfs, or ENOSPC from the writer's low-level write
# --------------------------------------------------------------------------------------


class Disk:
    """A directory on a small file system that can be filled and freed."""

    def __init__(self, path, monkeypatch):
        self.path = str(path)
        os.makedirs(self.path)
        try:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", self.path],
                capture_output=True, text=True)
            self.mounted = result.returncode == 0
        except OSError:  # no mount command
            self.mounted = False
        self.full = False
        self._filler = os.path.join(self.path, "filler")
        if not self.mounted:
            real_write = writer_module._os_write

            def write(fd, data):
                if self.full:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real_write(fd, data)

            monkeypatch.setattr(writer_module, "_os_write", write)

    def fill(self):
        self.full = True
        if not self.mounted:
            return
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        block = b"\0" * 4096
        try:
            while True:
                os.write(fd, block)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free(self):
        self.full = False
        if self.mounted:
            os.remove(self._filler)

    def unmount(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], check=True)


@pytest.fixture
def disk(tmp_path, monkeypatch):
    small_disk = Disk(tmp_path / "disk", monkeypatch)
    yield small_disk
    small_disk.unmount()


def test_full_disk_steps_are_kept_retried_in_order_and_counted(disk, caplog):
    model = compiled_mlp()
    x, y = batch(64)
    callback = make_callback(disk.path, x)
    queued = {}

    def free_at_epoch_2(epoch):
        if epoch == 2:
            queued["pending"] = callback._writer.pending_steps
            disk.free()

    disk.fill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.INFO, logger="keras_inits"):
            model.fit(x, y, batch_size=32, epochs=4, verbose=0,
                      callbacks=[AtEpochBegin(free_at_epoch_2), callback])
    callback.close()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    # Steps 0-4 failed (2 batches an epoch): warnings at 1, 2 and 4 unwritten steps.
    assert queued["pending"] == [0, 1, 2, 3, 4]
    assert len(messages) == 3, messages
    assert "No space left on device" in messages[0]
    assert "1 steps not written so far (1 kept in memory" in messages[0]
    assert "4 steps not written so far (4 kept in memory" in messages[2]
    assert "5 delayed steps written" in caplog.text
    assert callback.lost_steps == []
    run_dir = os.path.join(disk.path, "activations")
    assert steps_of(run_dir) == list(range(9))
    assert all_records_readable(run_dir) == 1 + 9


def test_full_disk_until_train_end_loses_steps_and_says_which(disk, monkeypatch):
    model = compiled_mlp()
    x, y = batch(64)
    callback = make_callback(disk.path, x, histograms=False)
    # Room for about two events in memory: older ones are dropped, and lost.
    event_bytes = 2 * 1400
    monkeypatch.setattr(writer_module, "MAX_PENDING_BYTES", event_bytes)
    disk.fill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    run_dir = os.path.join(disk.path, "activations")
    assert callback.lost_steps == [0, 1, 2, 3, 4]
    assert messages[-1].startswith(f"5 of 5 steps were not written to {run_dir}: steps 0-4")
    assert "No space left on device" in messages[-1]
    assert sum("steps were not written" in message for message in messages) == 1

    disk.free()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    callback.close()
    assert callback.lost_steps == [0, 1, 2, 3, 4]
    # Step 4 (the first fit's end, lost) was measured already: the second fit writes on at 5.
    assert steps_of(run_dir) == [5, 6]
    all_records_readable(run_dir)


def test_partial_record_is_truncated_so_the_file_stays_readable(tmp_path, monkeypatch):
    writer = writer_module.SummaryWriter(str(tmp_path))
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="t", simple_value=1.0)])
    assert writer.write(summary, 0)
    real_write = writer_module._os_write
    calls = []

    def half_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module, "_os_write", half_then_full)
    assert not writer.write(summary, 1)
    assert writer.pending_steps == [1]
    assert calls[0] > 0 and len(calls) == 2
    events = list(event_file_loader.EventFileLoader(writer.path).Load())
    assert [event.step for event in events if event.HasField("summary")] == [0]
    monkeypatch.setattr(writer_module, "_os_write", real_write)
    assert writer.write(summary, 2)
    writer.close()
    assert writer.delayed_steps == [1] and writer.lost_steps == []
    assert writer_module.steps_on_disk(str(tmp_path)) == [0, 1, 2]


def test_steps_on_disk_tolerates_a_truncated_last_record(tmp_path):
    writer = writer_module.SummaryWriter(str(tmp_path))
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="t", simple_value=1.0)])
    for step in (0, 3):
        writer.write(summary, step)
    writer.close()
    record = writer_module.frame_record(
        event_pb2.Event(step=9, summary=summary).SerializeToString())
    with open(writer.path, "ab") as file:
        file.write(record[:-7])
    assert writer_module.steps_on_disk(str(tmp_path)) == [0, 3]
    name = os.path.basename(writer.path)
    assert re.fullmatch(
        rf"events\.out\.tfevents\.\d{{10}}\.{re.escape(socket.gethostname())}\."
        rf"{os.getpid()}\.\d{{6}}", name)


def test_run_dir_that_cannot_be_created_mid_training_loses_steps_not_training(tmp_path):
    model = compiled_mlp()
    x, y = batch(64)
    log_dir = tmp_path / "logs"
    callback = make_callback(log_dir, x)
    callback.set_model(model)
    callback.write()  # step 0, before fit: the fit's own first write is then a batch end
    callback.close()
    shutil.rmtree(log_dir)
    log_dir.write_text("a file where the log directory was")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(history.history["loss"]) == 2
    assert callback.lost_steps == [1, 2, 3, 4]
    assert len(messages) == 4  # at 1, 2 and 4 unwritten steps, and at train end
    assert "Cannot create the TensorBoard run directory" in messages[0]
    assert messages[-1].startswith("4 of 4 steps were not written to")


# --------------------------------------------------------------------------------------
# A deleted event file
# --------------------------------------------------------------------------------------


def test_deleted_event_file_is_recreated_and_later_steps_land_in_it(tmp_path, caplog):
    model = compiled_mlp()
    x, y = batch(64)
    callback = make_callback(tmp_path, x)
    run_dir = tmp_path / "activations"

    def delete_at_epoch_1(epoch):
        if epoch == 1:
            for path in glob.glob(str(run_dir / "events.out.tfevents.*")):
                os.remove(path)

    with caplog.at_level(logging.WARNING, logger="keras_inits"):
        model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                  callbacks=[AtEpochBegin(delete_at_epoch_1), callback])
    opened = list(callback._writer.paths)
    callback.close()
    assert "was deleted or replaced" in caplog.text
    assert len(opened) == 2 and not os.path.exists(opened[0])
    assert sorted(opened) == opened  # TensorBoard reads a run's files in name order
    files = glob.glob(str(run_dir / "events.out.tfevents.*"))
    assert len(files) == 1
    assert steps_of(run_dir) == [3, 4, 5, 6]  # steps 0-2 went with the deleted file
    assert callback.lost_steps == []
    all_records_readable(str(run_dir))


# --------------------------------------------------------------------------------------
# Restarts: no step written twice
# --------------------------------------------------------------------------------------


class CrashAt(keras.callbacks.Callback):
    """Raises at the first batch end of ``epoch`` (a simulated preemption)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.current = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise RuntimeError("simulated crash")


def all_tag_steps(run_dir):
    run = read_run(str(run_dir))
    return [(tag, step) for tag, series in run.items() for step, _ in series]


def test_backup_and_restore_restart_writes_every_step_once(tmp_path, caplog):
    x, y = batch(64)
    log_dir = tmp_path / "logs"
    backup_dir = str(tmp_path / "backup")

    def fit(callbacks):
        keras.utils.set_random_seed(3)
        model = compiled_mlp()
        model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=callbacks)
        return model

    crashed = make_callback(log_dir, x)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit([keras.callbacks.BackupAndRestore(backup_dir), crashed, CrashAt(2)])
    assert steps_of(log_dir / "activations") == [0, 1, 2, 3, 4, 5]
    # The process that crashed is gone: so is its callback.
    del crashed
    gc.collect()

    resumed = make_callback(log_dir, x)
    with caplog.at_level(logging.INFO, logger="keras_inits"):
        # BackupAndRestore after ours: it restores the step in its on_train_begin.
        fit([resumed, keras.callbacks.BackupAndRestore(backup_dir)])
    resumed.close()
    assert resumed.run_dir == str(log_dir / "activations")
    assert "already holds steps up to 5: steps 4-5 of this training are not written" in caplog.text
    pairs = all_tag_steps(log_dir / "activations")
    assert len(pairs) == len(set(pairs))
    assert steps_of(log_dir / "activations") == list(range(9))


def test_new_training_into_an_old_log_dir_gets_a_new_run(tmp_path):
    x, y = batch(64)
    first = make_callback(tmp_path, x)
    compiled_mlp().fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[first])
    first.close()
    second = make_callback(tmp_path, x)
    message = (r"writes to .*activations_1.*holds an earlier training \(steps 0-2\) "
               r"and this one starts at step 0")
    with pytest.warns(RuntimeWarning, match=message):
        compiled_mlp().fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[second])
    second.close()
    assert steps_of(tmp_path / "activations") == [0, 1, 2]
    assert steps_of(tmp_path / "activations_1") == [0, 1, 2]


# --------------------------------------------------------------------------------------
# Two callbacks on one log_dir
# --------------------------------------------------------------------------------------


def test_two_callbacks_in_one_fit_get_separate_runs(tmp_path):
    model = compiled_mlp()
    x, y = batch(64)
    first = make_callback(tmp_path, x)
    second = make_callback(tmp_path, x, update_freq="epoch")
    with pytest.warns(RuntimeWarning, match="written by another callback"):
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[first, second])
    first.close()
    second.close()
    assert first.run_dir == str(tmp_path / "activations")
    assert second.run_dir == str(tmp_path / "activations_1")
    assert steps_of(first.run_dir) == [0, 1, 2, 3, 4]
    assert steps_of(second.run_dir) == [0, 2, 4]
    assert not glob.glob(str(tmp_path / "*" / callback_module.LOCK_NAME))  # released


def test_sequential_fits_with_new_callbacks_continue_one_run(tmp_path):
    model = compiled_mlp()
    x, y = batch(64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for _ in range(2):
            callback = make_callback(tmp_path, x, update_freq="epoch")
            model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
            callback.close()
    assert steps_of(tmp_path / "activations") == [0, 2, 4, 6, 8]
    assert not (tmp_path / "activations_1").exists()


def test_lock_of_a_live_process_is_respected_and_of_a_dead_one_ignored(tmp_path):
    x, y = batch(64)
    run_dir = tmp_path / "activations"
    run_dir.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    host = socket.gethostname()
    (run_dir / callback_module.LOCK_NAME).write_text(f"{dead_pid} {host}\n")
    callback = make_callback(tmp_path, x, update_freq="epoch")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        compiled_mlp().fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    callback.close()
    assert callback.run_dir == str(run_dir)

    live = tmp_path / "live"
    (live / "activations").mkdir(parents=True)
    (live / "activations" / callback_module.LOCK_NAME).write_text(f"{os.getppid()} {host}\n")
    callback = make_callback(live, x, update_freq="epoch")
    with pytest.warns(RuntimeWarning, match="written by another callback"):
        compiled_mlp().fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    callback.close()
    assert callback.run_dir == str(live / "activations_1")


# --------------------------------------------------------------------------------------
# Unbuilt models
# --------------------------------------------------------------------------------------


class BuiltInInit(keras.Model):
    """Calls ``build`` in ``__init__``: the model says built, its layers are not."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh", name="hidden")
        self.head = keras.layers.Dense(1, name="head")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Keras: "it has unbuilt state"
            self.build((None, 6))

    def call(self, inputs):
        return self.head(self.hidden(inputs))


class NeedsValues(keras.Model):
    """A ``call`` that cannot run symbolically (it reads the batch size as a number)."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh", name="hidden")
        self.head = keras.layers.Dense(1, name="head")

    def call(self, inputs):
        samples = int(inputs.shape[0])
        return self.head(self.hidden(inputs)) * (samples / samples)


@pytest.mark.parametrize("make_model", [BuiltInInit, NeedsValues])
def test_models_whose_layers_are_unbuilt_at_train_begin(tmp_path, make_model):
    model = make_model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = batch(64)
    callback = make_callback(tmp_path, x, update_freq="epoch")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    callback.close()
    run = read_run(str(tmp_path / "activations"))
    assert [step for step, _ in scalar_series(run, "activations/std/00_hidden")] == [0, 2]
    assert {tag for tag in run if tag.startswith("activations/std/")} == {
        "activations/std/00_hidden", "activations/std/01_head"}


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_dir, error", [
    (None, TypeError), ("", ValueError), (123, TypeError), (b"x", TypeError),
])
def test_bad_log_dir_named_at_construction(log_dir, error):
    x, _ = batch(8)
    with pytest.raises(error, match=re.escape(f"Received: log_dir={log_dir!r}")):
        keras_inits.ActivationStatistics(log_dir, x)


def test_log_dir_that_is_a_file_named_at_construction(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a directory")
    x, _ = batch(8)
    with pytest.raises(ValueError, match=re.escape(f"not an existing file. Received: "
                                                   f"log_dir={path!r}")):
        keras_inits.ActivationStatistics(path, x)


@pytest.mark.parametrize("argument", ["histograms", "images", "gradients"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_flag_named_at_construction(argument, value):
    x, y = batch(8)
    with pytest.raises(TypeError, match=re.escape(f"Received: {argument}={value!r}")):
        keras_inits.ActivationStatistics("logs", (x, y), **{argument: value})


@pytest.mark.parametrize("layers", [3, 2.5, {"dense_0"}])
def test_bad_layers_named_at_construction(layers):
    x, _ = batch(8)
    with pytest.raises(TypeError, match=re.escape(f"Received: layers={layers!r}")):
        keras_inits.ActivationStatistics("logs", x, layers=layers)


@pytest.mark.parametrize("step, error", [
    ("a", TypeError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
    (np.float32(2), TypeError),
])
def test_bad_write_step_named(tmp_path, step, error):
    x, _ = batch(8)
    callback = keras_inits.ActivationStatistics(tmp_path, x, images=False)
    callback.set_model(mlp())
    with pytest.raises(error, match=re.escape(f"Received: step={step!r}")):
        callback.write(step=step)
    assert not (tmp_path / "activations").exists()


def test_numpy_integers_accepted_for_step_and_update_freq(tmp_path):
    x, y = batch(64)
    callback = make_callback(tmp_path, x, update_freq=np.int64(2), images=np.bool_(False))
    assert callback.update_freq == 2 and isinstance(callback.update_freq, int)
    callback.set_model(mlp(widths=(8,)))
    callback.write(step=np.int64(5))
    callback.write(step=np.uint8(7))
    statistics = callback.write(step=6)  # measured, but at or below a step already written
    callback.close()
    assert statistics["dense_0"].std > 0
    assert steps_of(tmp_path / "activations") == [5, 7]


# --------------------------------------------------------------------------------------
# Training is untouched in every failure scenario
# --------------------------------------------------------------------------------------


def _train(log_dir, scenario, disk=None):
    keras.utils.set_random_seed(11)
    model = mlp(widths=(8,), dropout=0.3)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = batch(96)
    callbacks = []
    if scenario != "without":
        callbacks.append(make_callback(log_dir, x, histograms=True))
    if scenario == "two_callbacks":
        callbacks.append(make_callback(log_dir, x, update_freq=2))
    if scenario == "full_disk":
        disk.fill()
        callbacks.insert(0, AtEpochBegin(lambda epoch: epoch == 1 and disk.free()))
    if scenario == "deleted_file":
        def delete(epoch):
            for path in glob.glob(os.path.join(log_dir, "activations", "events.*")):
                os.remove(path)
        callbacks.insert(0, AtEpochBegin(delete))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(x, y, batch_size=32, epochs=3, shuffle=True, callbacks=callbacks, verbose=0)
    for callback in callbacks:
        if isinstance(callback, keras_inits.ActivationStatistics):
            callback.close()
    return weights_of(model)


def test_same_final_weights_with_the_callback_in_every_failure_scenario(tmp_path, disk):
    without = _train(None, "without")
    for scenario in ("full_disk", "deleted_file", "two_callbacks"):
        log_dir = disk.path if scenario == "full_disk" else str(tmp_path / uuid.uuid4().hex)
        with_callback = _train(log_dir, scenario, disk)
        assert len(without) == len(with_callback)
        for a, b in zip(without, with_callback):
            np.testing.assert_array_equal(a, b, err_msg=scenario)
