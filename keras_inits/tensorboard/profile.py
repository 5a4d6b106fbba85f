"""The depth-profile runs: the statistics against depth, with TensorBoard's step = depth index.

Beside its statistics run ``<log_dir>/activations`` the callback writes two runs whose step is
the layer's depth index ``kk`` (0 the shallowest monitored layer), so that the Scalars tab
draws each statistic *against depth* (``depth_profile/pre_std``...: see
:func:`keras_inits.tensorboard.protos.profile_summaries`) and the runs of several trainings
overlay in one chart:

* ``<log_dir>/activations_profile/init``: the profile of the run's first write (step 0 of a
  fresh training), written once;
* ``<log_dir>/activations_profile/latest``: the profile of the latest write, written again
  at every write (:meth:`keras_inits.tensorboard.writer.SummaryWriter.write_snapshot`:
  ``SessionLog.START`` then the profile, appended to one event file), which both of
  TensorBoard's loaders show as the latest profile only. The file grows by one profile per
  write (about 0.5 KB per layer, less than the statistics run's own step).

For a statistics run ``activations_<n>`` the profile runs are ``activations_<n>_profile/...``:
they belong to the statistics run, and the callback that claimed it is the only writer.
"""

from __future__ import annotations

import os
from typing import Mapping

from keras_inits.stats import LayerStatistics
from keras_inits.tensorboard import protos
from keras_inits.tensorboard.writer import SummaryWriter, steps_on_disk

#: Appended to the statistics run's directory name to name the profile runs' directory.
PROFILE_SUFFIX = "_profile"
#: Run (subdirectory) of the first write's profile.
INIT_RUN = "init"
#: Run (subdirectory) of the latest write's profile.
LATEST_RUN = "latest"


def profile_directory(run_dir: str) -> str:
    """``<log_dir>/activations`` -> ``<log_dir>/activations_profile``."""
    return os.path.normpath(run_dir) + PROFILE_SUFFIX


class DepthProfileRuns:
    """Writes the ``init`` and ``latest`` depth-profile runs of one statistics run.

    Failures are kept, never raised: a profile that could not be written (a full disk, a
    directory that cannot be created) is retried at the next write (``init``: the same
    profile; ``latest``: the newer one, which supersedes it) and :attr:`last_error` says why.

    Examples:

    >>> runs = DepthProfileRuns("logs/activations")       # doctest: +SKIP
    >>> runs.write(statistics)                             # doctest: +SKIP
    True
    >>> runs.close()                                       # doctest: +SKIP

    Args:
        run_dir: The statistics run's directory (``<log_dir>/activations``).
    """

    def __init__(self, run_dir: str) -> None:
        self.directory = profile_directory(run_dir)
        self.init_dir = os.path.join(self.directory, INIT_RUN)
        self.latest_dir = os.path.join(self.directory, LATEST_RUN)
        #: Whether the next write is the run's first (no ``init`` profile on disk yet).
        self.init_due = not steps_on_disk(self.init_dir)
        #: The error of the last failed write, ``None`` after a complete one.
        self.last_error: OSError | None = None
        self._init: SummaryWriter | None = None
        self._latest: SummaryWriter | None = None

    def write(self, statistics: Mapping[str, LayerStatistics]) -> bool:
        """Write the profile of ``statistics`` as ``latest`` (and ``init`` when due).

        Returns:
            ``True`` when everything is on disk, ``False`` when a write failed (kept for a
            retry, see :attr:`last_error`).
        """
        summaries = protos.profile_summaries(statistics)
        written = True
        try:
            if self.init_due:
                self._init = SummaryWriter(self.init_dir)
                self.init_due = False
                written = self._init.write_snapshot(summaries) and written
            elif self._init is not None:
                written = self._init.flush() and written
            if self._init is not None and not self._init.pending_steps:
                self._close_init()
            if self._latest is None:
                self._latest = SummaryWriter(self.latest_dir)
            written = self._latest.write_snapshot(summaries) and written
        except OSError as error:  # a run directory that cannot be created
            self.last_error = error
            return False
        self.last_error = self._error()
        return written

    def flush(self) -> bool:
        """Retry what is queued (at train end); ``True`` when nothing is left."""
        written = True
        for writer in (self._init, self._latest):
            if writer is not None:
                written = writer.flush() and written
        if self._init is not None and not self._init.pending_steps:
            self._close_init()
        self.last_error = self._error()
        return written

    def close(self) -> None:
        """Close the event files (what is still queued is dropped)."""
        self._close_init()
        if self._latest is not None:
            self._latest.close()
            self._latest = None

    def _close_init(self) -> None:
        if self._init is not None:
            self._init.close()
            self._init = None

    def _error(self) -> OSError | None:
        for writer in (self._init, self._latest):
            if writer is not None and writer.last_error is not None:
                return writer.last_error
        return None
