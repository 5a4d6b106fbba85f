"""``ActivationStatistics``: per-layer activation statistics in TensorBoard during training.

The statistics are measured in a probe pass from the callback (never with summary ops
inside the model's compiled ``call``, which logs wrong steps: keras#20143), on a fixed probe
batch, and written at the optimizer's iteration count, so that they line up with
``keras.callbacks.TensorBoard``'s batch steps and continue across several ``fit`` calls.
The event files are written without TensorFlow (:mod:`keras_inits.tensorboard.writer`), so
the callback runs on every Keras backend.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Literal, Union

import keras
import numpy as np

from keras_inits import _probe
from keras_inits import backend
from keras_inits._probe import LayerSelection
from keras_inits.stats import LayerStatistics, activation_statistics
from keras_inits.tensorboard import protos
from keras_inits.tensorboard.image import DepthProfilePlot, matplotlib_available
from keras_inits.tensorboard.writer import SummaryWriter

logger = logging.getLogger("keras_inits")

#: Name of the run directory under ``log_dir`` (beside Keras's ``train`` and ``validation``).
RUN_NAME = "activations"

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
    return path


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


def _symbolic_batch(x: Any) -> Any:
    """``keras.Input`` tensors shaped like ``x`` with any batch size."""
    return keras.tree.map_structure(
        lambda array: keras.Input(shape=array.shape[1:], dtype=str(array.dtype)), x
    )


class _NoEventFile:
    """The writer of a worker that is not the chief of a multi-worker run: it opens no file."""

    def flush(self) -> None:
        """Nothing is queued on this worker."""

    def close(self) -> None:
        """No file is open on this worker."""


class ActivationStatistics(keras.callbacks.Callback):
    """Writes per-layer activation statistics of a probe batch to TensorBoard.

    At ``on_train_begin`` (the state the initializer produced, step 0 of a fresh model),
    then after every epoch (``update_freq="epoch"``), every batch (``"batch"``) or every
    ``update_freq`` batches (optimizer steps), the callback
    runs the model once on the probe batch ``data`` in inference mode, computes
    :func:`keras_inits.activation_statistics` for every monitored layer and writes them to
    ``<log_dir>/activations``, so it can share a ``log_dir`` with
    ``keras.callbacks.TensorBoard``. The step is ``model.optimizer.iterations``: it goes on
    across several ``fit`` calls and matches Keras's batch steps (256 samples, batch 64,
    2 epochs, ``update_freq="epoch"``: steps 0, 4, 8). A step already written is not written
    again (the ``on_train_begin`` of a second ``fit``). Models that are not built yet
    (a ``Sequential`` without ``Input``, a subclassed model) are built at ``on_train_begin``
    from the shapes of the probe batch (any batch size), then their layers are resolved.

    What is written (all of one step as one ``Summary`` proto):

    * scalars ``activations/<layer>/<statistic>`` for ``mean``, ``std``, ``min``, ``max``,
      ``nonfinite_count``, ``pre_std``, ``std_ratio``, ``zero_fraction``, ``dead_fraction``,
      ``saturation_fraction`` (bounded activations), ``cosine``;
    * with ``gradients=True``: ``gradients/<layer>/grad_std`` and
      ``gradients/<layer>/kernel_grad_std``;
    * with ``histograms=True``: a histogram ``activations/<layer>``, and with
      ``gradients=True`` also ``gradients/<layer>`` (of ``d loss / d output``);
    * with ``images=True`` and matplotlib installed: an image ``activations/depth_profile``
      (std and cosine against depth), at most once per epoch whatever ``update_freq`` is;
    * once, a Custom Scalars layout: one chart per statistic with a line per layer, so the
      depth profile is one glance (TensorBoard's "Custom Scalars" tab).

    Training is untouched: the probe changes no weight, optimizer, metric, batch-norm or
    RNG state, and a run with the callback ends with the same weights as one without.
    A failed write later in training (full disk...) is reported with a warning and training
    goes on; non-finite activations are counted (``nonfinite_count``) and logged.

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
        images: Write the depth-profile image (needs matplotlib; skipped without it).
        gradients: Also write gradient statistics (needs ``y`` in ``data`` and a compiled
            loss).
        freq: Deprecated name of ``update_freq`` (a ``DeprecationWarning``; removed in 0.3).

    Raises:
        TypeError: at construction for a ``log_dir`` that is not a path, or ``freq`` passed
            together with ``update_freq``.
        ValueError: at construction for a bad ``update_freq``, an empty ``log_dir``, an
            empty batch, or
            ``gradients=True`` without ``y``; at ``on_train_begin`` (before any batch) for
            ``data`` that does not fit the model, unknown layer names, or nothing to monitor.
        OSError: at ``on_train_begin`` if the run directory cannot be created.

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
        images: bool = True,
        gradients: bool = False,
        freq: UpdateFrequency | None = None,
    ) -> None:
        super().__init__()
        self.log_dir = _validate_log_dir(log_dir)
        self.update_freq = _resolve_update_freq(update_freq, freq)
        x, y = _probe.split_data(data)
        if gradients and y is None:
            raise ValueError(
                "`gradients=True` needs targets: pass `data` as a tuple (x, y). "
                f"Received: data without y, gradients={gradients!r}"
            )
        self._x = _as_arrays(x, "data")
        self._y = _as_arrays(y, "data")
        _probe.check_inputs(None, self._x, argument="data")
        self.layers = layers
        self.histograms = bool(histograms)
        self.gradients = bool(gradients)
        self.images = bool(images) and matplotlib_available()
        self.run_dir = os.path.join(self.log_dir, RUN_NAME)

        self._writer: Any = None
        self._layout = protos.layout_summary(self.gradients)  # written once, with step 0
        self._layout_written = False
        self._selected: dict[str, keras.layers.Layer] | None = None
        self._last_written_step: int | None = None
        self._image_due = True
        self._plot: Any = None
        if self.images:
            # Import and warm up matplotlib now, not in the middle of training (~0.3 s).
            self._plot = DepthProfilePlot()
        if self.update_freq != "epoch":
            # Only then does the callback need batch ends (defining on_train_batch_end at
            # all would switch off Keras's asynchronous batch-end dispatch).
            self.on_train_batch_end = self._write_every_n_steps  # type: ignore[method-assign]

        #: The statistics of the last write (path -> LayerStatistics), for inspection.
        self.last_statistics: dict[str, LayerStatistics] | None = None

    # -- Keras hooks -----------------------------------------------------------------

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._prepare()
        step = self._step()
        if step == self._last_written_step:
            return
        # Validate the probe now, loudly: a problem here must stop training before batch 1.
        statistics = self._measure()
        self._write(step, statistics, image=True)

    def write(self, step: int | None = None) -> dict[str, LayerStatistics]:
        """Measure the model now and write one step, outside ``fit``.

        For a model that is not trained (comparing initializers at step 0) or between
        ``fit`` calls. Set the model first with ``set_model``; call :meth:`close` when done.

        Examples:

        >>> callback = keras_inits.ActivationStatistics("logs/he", x_probe)
        >>> callback.set_model(model)
        >>> statistics = callback.write()  # step 0 of an untrained model  # doctest: +SKIP
        >>> callback.close()  # doctest: +SKIP

        Args:
            step: The step to write at; default: the optimizer's iteration count (0 for a
                model that was never trained or compiled).

        Returns:
            The statistics written (path -> :class:`keras_inits.LayerStatistics`).

        Raises:
            ValueError: if no model was set, or as ``on_train_begin`` does.
        """
        if getattr(self, "_model", None) is None:
            raise ValueError(
                "ActivationStatistics.write needs a model: call set_model(model) first. "
                "Received: no model"
            )
        self._prepare()
        step = self._step() if step is None else int(step)
        statistics = self._measure()
        self._write(step, statistics, image=True)
        self._writer.flush()
        return statistics

    def _prepare(self) -> None:
        """Build the model if needed, resolve the layers, check the probe batch, open the writer.

        Raises early, before any batch. An unbuilt model (TensorFlow's ``fit`` builds it
        only inside its first traced step) owns no variables yet, so no layer would be
        found to own a kernel ("no layer to monitor"): it is built first, symbolically, from
        the probe batch's shapes with a free batch size.
        """
        _probe.check_inputs(self.model, self._x, argument="data")
        if not self.model.built:
            self._build_model()
        self._selected = _probe.select_layers(self.model, self.layers)
        # Under a multi-worker strategy every worker measures the same steps (a probe pass on
        # one worker only would put TensorFlow's collectives out of step); only the chief writes.
        self._chief = backend.current().is_chief()
        if self._writer is None:
            self._writer = SummaryWriter(self.run_dir) if self._chief else _NoEventFile()

    def _build_model(self) -> None:
        try:
            self.model(_symbolic_batch(self._x), training=False)
        except Exception:  # noqa: BLE001 - an eager call says why, in a readable error
            _probe.forward(self.model, self._x, training=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.update_freq == "epoch":
            self._write_step(self._step(), image=True)
        else:
            self._image_due = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            try:
                self._writer.flush()
            except Exception as error:  # noqa: BLE001 - never fail the end of training
                self._warn_write_failure(self._last_written_step, error)

    def _write_every_n_steps(self, batch: int, logs: dict | None = None) -> None:
        step = self._step()
        last = self._last_written_step
        # "Crossed a multiple of update_freq" rather than "step % update_freq == 0", so
        # that steps_per_execution > 1 (batch ends every k steps) still writes.
        if last is None or step // self.update_freq > last // self.update_freq:
            self._write_step(step, image=self._image_due)

    # -- measuring and writing --------------------------------------------------------

    def _step(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        if iterations is None:
            return 0
        return int(backend.current().to_numpy(iterations))

    def _measure(self) -> dict[str, LayerStatistics]:
        return activation_statistics(
            self.model,
            self._x,
            layers=self._selected,
            y=self._y,
            gradients=self.gradients,
        )

    def _write_step(self, step: int, *, image: bool) -> None:
        """Measure and write one step; failures become warnings, never exceptions."""
        if step == self._last_written_step or self._writer is None:
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
        self._write(step, statistics, image=image)

    def _write(self, step: int, statistics: dict[str, LayerStatistics], *, image: bool) -> None:
        self.last_statistics = statistics
        self._log_nonfinite(step, statistics)
        if not self._chief:  # measured in step with the chief, which writes it
            self._last_written_step = step
            return
        try:
            rendered = None
            if image and self.images:
                rendered = self._render(statistics)
            summary = protos.statistics_summary(
                statistics, histograms=self.histograms, image=rendered
            )
            if not self._layout_written:
                summary.value.extend(self._layout.value)
            self._writer.write(summary, step)  # one proto, one op, one event per step
        except Exception as error:  # noqa: BLE001 - training must go on
            self._warn_write_failure(step, error)
            return
        self._layout_written = True
        self._last_written_step = step
        if rendered is not None:
            self._image_due = False

    def _render(self, statistics: dict[str, LayerStatistics]) -> tuple[bytes, int, int] | None:
        try:
            return self._plot.render(statistics)
        except Exception as error:  # noqa: BLE001 - a picture is never worth a crash
            logger.warning("ActivationStatistics: depth-profile image skipped: %s", error)
            return None

    def _warn_write_failure(self, step: int | None, error: Exception) -> None:
        warnings.warn(
            f"ActivationStatistics could not write step {step} to {self.run_dir!r}: "
            f"{type(error).__name__}: {error}. Training continues.",
            RuntimeWarning,
            stacklevel=3,
        )

    @staticmethod
    def _log_nonfinite(step: int, statistics: dict[str, LayerStatistics]) -> None:
        bad = {path: s.nonfinite_count for path, s in statistics.items() if s.nonfinite_count}
        if bad:
            logger.warning(
                "ActivationStatistics: non-finite activations at step %d: %s",
                step,
                ", ".join(f"{path} ({count} values)" for path, count in bad.items()),
            )

    def close(self) -> None:
        """Close the event file (it is otherwise kept open across ``fit`` calls)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

