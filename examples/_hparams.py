"""TensorBoard HParams for the examples' runs, written without TensorFlow.

TensorBoard's HParams tab reads three kinds of records:

- one *experiment* record (``hparams_config``) in the parent folder of the runs: every
  hyperparameter with the values it takes, and every metric with its description;
- one *session* record (``hparams``) in each run directory: that run's hyperparameter values;
- the metrics themselves, as scalars of the run (here at step 0, tags ``result/...``).

The protos come from ``tensorboard.plugins.hparams.summary_v2``'s ``*_pb`` helpers, which build
them in pure Python (only their ``hparams``/``hparams_config`` siblings write through
``tf.summary``), the scalars are built by hand, and everything is written with TensorBoard's
own ``EventFileWriter``: the same files on the tensorflow, jax and torch backends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

HParamValue = bool | int | float | str
#: Step of the session records and of the result scalars.
RESULT_STEP = 0


@dataclass(frozen=True)
class RunRecord:
    """One run of an example: its hyperparameters and its final measurements."""

    name: str
    hparams: Mapping[str, HParamValue]
    metrics: Mapping[str, float]


def scalar_value(tag: str, value: float) -> summary_pb2.Summary.Value:
    """A scalar in the form ``tf.summary.scalar`` writes: a float32 tensor, ``scalars`` plugin."""
    return summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_util.make_tensor_proto(float(value), dtype="float32"),
        metadata=scalar_metadata.create_summary_metadata(display_name=tag, description=""),
    )


def write_summaries(directory: Path, summaries: Sequence[summary_pb2.Summary]) -> None:
    """Write ``Summary`` protos at :data:`RESULT_STEP` into a new event file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(directory))
    try:
        for summary in summaries:
            writer.add_event(
                event_pb2.Event(wall_time=time.time(), step=RESULT_STEP, summary=summary)
            )
    finally:
        writer.close()


def experiment_summary(
    records: Sequence[RunRecord], metric_descriptions: Mapping[str, str]
) -> summary_pb2.Summary:
    """The experiment record: each hparam with the sorted values it takes over ``records``."""
    values_by_hparam: dict[str, set] = {}
    for record in records:
        for name, value in record.hparams.items():
            values_by_hparam.setdefault(name, set()).add(value)
    hparams = [
        hparams_summary.HParam(name, hparams_summary.Discrete(sorted(values)))
        for name, values in values_by_hparam.items()
    ]
    metrics = [
        hparams_summary.Metric(tag, description=description)
        for tag, description in metric_descriptions.items()
    ]
    return hparams_summary.hparams_config_pb(hparams=hparams, metrics=metrics)


def run_summaries(record: RunRecord) -> list[summary_pb2.Summary]:
    """A run's session record and its metrics as scalars."""
    session = hparams_summary.hparams_pb(dict(record.hparams), trial_id=record.name)
    metrics = summary_pb2.Summary(
        value=[scalar_value(tag, value) for tag, value in record.metrics.items()]
    )
    return [session, metrics]


def write_hparams(
    parent: Path,
    records: Sequence[RunRecord],
    metric_descriptions: Mapping[str, str],
) -> list[Path]:
    """Tag every run for TensorBoard's HParams tab and write the experiment's description.

    Args:
        parent: The folder that holds the runs (``tensorboard --logdir`` this); run ``r`` is
            ``parent / r.name``.
        records: The runs.
        metric_descriptions: Scalar tag of each metric -> description.

    Returns:
        The run directories, in the order of ``records``.
    """
    write_summaries(parent, [experiment_summary(records, metric_descriptions)])
    run_directories = []
    for record in records:
        run_dir = parent / record.name
        write_summaries(run_dir, run_summaries(record))
        run_directories.append(run_dir)
    return run_directories
