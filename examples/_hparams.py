"""TensorBoard HParams for the examples' runs, written without TensorFlow.

TensorBoard's HParams tab reads three kinds of records:

- one *experiment* record (``hparams_config``) in the parent folder of the runs: every
  hyperparameter with the values it takes, and every metric with its description;
- one *session* record (``hparams``) in each run directory: that run's hyperparameter values;
- the metrics themselves, as scalars of the run (here at step 0, tags ``result/...``).

Only the hyperparameters that *vary* over the runs are written as hparams (a column that holds
one value everywhere compares nothing and pushes the ones that matter out of view); the
settings every run shares are one Markdown table in TensorBoard's Text tab instead (tag
``settings``, in the parent folder's run). Numbers stay numbers (``depth`` 50, not ``"50"``),
so the HParams tab sorts and filters them as numbers.

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
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

HParamValue = bool | int | float | str
#: Step of the session records and of the result scalars.
RESULT_STEP = 0
#: Text-plugin tag of the settings that every run shares.
SETTINGS_TAG = "settings"


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


def split_hparams(
    records: Sequence[RunRecord],
) -> tuple[list[RunRecord], dict[str, HParamValue]]:
    """The records with only the hparams that take more than one value, and the shared ones.

    With a single record nothing is compared and every hparam is kept.
    """
    if len(records) < 2:
        return list(records), {}
    names = list(dict.fromkeys(name for record in records for name in record.hparams))
    shared = {}
    for name in names:
        values = {repr(record.hparams.get(name)) for record in records}
        if len(values) == 1 and all(name in record.hparams for record in records):
            shared[name] = records[0].hparams[name]
    varying = [
        RunRecord(
            record.name,
            {name: value for name, value in record.hparams.items() if name not in shared},
            record.metrics,
        )
        for record in records
    ]
    return varying, shared


def settings_summary(shared: Mapping[str, HParamValue]) -> summary_pb2.Summary:
    """The shared settings as a two-column Markdown table for the Text tab."""
    rows = "\n".join(f"| {name} | {value} |" for name, value in shared.items())
    table = f"Settings shared by every run:\n\n| setting | value |\n|---|---|\n{rows}"
    return text_summary.text_pb(SETTINGS_TAG, table)


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

    Hparams that are the same in every record are left out of the HParams records and
    written once as the ``settings`` text of ``parent`` (:func:`split_hparams`).

    Args:
        parent: The folder that holds the runs (``tensorboard --logdir`` this); run ``r`` is
            ``parent / r.name``.
        records: The runs.
        metric_descriptions: Scalar tag of each metric -> description.

    Returns:
        The run directories, in the order of ``records``.
    """
    records, shared = split_hparams(records)
    summaries = [experiment_summary(records, metric_descriptions)]
    if shared:
        summaries.append(settings_summary(shared))
    write_summaries(parent, summaries)
    run_directories = []
    for record in records:
        run_dir = parent / record.name
        write_summaries(run_dir, run_summaries(record))
        run_directories.append(run_dir)
    return run_directories
