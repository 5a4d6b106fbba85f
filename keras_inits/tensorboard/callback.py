"""``ActivationStatistics``: per-layer activation statistics in TensorBoard during training.

The statistics are measured in a probe pass from the callback (never with summary ops
inside the model's compiled ``call``, which logs wrong steps: keras#20143), on a fixed probe
batch, and written at the optimizer's iteration count, so that they line up with
``keras.callbacks.TensorBoard``'s batch steps and continue across several ``fit`` calls.
The event files are written without TensorFlow (:mod:`keras_inits.tensorboard.writer`), so
the callback runs on every Keras backend.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import warnings
import weakref
from typing import Any, Literal, Union

import keras
import numpy as np

from keras_inits import _checks, _probe, backend
from keras_inits._probe import LayerSelection
from keras_inits.diagnose import DiagnosisReport, diagnose as diagnose_statistics, untrained_batch_norm
from keras_inits.stats import LayerStatistics, input_std_of, measure
from keras_inits.tensorboard import protos
from keras_inits.tensorboard.image import DepthProfilePlot, matplotlib_available
from keras_inits.tensorboard.profile import DepthProfileRuns
from keras_inits.tensorboard.writer import SummaryWriter, steps_on_disk

logger = logging.getLogger("keras_inits")

#: Name of the run directory under ``log_dir`` (beside Keras's ``train`` and ``validation``).
RUN_NAME = "activations"
#: File in a run directory naming the process (``pid host``) whose callback writes there.
LOCK_NAME = "keras_inits.lock"

UpdateFrequency = Union[Literal["epoch", "batch"], int]


def _validate_update_freq(update_freq: Any, argument: str) -> Literal["epoch"] | int:
    """``"epoch"``, or the number of batches between writes (``"batch"`` is 1)."""
    if isinstance(update_freq, str):
        if update_freq == "epoch":
            return update_freq
        if update_freq == "batch":
            return 1
    elif (isinstance(update_freq, (int, np.integer)) and not isinstance(update_freq, bool)
          and update_freq >= 1):
        return int(update_freq)
    raise ValueError(
        f'`{argument}` must be "epoch", "batch" or a positive number of batches. '
        f"Received: {argument}={update_freq!r}"
    )


def _resolve_update_freq(update_freq: Any, freq: Any) -> Literal["epoch"] | int:
    """Take ``update_freq``, or the deprecated ``freq`` with a ``DeprecationWarning``."""
    if freq is None:
        return _validate_update_freq(update_freq, "update_freq")
    if update_freq != "epoch":
        raise TypeError(
            "Pass `update_freq` only (`freq` is its deprecated name). "
            f"Received: freq={freq!r}, update_freq={update_freq!r}"
        )
    warnings.warn(
        "`freq` is deprecated and will be removed in keras_inits 0.3: use `update_freq` "
        f"(the name keras.callbacks.TensorBoard uses). Received: freq={freq!r}",
        DeprecationWarning,
        stacklevel=3,
    )
    return _validate_update_freq(freq, "freq")


def _validate_log_dir(log_dir: Any) -> str:
    if not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(
            f"`log_dir` must be a path (str or os.PathLike). Received: log_dir={log_dir!r}"
        )
    path = os.fspath(log_dir)
    if not isinstance(path, str):
        raise TypeError(f"`log_dir` must be a text path. Received: log_dir={log_dir!r}")
    if not path:
        raise ValueError(f"`log_dir` must not be empty. Received: log_dir={log_dir!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"`log_dir` must be a directory, not an existing file. Received: log_dir={log_dir!r}"
        )
    return path


def _validated_layers(layers: Any) -> LayerSelection:
    """``layers=`` with its type checked (which names exist is checked against the model)."""
    _probe.check_selection(layers)
    return layers


def _format_steps(steps: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    ordered = sorted(set(steps))
    ranges: list[list[int]] = []
    for step in ordered:
        if ranges and step == ranges[-1][1] + 1:
            ranges[-1][1] = step
        else:
            ranges.append([step, step])
    return ", ".join(f"{first}-{last}" if first != last else f"{first}" for first, last in ranges)


def _is_power_of_two(count: int) -> bool:
    return count > 0 and count & (count - 1) == 0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Run directories claimed by a live callback of this process (real path -> callback).
_LIVE_RUNS: dict[str, weakref.ref] = {}


def _read_lock(run_dir: str) -> tuple[int, str] | None:
    """``(pid, host)`` from a run directory's lock file, or ``None``."""
    try:
        with open(os.path.join(run_dir, LOCK_NAME), encoding="utf-8") as file:
            pid, host = file.read().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _as_arrays(value: Any, argument: str) -> Any:
    """The probe batch as NumPy arrays (kept fixed for the whole training)."""
    if value is None:
        return None

    def convert(item: Any) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return item
        try:
            return np.asarray(keras.ops.convert_to_numpy(item))
        except Exception:  # noqa: BLE001 - reported below with the argument's name
            raise ValueError(
                f"`{argument}` must be an array or a list/dict of arrays (a tf.data.Dataset "
                f"is not accepted: take one batch of it). Received: {argument} of type "
                f"{type(item).__name__}"
            ) from None

    return keras.tree.map_structure(convert, value)


def _as_tensor_if_float32(array: Any) -> Any:
    """A float32 NumPy array as a backend tensor; anything else as it is (Keras converts
    other dtypes at each call as the model's inputs ask)."""
    if isinstance(array, np.ndarray) and array.dtype == np.float32:
        return keras.ops.convert_to_tensor(array)
    return array


def _symbolic_batch(x: Any) -> Any:
    """``keras.Input`` tensors shaped like ``x`` with any batch size."""
    return keras.tree.map_structure(
        lambda array: keras.Input(shape=array.shape[1:], dtype=str(array.dtype)), x
    )


def _output_layer_path(model: keras.Model, selected: dict[str, keras.layers.Layer]) -> str | None:
    """Path of the monitored layer that computes the model's (first) output.

    Read from the output's Keras history for Sequential and Functional models; ``None`` when
    that layer is not monitored. A subclassed model has no symbolic output: its deepest
    monitored layer is taken.
    """
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        return next(reversed(selected), None) if selected else None
    history = getattr(keras.tree.flatten(outputs)[0], "_keras_history", None)
    operation = getattr(history, "operation", None)
    for path, layer in selected.items():
        if layer is operation:
            return path
    return None


class ActivationStatistics(keras.callbacks.Callback):
    """Writes per-layer activation statistics of a probe batch to TensorBoard.

    At the start of training (the state the initializer produced, step 0 of a fresh model;
    measured at the first epoch's begin), then after every epoch (``update_freq="epoch"``),
    every batch (``"batch"``) or every ``update_freq`` batches (optimizer steps), the callback
    runs the model once on the probe batch ``data`` in inference mode, computes
    :func:`keras_inits.activation_statistics` for every monitored layer and writes them to
    ``<log_dir>/activations`` (or ``activations_<n>``, below), so it can share a ``log_dir`` with
    ``keras.callbacks.TensorBoard``. The step is ``model.optimizer.iterations``: it goes on
    across several ``fit`` calls and matches Keras's batch steps (256 samples, batch 64,
    2 epochs, ``update_freq="epoch"``: steps 0, 4, 8). A step already written is not written
    again (the start of a second ``fit``, a restart: see below). Models that are not built
    yet (a ``Sequential`` without ``Input``, a subclassed model) are built at
    ``on_train_begin`` from the shapes of the probe batch (any batch size), eagerly on the
    probe batch where that leaves layers unbuilt, then their layers are resolved.

    What is written (all of one step as one ``Summary`` proto). Tags group by statistic and
    sort by depth: ``<kk>`` is the layer's depth index among the monitored layers (0 the
    shallowest), zero-padded to the width of the last one (``00_dense`` sorts before
    ``05_dense_5``; three digits from 101 layers on):

    * scalars ``activations/<statistic>/<kk>_<layer>`` for ``mean``, ``std``, ``min``,
      ``max``, ``nonfinite_count``, ``pre_std``, ``std_ratio``, ``zero_fraction``,
      ``dead_fraction``, ``saturation_fraction`` (only layers with a bounded activation),
      ``cosine``; and ``activations/log10_std/<kk>_<layer>``,
      ``activations/log10_pre_std/<kk>_<layer>`` (base-10 logarithms, so a collapse to 1e-8
      reads -8 on a linear axis; no value at a step where the std is 0 or not finite);
    * with ``gradients=True``: ``gradients/grad_std/<kk>_<layer>``,
      ``gradients/log10_grad_std/<kk>_<layer>`` and ``gradients/kernel_grad_std/<kk>_<layer>``;
    * with ``histograms=True``: a histogram ``activations/histogram/<kk>_<layer>``, and with
      ``gradients=True`` also ``gradients/histogram/<kk>_<layer>`` (of ``d loss / d output``);
    * for a residual model, the stream after every residual merge (see
      :func:`keras_inits.activation_statistics`): scalars ``residual_stream/std/<k>_<merge>``
      and ``residual_stream/growth/<k>_<merge>`` (``k`` the block's zero-padded depth index)
      and ``residual_stream/std_ratio_last_first``;
    * with ``images=True`` and matplotlib installed: the depth-profile image (1100 x 440 px:
      std, pre_std and cosine against depth, titled with the run and the step, the output
      layer marked) as ``activations/depth_profile/latest`` at every image write and, at the
      run's first write, also as ``activations/depth_profile/init``; at most once per epoch
      whatever ``update_freq`` is;
    * with ``diagnose=True`` (the default): a text ``diagnosis`` (TensorBoard's Text tab), the
      report of :func:`keras_inits.diagnose` on the same statistics (findings in words: the
      layers, the numbers and the named threshold they crossed, the remedy; while the model's
      batch-normalization layers were never trained, from one more probe pass in training
      mode, as ``diagnose`` does: in inference mode they are identities), at the run's
      first write and at every write whose findings (kinds and layers) differ from the last
      one written; and once per ``fit``, at its first write, the report through the
      ``keras_inits`` logger (a warning when something was found, else info);
    * once, a Custom Scalars layout with a chart only for what the model has (no
      ``saturation_fraction`` chart without a bounded activation): the depth-profile charts
      (below), one chart per statistic with a line per layer, the gradients, the stream.

    And the **depth profile** (:mod:`keras_inits.tensorboard.profile`), two runs whose step
    is the depth index ``kk``: ``<log_dir>/activations_profile/init`` (the run's first write,
    step 0 of a fresh training) and ``<log_dir>/activations_profile/latest`` (written again at
    every write), with the scalars ``depth_profile/std``, ``log10_std``, ``pre_std``,
    ``log10_pre_std``, ``cosine``, ``dead_fraction``, ``saturation_fraction`` (bounded
    activations), ``grad_std``, ``log10_grad_std`` (gradients) and
    ``depth_profile/residual_stream_std`` / ``_growth`` (step = block index). In the Scalars
    tab the horizontal axis "Step" is then the depth, and the runs of several trainings
    overlay. They follow the statistics run: written by the chief only, under the same claim
    (a run ``activations_1`` has ``activations_1_profile``), retried after a full disk.

    Training is untouched: the probe changes no weight, optimizer, metric, batch-norm or
    RNG state, and a run with the callback ends with the same weights as one without, also
    when the disk is full, the event file is deleted or two callbacks share a ``log_dir``.
    Non-finite activations are counted (``nonfinite_count``) and logged.

    What is kept when things go wrong:

    * **Full disk.** Each event is written synchronously (:mod:`keras_inits.tensorboard.writer`).
      A failed write leaves the file readable (truncated back to its last complete record)
      and keeps the event in memory (up to 64 MiB), retried in order at every later write
      and at train end. A ``RuntimeWarning`` gives the reason at the first failure and the
      count at 2, 4, 8... unwritten steps; an info log says when the delayed steps went
      out. Events still unwritten at ``on_train_end`` (or dropped from the full queue) are
      lost: one ``RuntimeWarning`` says "N of M steps were not written to <run_dir>: steps
      a-b, c", and :attr:`lost_steps` lists them.
    * **Deleted event file.** Before each write the file is checked (same inode); a deleted
      or replaced file is re-created as a new event file in the run directory (a warning
      log), and the later steps go there.
    * **Restarts: no step is written twice.** At the first write of each ``fit`` (the first
      epoch's begin, after a ``keras.callbacks.BackupAndRestore`` restored the step) the
      steps already in the run directory are read. A training that starts at a step > 0
      (a resume, a second ``fit``) does not write steps at or below the last one on disk
      again: the first values are kept (one info log names the range). A training that
      starts at step 0 while the run directory already holds events (a new training into an
      old ``log_dir``) writes into a new run, ``activations_1``, ``activations_2``... with a
      ``RuntimeWarning`` naming it, rather than mixing two trainings in one run.
    * **Two callbacks on one log_dir.** A run directory is claimed by one callback from its
      first write to ``on_train_end`` (or :meth:`close`): an in-process registry, plus a lock
      file ``keras_inits.lock`` (``pid host``) for other processes. A second callback gets
      the next free run (``activations_1``, with a ``RuntimeWarning``) rather than an error:
      two callbacks with different ``update_freq`` or ``layers`` on one ``log_dir`` are a
      legitimate set-up, and refusing it would stop a training for a logging choice. A lock
      whose process is dead (same host) is ignored; a lock from another host is respected.
      A callback whose ``fit`` raised keeps its claim until it is closed, garbage-collected
      or its process ends.

    Under a multi-worker strategy (``tf.distribute.MultiWorkerMirroredStrategy``,
    ``jax.distributed``, ``torch.distributed``) every worker measures the same steps (their
    collective ops stay in step), and only the chief (TensorFlow's ``"chief"`` task, else
    worker 0; process or rank 0) opens an event file and writes: the other workers create no
    directory and no file, whatever ``log_dir`` they are given.

    Args:
        log_dir: TensorBoard log directory; the run directory is ``<log_dir>/activations``.
        data: The probe batch (e.g. 256 samples): inputs, or an ``(x, y)`` tuple (needed
            for ``gradients=True``). For several inputs pass a list or dict of arrays.
        update_freq: ``"epoch"``, ``"batch"``, or a positive number of batches (optimizer
            steps) between writes, as in ``keras.callbacks.TensorBoard``.
        layers: Which layers to monitor (see :func:`keras_inits.activation_statistics`):
            ``None`` for every layer with a kernel plus standalone activation layers, paths,
            layer classes or a predicate.
        histograms: Write a histogram per layer.
        images: Write the depth-profile image (needs matplotlib; skipped without it). Off
            by default, as Keras's ``TensorBoard(write_images=False)``: the figure's one
            full draw per ``fit`` (tick labels, legend) costs 65-75 ms and every image 7-8 ms,
            more than the rest of a write; the depth profile is in the Scalars tab anyway
            (the ``activations_profile`` runs). The examples and ``make demo`` turn it on.
        gradients: Also write gradient statistics (needs ``y`` in ``data`` and a compiled
            loss).
        diagnose: Diagnose every write (:func:`keras_inits.diagnose`, no extra probe pass
            but while batch normalization is untrained) and write the findings to the Text
            tab when they change (above).
        freq: Deprecated name of ``update_freq`` (a ``DeprecationWarning``; removed in 0.3).

    Raises:
        TypeError: at construction for a ``log_dir`` that is not a text path, ``histograms``,
            ``images``, ``gradients`` or ``diagnose`` that is not a bool, ``layers`` of a wrong type, or
            ``freq`` passed together with ``update_freq``.
        ValueError: at construction for a bad ``update_freq``, an empty ``log_dir`` or one
            that is an existing file, an empty batch, or ``gradients=True`` without ``y``;
            before the first batch for ``data`` that does not fit the model, unknown layer
            names, or nothing to monitor.
        OSError: before the first batch if the run directory cannot be created.

    Examples:

    >>> import numpy as np, keras, keras_inits
    >>> model = keras.Sequential([
    ...     keras.Input((32,)),
    ...     keras.layers.Dense(64, activation="tanh"),
    ...     keras.layers.Dense(1),
    ... ])
    >>> model.compile("adam", "mse")
    >>> x = np.random.rand(512, 32).astype("float32"); y = np.random.rand(512, 1)
    >>> callbacks = [
    ...     keras.callbacks.TensorBoard("logs"),
    ...     keras_inits.ActivationStatistics("logs", (x[:256], y[:256]), gradients=True),
    ... ]
    >>> model.fit(x, y, epochs=2, callbacks=callbacks, verbose=0)  # doctest: +SKIP

    Then ``tensorboard --logdir logs``: Scalars, Histograms, Images, Custom Scalars.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        data: Any,
        *,
        update_freq: UpdateFrequency = "epoch",
        layers: LayerSelection = None,
        histograms: bool = True,
        images: bool = False,
        gradients: bool = False,
        diagnose: bool = True,
        freq: UpdateFrequency | None = None,
    ) -> None:
        super().__init__()
        self.log_dir = _validate_log_dir(log_dir)
        self.update_freq = _resolve_update_freq(update_freq, freq)
        self.layers = _validated_layers(layers)
        self.histograms = _checks.check_bool("histograms", histograms)
        self.gradients = _checks.check_bool("gradients", gradients)
        self.diagnose = _checks.check_bool("diagnose", diagnose)
        self.images = _checks.check_bool("images", images) and matplotlib_available()
        x, y = _probe.split_data(data)
        if self.gradients and y is None:
            raise ValueError(
                "`gradients=True` needs targets: pass `data` as a tuple (x, y). "
                f"Received: data without y, gradients={gradients!r}"
            )
        self._x = _as_arrays(x, "data")
        self._x_tensors = self._x  # backend tensors from the first _prepare on
        self._y = _as_arrays(y, "data")
        _probe.check_inputs(None, self._x, argument="data")
        #: The run directory written to: ``<log_dir>/activations``, or ``activations_<n>``
        #: when that one is claimed by another callback or holds an earlier training.
        self.run_dir = os.path.join(self.log_dir, RUN_NAME)
        #: Every step that was measured but never reached the disk (full disk...).
        self.lost_steps: list[int] = []

        self._writer: SummaryWriter | None = None
        self._layout_written = False  # the layout goes out once per run, with its first step
        self._profile: DepthProfileRuns | None = None
        self._profile_failed = False
        self._output_path: str | None = None
        self._selected: dict[str, keras.layers.Layer] | None = None
        self._input_std: float | None = None
        self._last_measured_step: int | None = None
        self._last_written_step: int | None = None
        self._skip_through: int | None = None
        self._run_checked = False
        self._begin_due = False
        self._image_due = True
        self._lost_seen = 0
        self._delayed_seen = 0
        self._fit_steps = 0
        self._fit_lost: list[int] = []
        self._warned_unwritten = 0
        self._plot: Any = None
        if self.images:
            # Import and warm up matplotlib now, not in the middle of training (~0.3 s).
            self._plot = DepthProfilePlot()
        if self.update_freq != "epoch":
            # Only then does the callback need batch ends (defining on_train_batch_end at
            # all would switch off Keras's asynchronous batch-end dispatch).
            self.on_train_batch_end = self._write_every_n_steps  # type: ignore[method-assign]

        #: The statistics of the last write (path -> LayerStatistics, and its
        #: ``residual_stream``), for inspection.
        self.last_statistics: dict[str, LayerStatistics] | None = None
        #: The diagnosis of the last write (``diagnose=True``), for inspection.
        self.last_diagnosis: DiagnosisReport | None = None
        self._diagnosis_written: tuple | None = None  # the findings of the last diagnosis text
        self._diagnosis_logged = False
        self._batch_norm_untrained: bool | None = None  # see _prepare

    # -- Keras hooks -----------------------------------------------------------------

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Validate the probe now, loudly: a problem here must stop training before batch 1.
        self._prepare()
        self._start_fit()
        # The first write waits for the first epoch: a keras.callbacks.BackupAndRestore
        # listed after this callback restores the step in its own on_train_begin.
        self._begin_due = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._begin_due:
            return
        self._begin_due = False
        step = self._step()
        if step == self._last_measured_step:
            return
        statistics = self._measure()  # raises: still before the first batch
        self._write(step, statistics, image=True)

    def write(self, step: int | None = None) -> dict[str, LayerStatistics]:
        """Measure the model now and write one step, outside ``fit``.

        For a model that is not trained (comparing initializers at step 0) or between
        ``fit`` calls. Set the model first with ``set_model``; call :meth:`close` when done.
        A step at or below one already in the run is measured but not written again.

        Examples:

        >>> callback = keras_inits.ActivationStatistics("logs/he", x_probe)
        >>> callback.set_model(model)
        >>> statistics = callback.write()  # step 0 of an untrained model  # doctest: +SKIP
        >>> callback.close()  # doctest: +SKIP

        Args:
            step: The step to write at (a non-negative integer); default: the optimizer's
                iteration count (0 for a model that was never trained or compiled).

        Returns:
            The statistics written (path -> :class:`keras_inits.LayerStatistics`, and the
            ``residual_stream`` of :func:`keras_inits.activation_statistics`).

        Raises:
            TypeError: if ``step`` is not an integer.
            ValueError: if ``step`` is negative, if no model was set, or as
                ``on_train_begin`` does.
            OSError: if the run directory cannot be created.
        """
        if step is not None:
            step = _checks.check_int("step", step, minimum=0)
        if getattr(self, "_model", None) is None:
            raise ValueError(
                "ActivationStatistics.write needs a model: call set_model(model) first. "
                "Received: no model"
            )
        self._prepare()
        step = self._step() if step is None else step
        statistics = self._measure()
        self._write(step, statistics, image=True)
        return statistics

    def _prepare(self) -> None:
        """Build the model if needed, resolve the layers, check the probe batch.

        Raises early, before any batch. An unbuilt model (TensorFlow's ``fit`` builds it
        only inside its first traced step) owns no variables yet, so no layer would be
        found to own a kernel ("no layer to monitor"): it is built first, symbolically, from
        the probe batch's shapes with a free batch size, and eagerly on the probe batch
        when that leaves layers unbuilt (a subclassed model that set ``built`` in its
        ``__init__``, a ``call`` that needs concrete values).
        """
        _probe.check_inputs(self.model, self._x, argument="data")
        if not self.model.built or self._unbuilt_layers():
            self._build_model()
        self._selected = _probe.select_layers(self.model, self.layers)
        # The probe batch is fixed: its std (what the first std_ratio divides by) once a fit.
        self._input_std = input_std_of(self._x)
        # ... and its float32 arrays become backend tensors once a fit, so that a write does
        # not copy them to the device again (jax: 1.82 -> 1.57 ms for a 784-500 Dense).
        self._x_tensors = keras.tree.map_structure(_as_tensor_if_float32, self._x)
        self._output_path = _output_layer_path(self.model, self._selected)
        # Under a multi-worker strategy every worker measures the same steps (a probe pass on
        # one worker only would put TensorFlow's collectives out of step); only the chief writes.
        self._chief = backend.current().is_chief()
        # Whether batch normalization may still be untrained (checked at each diagnosis until
        # it is not: training only moves the statistics away from 0 and 1).
        self._batch_norm_untrained = None

    def _unbuilt_layers(self) -> list[str]:
        return [path for path, layer in _probe.walk_layers(self.model).items() if not layer.built]

    def _build_model(self) -> None:
        try:
            with warnings.catch_warnings():
                # Keras warns when it cannot trace a call; the eager call below builds it.
                warnings.simplefilter("ignore", UserWarning)
                self.model(_symbolic_batch(self._x), training=False)
        except Exception:  # noqa: BLE001 - the eager call below says why, readably
            pass
        if not self.model.built or self._unbuilt_layers():
            _probe.forward(self.model, self._x, training=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.update_freq == "epoch":
            self._write_step(self._step(), image=True)
        else:
            self._image_due = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self._finish()
        self._release()

    def _write_every_n_steps(self, batch: int, logs: dict | None = None) -> None:
        step = self._step()
        last = self._last_measured_step
        # "Crossed a multiple of update_freq" rather than "step % update_freq == 0", so
        # that steps_per_execution > 1 (batch ends every k steps) still writes.
        if last is None or step // self.update_freq > last // self.update_freq:
            self._write_step(step, image=self._image_due)

    # -- measuring ------------------------------------------------------------------

    def _step(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        if iterations is None:
            return 0
        return int(backend.current().to_numpy(iterations))

    def _measure(self) -> dict[str, LayerStatistics]:
        return measure(
            self.model,
            self._x_tensors,
            layers=self._selected,
            y=self._y,
            gradients=self.gradients,
            input_std=self._input_std,
        )

    def _write_step(self, step: int, *, image: bool) -> None:
        """Measure and write one step; failures become warnings, never exceptions."""
        if step == self._last_measured_step:
            return
        try:
            statistics = self._measure()
        except Exception as error:  # noqa: BLE001 - training must go on
            warnings.warn(
                f"ActivationStatistics could not measure step {step}: "
                f"{type(error).__name__}: {error}. Training continues.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        try:
            self._write(step, statistics, image=image)
        except OSError as error:  # the run directory could not be created: training goes on
            self._fit_steps += 1
            self.lost_steps.append(step)
            self._fit_lost.append(step)
            self._warn_unwritten(len(self._fit_lost), error)

    def _write(self, step: int, statistics: dict[str, LayerStatistics], *, image: bool) -> None:
        """One step's statistics as one ``Summary`` proto, and the depth profile.

        Every write goes through here. A worker that is not the chief of a multi-worker run
        writes nothing (no directory, no file): it measured in step with the chief, which
        writes. The run directory is chosen and claimed at the first write of each ``fit``;
        a step at or below one already in the run is skipped.

        Raises:
            OSError: if the run directory cannot be created (at the first write only).
        """
        self._last_measured_step = step
        self.last_statistics = statistics
        self._log_nonfinite(step, statistics)
        report = self._diagnose(step, statistics)
        if not self._chief:
            self._image_due = self._image_due and not image
            return
        if not self._run_checked:
            self._choose_run(step)
        if self._skip_through is not None and step <= self._skip_through:
            return
        first_write = self._profile.init_due
        rendered = None
        if image and self.images:
            rendered = self._render(statistics, step)
        summary = protos.statistics_summary(statistics, histograms=self.histograms,
                                            image=rendered, init_image=first_write)
        if report is not None:
            findings = _findings_key(report)
            if first_write or findings != self._diagnosis_written:
                protos.add_text(summary, protos.DIAGNOSIS_TAG, _diagnosis_markdown(report, step))
                self._diagnosis_written = findings
        self._emit(summary, step, statistics)
        self._write_profile(statistics, step)
        if rendered is not None:
            self._image_due = False

    def _render(self, statistics: dict[str, LayerStatistics],
                step: int) -> tuple[bytes, int, int] | None:
        try:
            return self._plot.render(statistics, title=f"{self.run_dir}, step {step}",
                                     output=self._output_path)
        except Exception as error:  # noqa: BLE001 - a picture is never worth a crash
            logger.warning("ActivationStatistics: depth-profile image skipped: %s", error)
            return None

    def _write_profile(self, statistics: dict[str, LayerStatistics], step: int) -> None:
        """Write the depth-profile runs; a failure is logged once until it recovers.

        A log, not a ``RuntimeWarning``: the profile is retried at the next write (the
        latest one supersedes it) and the statistics run already warns about the disk; a
        profile still unwritten at train end is warned about then.
        """
        if self._profile.write(statistics):
            if self._profile_failed:
                logger.info("ActivationStatistics: the depth profile is written to %s again "
                            "(step %d)", self._profile.directory, step)
            self._profile_failed = False
            return
        if not self._profile_failed:
            error = self._profile.last_error
            logger.warning(
                "ActivationStatistics could not write the depth profile of step %d to %s: "
                "%s: %s. It is retried at the next write.",
                step, self._profile.directory, type(error).__name__, error)
        self._profile_failed = True

    def _diagnose(self, step: int, statistics: dict[str, LayerStatistics]) -> DiagnosisReport | None:
        """The diagnosis of one step (``diagnose=True``), logged at the first write of a ``fit``.

        A diagnosis that fails is logged and skipped: it never stops training.
        """
        if not self.diagnose:
            return None
        try:
            if self._batch_norm_untrained is not False:
                self._batch_norm_untrained = bool(untrained_batch_norm(self.model))
            if self._batch_norm_untrained:
                # The statistics written are inference-mode ones; the diagnosis is of the
                # pass fit runs (batch statistics), measured once more.
                report = diagnose_statistics(
                    self.model, self._x, self._y if self.gradients else None,
                    layers=self._selected, training=True,
                )
            else:
                # x only for the inputs' own cosine, read when a collapse starts at the
                # first layer (no probe pass).
                report = diagnose_statistics(self.model, self._x, statistics=statistics)
        except Exception as error:  # noqa: BLE001 - a diagnosis is never worth a crash
            logger.warning("ActivationStatistics: no diagnosis at step %d: %s: %s",
                           step, type(error).__name__, error)
            return None
        self.last_diagnosis = report
        if not self._diagnosis_logged and self._chief:
            self._diagnosis_logged = True
            if report.ok:
                logger.info("ActivationStatistics, step %d: %s", step, report)
            else:
                logger.warning("ActivationStatistics, step %d: %s", step, report)
        return report

    @staticmethod
    def _log_nonfinite(step: int, statistics: dict[str, LayerStatistics]) -> None:
        bad = {path: s.nonfinite_count for path, s in statistics.items() if s.nonfinite_count}
        if bad:
            logger.warning(
                "ActivationStatistics: non-finite activations at step %d: %s",
                step,
                ", ".join(f"{path} ({count} values)" for path, count in bad.items()),
            )

    # -- writing: every event goes through _write -------------------------------------

    def _emit(self, summary: Any, step: int, statistics: dict[str, LayerStatistics]) -> None:
        """Write one step's ``Summary`` to the statistics run and count what the disk refused."""
        if not self._layout_written:
            summary.value.extend(protos.layout_summary(statistics).value)
            self._layout_written = True
        self._skip_through = step
        self._last_written_step = step
        self._fit_steps += 1
        written = self._writer.write(summary, step)
        self._account(written)

    def _start_fit(self) -> None:
        self._diagnosis_logged = False
        self._run_checked = False
        self._fit_steps = 0
        self._fit_lost = []
        self._warned_unwritten = 0

    def _choose_run(self, step: int) -> None:
        """Take the first run directory that no other live callback claimed and that does
        not hold an earlier training (events, while this one starts at step 0)."""
        base = os.path.join(self.log_dir, RUN_NAME)
        reason = None
        for index in itertools.count():
            run_dir = base if index == 0 else f"{base}_{index}"
            if self._claimed_by_other(run_dir):
                reason = reason or "is written by another callback"
                continue
            on_disk = steps_on_disk(run_dir)
            if on_disk and step == 0:
                reason = reason or (f"holds an earlier training (steps {on_disk[0]}-"
                                    f"{on_disk[-1]}) and this one starts at step 0")
                continue
            break
        if reason is not None:
            warnings.warn(
                f"ActivationStatistics writes to {run_dir!r}: {base!r} {reason}.",
                RuntimeWarning,
                stacklevel=4,
            )
        self._skip_through = None
        if on_disk and on_disk[-1] >= step:
            self._skip_through = on_disk[-1]
            if step != self._last_written_step:
                logger.info(
                    "ActivationStatistics: %s already holds steps up to %d: steps %d-%d of "
                    "this training are not written again (the first values are kept)",
                    run_dir, on_disk[-1], step, on_disk[-1])
        if self._writer is None or self._writer.run_dir != run_dir:
            self._release()
            self._close_writer()
            self._writer = SummaryWriter(run_dir)
            self._layout_written = False
            self.run_dir = run_dir
            self._profile = DepthProfileRuns(run_dir)
        self._claim()
        self._run_checked = True

    def _claimed_by_other(self, run_dir: str) -> bool:
        owner = _LIVE_RUNS.get(os.path.realpath(run_dir))
        if owner is not None and owner() not in (None, self):
            return True
        lock = _read_lock(run_dir)
        if lock is None or lock[0] == os.getpid():
            return False
        pid, host = lock
        return host != socket.gethostname() or _process_alive(pid)

    def _claim(self) -> None:
        _LIVE_RUNS[os.path.realpath(self.run_dir)] = weakref.ref(self)
        try:
            with open(os.path.join(self.run_dir, LOCK_NAME), "w", encoding="utf-8") as file:
                file.write(f"{os.getpid()} {socket.gethostname()}\n")
        except OSError as error:  # a full disk: the in-process claim still holds
            logger.info("ActivationStatistics: no lock file in %s: %s", self.run_dir, error)

    def _release(self) -> None:
        key = os.path.realpath(self.run_dir)
        owner = _LIVE_RUNS.get(key)
        if owner is None or owner() is not self:
            return
        del _LIVE_RUNS[key]
        try:
            os.remove(os.path.join(self.run_dir, LOCK_NAME))
        except OSError:
            pass  # deleted with the run directory, or never written (full disk)

    def _account(self, written: bool) -> None:
        """Warn at the first unwritten step and at every power-of-two count after it."""
        writer = self._writer
        self._collect_lost()
        delayed = writer.delayed_steps[self._delayed_seen:]
        self._delayed_seen = len(writer.delayed_steps)
        if delayed:
            logger.info("ActivationStatistics: %d delayed steps written to %s (steps %s)",
                        len(delayed), self.run_dir, _format_steps(delayed))
        if not written:
            self._warn_unwritten(len(writer.pending_steps) + len(self._fit_lost),
                                 writer.last_error)

    def _warn_unwritten(self, unwritten: int, error: OSError | None) -> None:
        if unwritten <= self._warned_unwritten or not _is_power_of_two(unwritten):
            return
        self._warned_unwritten = unwritten
        pending = len(self._writer.pending_steps) if self._writer is not None else 0
        warnings.warn(
            f"ActivationStatistics could not write to {self.run_dir!r}: "
            f"{type(error).__name__}: {error}. {unwritten} steps not written so far "
            f"({pending} kept in memory and retried at the next write, "
            f"{len(self._fit_lost)} lost). Training continues.",
            RuntimeWarning,
            stacklevel=5,
        )

    def _collect_lost(self) -> None:
        lost = self._writer.lost_steps[self._lost_seen:]
        self._lost_seen = len(self._writer.lost_steps)
        self.lost_steps.extend(lost)
        self._fit_lost.extend(lost)

    def _finish(self) -> None:
        """Retry what is queued; what still does not go out is lost, and said so once."""
        if self._profile is not None and not self._profile.flush():
            error = self._profile.last_error
            warnings.warn(
                f"ActivationStatistics could not write the depth profile to "
                f"{self._profile.directory!r} at train end: {type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=3,
            )
        error = None
        if self._writer is not None:
            written = self._writer.flush()
            self._account(True)
            if not written:
                self._writer.discard_pending()
                self._collect_lost()
            error = self._writer.last_error
        if self._fit_lost:
            reason = f" (last error: {type(error).__name__}: {error})" if error else ""
            warnings.warn(
                f"{len(self._fit_lost)} of {self._fit_steps} steps were not written to "
                f"{self.run_dir}: steps {_format_steps(self._fit_lost)}{reason}",
                RuntimeWarning,
                stacklevel=3,
            )
            self._fit_lost = []

    def _close_profile(self) -> None:
        if self._profile is not None:
            self._profile.close()
            self._profile = None

    def _close_writer(self) -> None:
        self._close_profile()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._lost_seen = 0
            self._delayed_seen = 0

    def close(self) -> None:
        """Write what is queued, report what is lost, close the event file, free the run."""
        self._finish()
        self._release()
        self._close_writer()


def _findings_key(report: DiagnosisReport) -> tuple:
    """What makes two diagnoses the same for the Text tab: each finding's kind and layers."""
    return tuple((finding.kind, finding.layers) for finding in report.findings)


def _diagnosis_markdown(report: DiagnosisReport, step: int) -> str:
    """The report as the Text tab shows it: the step, then the report's Markdown."""
    return f"Diagnosis at step {step}.\n\n{report._repr_markdown_()}"
