"""Event files without TensorFlow: TensorBoard's pure-Python ``EventFileWriter``.

What ``torch.utils.tensorboard`` does: each step's ``Summary`` proto is wrapped in an
``event_pb2.Event(summary=..., step=..., wall_time=...)`` and appended to the run's event
file by ``tensorboard.summary.writer.event_file_writer.EventFileWriter`` (a background thread
writes the records; an error there surfaces at the next ``write`` or ``flush``).
"""

from __future__ import annotations

import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

#: Events queued before ``write`` blocks on the background thread.
MAX_QUEUE_SIZE = 10
#: The background thread flushes at least this often (seconds).
FLUSH_SECONDS = 120


class SummaryWriter:
    """Writes ready-made ``Summary`` protos to one run directory.

    Examples:

    >>> writer = SummaryWriter("logs/activations")        # doctest: +SKIP
    >>> writer.write(summary, step=0)                      # doctest: +SKIP
    >>> writer.close()                                     # doctest: +SKIP

    Args:
        run_dir: Directory for the event file; created if missing.

    Raises:
        OSError: if the directory cannot be created or the event file cannot be opened.
    """

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        try:
            self._writer = EventFileWriter(
                run_dir, max_queue_size=MAX_QUEUE_SIZE, flush_secs=FLUSH_SECONDS
            )
        except Exception as error:  # noqa: BLE001 - gfile raises OSError or tf OpErrors
            reason = getattr(error, "message", None) or str(error)
            raise OSError(
                f"Cannot create the TensorBoard run directory {run_dir!r}: {reason}"
            ) from None

    def write(self, summary: summary_pb2.Summary, step: int) -> None:
        """Append one event holding ``summary`` at ``step`` (wall time: now)."""
        event = event_pb2.Event(summary=summary, step=int(step), wall_time=time.time())
        self._writer.add_event(event)

    def flush(self) -> None:
        """Push queued events to disk (raises what the background thread hit)."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
