"""Event files without TensorFlow, written synchronously, that survive a full disk.

An event file is a sequence of TFRecords, each ``uint64 length``, ``uint32 masked crc32c
of the length``, the data, ``uint32 masked crc32c of the data`` (little-endian), where the
data is a serialized ``event_pb2.Event``; the first record holds
``file_version: "brain.Event:2"``. The file is named
``events.out.tfevents.<time>.<host>.<pid>.<n>``, as TensorBoard expects (``<n>``
zero-padded to six digits).

TensorBoard's own ``EventFileWriter`` writes on a background thread: an error surfaces
later, for another event, and a partial record can be left in the file. This writer
writes each record with ``os.write`` before ``write`` returns, so that it knows which step
failed; on an ``OSError`` it truncates the file back to the end of the last complete record
(the file stays readable) and keeps the record in a bounded in-memory queue
(:data:`MAX_PENDING_BYTES`), retried in order at the next write. Records pushed out of
the full queue are *lost* and counted (:attr:`SummaryWriter.lost_steps`). Before each write
it checks that its file is still the one in the run directory (same inode); a deleted or
replaced file is re-created as a new event file.

:meth:`SummaryWriter.write_snapshot` writes a run whose content is a snapshot (the depth
profile: step = layer index, written again at every write) so that a live TensorBoard shows
only the latest snapshot: ``SessionLog.START`` at the first step, then the events, appended
to the same file. What TensorBoard 2.21 (data server 0.7) does with it:

* the Python loader (``--load_fast=false``) purges a run's values at steps >= ``s`` at a
  second ``SessionLog.START`` at step ``s`` (``_CheckForRestartAndMaybePurge`` in
  ``tensorboard/backend/event_processing/plugin_event_accumulator.py``); without it, a step
  written again to a ``brain.Event:2`` file is *appended* (the line zigzags);
* the Rust data server (``--load_fast=auto``/``true``, the default when
  ``tensorboard-data-server`` is installed) ignores ``SessionLog``; per time series, a
  record at step ``s`` preempts every record at a step >= ``s`` (``StageReservoir::preempt``
  in ``tensorboard/data/server/reservoir.rs``);
* a new event file per snapshot with the old one removed does *not* work: the Python loader
  re-reads its current file by name (``compat/tensorflow_stub/io/gfile.py``) and stops at a
  ``NotFoundError`` before it looks for the next file
  (``backend/event_processing/directory_watcher.py``), so it never shows a later snapshot.

The checksum is crc32c (Castagnoli) masked as TFRecord masks it,
``((crc >> 15 | crc << 17) + 0xa282ead8) mod 2**32``, computed by ``google-crc32c`` (C, with
SSE4.2 where the CPU has it). TensorBoard's own pure-Python crc32c, the fallback when that
package cannot be imported, spent 22 ms on a 100 KB PNG event and 10 ms of every 53 ms write
of the seed MLP's callback (``benchmarks/callback_overhead.py``).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Iterator, Sequence

from tensorboard.compat.proto import event_pb2, summary_pb2

try:
    import google_crc32c as _google_crc32c
except ImportError:  # pragma: no cover - a dependency; TensorBoard's pure-Python one instead
    _google_crc32c = None
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
else:
    _MASK_DELTA = 0xA282EAD8

    def masked_crc32c(data: bytes) -> int:
        """The TFRecord checksum of ``data``: its crc32c, rotated right by 15 bits, plus
        ``0xa282ead8`` (mod 2**32), as ``tensorflow/core/lib/hash/crc32c.h``'s ``Mask``."""
        crc = _google_crc32c.value(data)
        return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF

logger = logging.getLogger("keras_inits")

#: The file names TensorBoard reads as event files start with this.
EVENT_FILE_PREFIX = "events.out.tfevents."
#: The first record of every event file.
FILE_VERSION = "brain.Event:2"
#: Bytes of unwritten records kept in memory for a retry; older ones are dropped (lost).
MAX_PENDING_BYTES = 64 * 2**20

_LENGTH_FORMAT = "<Q"
_CRC_FORMAT = "<I"
_HEADER_BYTES = struct.calcsize(_LENGTH_FORMAT) + struct.calcsize(_CRC_FORMAT)
_FOOTER_BYTES = struct.calcsize(_CRC_FORMAT)

#: Distinguishes the event files one process opens within one second.
_file_counter = itertools.count()
#: Zero-padded, so that a file re-created within the same second sorts after the first
#: (TensorBoard reads a run's files in name order and does not go back).
COUNTER_DIGITS = 6


def _os_write(fd: int, data: memoryview) -> int:
    """The one low-level write (tests replace it to simulate a full disk)."""
    return os.write(fd, data)


def frame_record(data: bytes) -> bytes:
    """``data`` as one TFRecord: length, its masked crc32c, data, the data's masked crc32c."""
    header = struct.pack(_LENGTH_FORMAT, len(data))
    return (
        header
        + struct.pack(_CRC_FORMAT, masked_crc32c(header))
        + data
        + struct.pack(_CRC_FORMAT, masked_crc32c(data))
    )


def read_records(path: str) -> Iterator[bytes]:
    """The complete records of a TFRecord file, stopping at a truncated or corrupt one.

    Only the length's checksum is verified (a data checksum costs 22 ms per 100 KB): a
    record whose length header is intact and whose bytes are all there is returned.
    """
    with open(path, "rb") as file:
        while True:
            header = file.read(_HEADER_BYTES)
            if len(header) < _HEADER_BYTES:
                return
            length_bytes = header[: struct.calcsize(_LENGTH_FORMAT)]
            (length_crc,) = struct.unpack(_CRC_FORMAT, header[len(length_bytes):])
            if masked_crc32c(length_bytes) != length_crc:
                return
            (length,) = struct.unpack(_LENGTH_FORMAT, length_bytes)
            body = file.read(length + _FOOTER_BYTES)
            if len(body) < length + _FOOTER_BYTES:
                return
            yield body[:length]


def event_files(run_dir: str) -> list[str]:
    """Paths of the event files in ``run_dir``, in TensorBoard's (name) order."""
    if not os.path.isdir(run_dir):
        return []
    names = sorted(name for name in os.listdir(run_dir) if name.startswith(EVENT_FILE_PREFIX))
    return [os.path.join(run_dir, name) for name in names]


def steps_on_disk(run_dir: str) -> list[int]:
    """The sorted steps of the summary events already in ``run_dir``'s event files."""
    steps = set()
    for path in event_files(run_dir):
        for record in read_records(path):
            try:
                event = event_pb2.Event.FromString(record)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError: a foreign file
                break
            if event.HasField("summary"):
                steps.add(event.step)
    return sorted(steps)


class SummaryWriter:
    """Writes ready-made ``Summary`` protos to one run directory, one record at a time.

    Examples:

    >>> writer = SummaryWriter("logs/activations")        # doctest: +SKIP
    >>> writer.write(summary, step=0)                      # doctest: +SKIP
    >>> writer.lost_steps, writer.pending_steps            # doctest: +SKIP
    ([], [])
    >>> writer.close()                                     # doctest: +SKIP

    Args:
        run_dir: Directory for the event file; created if missing.
        max_pending_bytes: Bytes of unwritten records kept for a retry (default:
            :data:`MAX_PENDING_BYTES`).

    Raises:
        OSError: if the directory cannot be created or the event file cannot be opened.
    """

    def __init__(self, run_dir: str, max_pending_bytes: int | None = None) -> None:
        self.run_dir = run_dir
        if max_pending_bytes is None:
            max_pending_bytes = MAX_PENDING_BYTES
        self.max_pending_bytes = max_pending_bytes
        #: Steps dropped from the full queue (never written).
        self.lost_steps: list[int] = []
        #: Steps written after at least one failed attempt.
        self.delayed_steps: list[int] = []
        #: The error of the last failed write (``None`` once the queue drained).
        self.last_error: OSError | None = None
        #: Paths of every event file this writer opened, in order.
        self.paths: list[str] = []
        self._pending: deque[tuple[int | None, bytes]] = deque()
        self._pending_bytes = 0
        self._failed: set[int] = set()
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._good_size = 0
        self._open_new_file()

    @property
    def path(self) -> str:
        """The event file written now."""
        return self.paths[-1]

    @property
    def pending_steps(self) -> list[int]:
        """Steps kept in memory after a failed write, in the order they will be written."""
        return [step for step, _ in self._pending if step is not None]

    def write(self, summary: summary_pb2.Summary, step: int) -> bool:
        """Queue one event holding ``summary`` at ``step`` (wall time: now) and write the queue.

        Returns:
            ``True`` when the queue is empty afterwards (this and every earlier event is on
            disk), ``False`` when a write failed (see :attr:`last_error`).
        """
        event = event_pb2.Event(summary=summary, step=int(step), wall_time=time.time())
        self._enqueue(int(step), frame_record(event.SerializeToString()))
        return self.flush()

    def flush(self) -> bool:
        """Write the queued records in order; stop at the first failure (``False``)."""
        try:
            self._check_file()
            while self._pending:
                step, record = self._pending[0]
                self._append(record)
                self._pending.popleft()
                self._pending_bytes -= len(record)
                if step in self._failed:
                    self._failed.discard(step)
                    self.delayed_steps.append(step)
        except OSError as error:
            self.last_error = error
            self._failed.update(step for step, _ in self._pending if step is not None)
            return False
        self.last_error = None
        return True

    def write_snapshot(self, summaries: Sequence[tuple[int, summary_pb2.Summary]]) -> bool:
        """Append a snapshot that replaces the run's content: ``(step, summary)`` pairs.

        Writes ``SessionLog.START`` at the first step, then the events (all at one wall
        time): TensorBoard then shows this snapshot only (see the module docstring). Records
        of an earlier snapshot still queued after a failed write are dropped (superseded,
        not lost: :attr:`lost_steps` does not list them); on a full disk this snapshot stays
        queued and is retried by the next :meth:`flush`.

        Returns:
            ``True`` when the snapshot is on disk, ``False`` when a write failed (see
            :attr:`last_error`).
        """
        if not summaries:
            return True
        self._pending = deque(item for item in self._pending if item[0] is None)
        self._pending_bytes = sum(len(record) for _, record in self._pending)
        self._failed.clear()
        now = time.time()
        first_step = int(summaries[0][0])
        start = event_pb2.Event(step=first_step, wall_time=now,
                                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
        self._enqueue(first_step, frame_record(start.SerializeToString()))
        for step, summary in summaries:
            event = event_pb2.Event(summary=summary, step=int(step), wall_time=now)
            self._enqueue(int(step), frame_record(event.SerializeToString()))
        return self.flush()

    def discard_pending(self) -> list[int]:
        """Give up on the queued records: they become lost steps. Returns their steps."""
        steps = self.pending_steps
        self.lost_steps.extend(steps)
        self._failed.difference_update(steps)
        self._pending = deque(item for item in self._pending if item[0] is None)
        self._pending_bytes = sum(len(record) for _, record in self._pending)
        return steps

    def close(self) -> None:
        """Close the event file (queued records are not written: call ``flush`` first)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- internals ------------------------------------------------------------------

    def _enqueue(self, step: int | None, record: bytes) -> None:
        self._pending.append((step, record))
        self._pending_bytes += len(record)
        while self._pending_bytes > self.max_pending_bytes and self.pending_steps:
            index = next(i for i, (queued, _) in enumerate(self._pending) if queued is not None)
            dropped_step, dropped = self._pending[index]
            del self._pending[index]
            self._pending_bytes -= len(dropped)
            self._failed.discard(dropped_step)
            self.lost_steps.append(dropped_step)

    def _open_new_file(self) -> None:
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            name = (f"{EVENT_FILE_PREFIX}{int(time.time()):010d}.{socket.gethostname()}."
                    f"{os.getpid()}.{next(_file_counter):0{COUNTER_DIGITS}d}")
            path = os.path.join(self.run_dir, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as error:
            raise OSError(
                error.errno,
                f"Cannot create the TensorBoard run directory {self.run_dir!r}: "
                f"{error.strerror or error}",
            ) from None
        self.close()
        self._fd = fd
        status = os.fstat(fd)
        self._inode = (status.st_dev, status.st_ino)
        self._good_size = 0
        self.paths.append(path)
        version = event_pb2.Event(wall_time=time.time(), file_version=FILE_VERSION)
        # A new file starts with its own version record (an old unwritten one is dropped).
        self._pending = deque(item for item in self._pending if item[0] is not None)
        self._pending.appendleft((None, frame_record(version.SerializeToString())))
        self._pending_bytes = sum(len(record) for _, record in self._pending)

    def _check_file(self) -> None:
        """Re-create the event file if it was deleted or replaced since it was opened."""
        try:
            status = os.stat(self.path)
            present = (status.st_dev, status.st_ino) == self._inode
        except FileNotFoundError:
            present = False
        if not present:
            logger.warning(
                "ActivationStatistics: the event file %s was deleted or replaced; "
                "writing on in a new event file in %s", self.path, self.run_dir)
            self._open_new_file()

    def _append(self, record: bytes) -> None:
        """Write one whole record or, on an error, truncate the file back and raise."""
        view = memoryview(record)
        try:
            while view:
                written = _os_write(self._fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "the write returned no bytes")
                view = view[written:]
        except OSError:
            os.ftruncate(self._fd, self._good_size)
            raise
        self._good_size += len(record)
