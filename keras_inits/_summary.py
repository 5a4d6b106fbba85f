"""TensorBoard writing for the statistics: protos built by hand, written in one go.

TensorFlow-specific (``tf.summary``). Every statistic of one step goes out as ONE
``Summary`` proto through ``tf.summary.experimental.write_raw_pb``: one op, one event,
instead of one ``tf.summary.scalar`` op per number. The protos use TensorBoard's own plugin
metadata (scalars, histograms, images, custom scalars), so TensorBoard reads them exactly as
it reads ``tf.summary.scalar`` / ``histogram`` / ``image`` output.

Tags:

* ``activations/<layer>/<statistic>``: scalars (``keras_inits.stats.ACTIVATION_SCALARS``);
* ``gradients/<layer>/grad_std``, ``gradients/<layer>/kernel_grad_std``: scalars;
* ``activations/<layer>``: histogram of the layer's output values;
* ``gradients/<layer>``: histogram of ``d loss / d output`` (with gradients);
* ``activations/depth_profile``: image (PNG) of std and cosine against depth;
* ``custom_scalars__config__``: the custom-scalars layout, written once.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np
from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from keras_inits.stats import ACTIVATION_SCALARS, GRADIENT_SCALARS, LayerStatistics

ACTIVATION_PREFIX = "activations"
GRADIENT_PREFIX = "gradients"
DEPTH_PROFILE_TAG = f"{ACTIVATION_PREFIX}/depth_profile"

_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)
_HISTOGRAM_METADATA = histogram_metadata.create_summary_metadata(
    display_name=None, description=None
)
_IMAGE_METADATA = image_metadata.create_summary_metadata(display_name=None, description=None)


def scalar_tag(path: str, statistic: str) -> str:
    """TensorBoard tag of one statistic of one layer."""
    prefix = GRADIENT_PREFIX if statistic in GRADIENT_SCALARS else ACTIVATION_PREFIX
    return f"{prefix}/{path}/{statistic}"


def histogram_tag(path: str) -> str:
    """TensorBoard tag of a layer's output histogram."""
    return f"{ACTIVATION_PREFIX}/{path}"


def gradient_histogram_tag(path: str) -> str:
    """TensorBoard tag of a layer's ``d loss / d output`` histogram."""
    return f"{GRADIENT_PREFIX}/{path}"


def _add_scalar(summary: summary_pb2.Summary, tag: str, value: float) -> None:
    entry = summary.value.add(tag=tag)
    entry.metadata.CopyFrom(_SCALAR_METADATA)
    entry.tensor.dtype = types_pb2.DT_FLOAT
    entry.tensor.float_val.append(value)


def _add_histogram(summary: summary_pb2.Summary, tag: str, edges: np.ndarray,
                   counts: np.ndarray) -> None:
    buckets = np.empty((counts.size, 3), dtype=np.float64)
    buckets[:, 0] = edges[:-1]
    buckets[:, 1] = edges[1:]
    buckets[:, 2] = counts
    entry = summary.value.add(tag=tag)
    entry.metadata.CopyFrom(_HISTOGRAM_METADATA)
    entry.tensor.dtype = types_pb2.DT_DOUBLE
    entry.tensor.tensor_shape.dim.add(size=counts.size)
    entry.tensor.tensor_shape.dim.add(size=3)
    entry.tensor.tensor_content = buckets.astype("<f8").tobytes()


def _add_png(summary: summary_pb2.Summary, tag: str, png: bytes, width: int,
             height: int) -> None:
    entry = summary.value.add(tag=tag)
    entry.metadata.CopyFrom(_IMAGE_METADATA)
    entry.tensor.dtype = types_pb2.DT_STRING
    entry.tensor.tensor_shape.dim.add(size=3)
    entry.tensor.string_val.extend([str(width).encode(), str(height).encode(), png])


def statistics_summary(
    statistics: Mapping[str, LayerStatistics],
    *,
    histograms: bool = True,
    image: tuple[bytes, int, int] | None = None,
) -> summary_pb2.Summary:
    """One ``Summary`` proto holding every statistic of one step.

    Args:
        statistics: From ``activation_statistics``.
        histograms: Include a histogram per layer (and of its gradient, when measured).
        image: Optional ``(png_bytes, width, height)`` for ``activations/depth_profile``.

    Returns:
        A TensorBoard ``Summary`` proto.
    """
    summary = summary_pb2.Summary()
    for path, layer_stats in statistics.items():
        for name, value in layer_stats.scalars().items():
            _add_scalar(summary, scalar_tag(path, name), value)
    if histograms:
        for path, layer_stats in statistics.items():
            _add_histogram(
                summary, histogram_tag(path), layer_stats.histogram.edges,
                layer_stats.histogram.counts,
            )
            if layer_stats.grad_histogram is not None:
                _add_histogram(
                    summary, gradient_histogram_tag(path), layer_stats.grad_histogram.edges,
                    layer_stats.grad_histogram.counts,
                )
    if image is not None:
        png, width, height = image
        _add_png(summary, DEPTH_PROFILE_TAG, png, width, height)
    return summary


def depth_layout(gradients: bool = False) -> layout_pb2.Layout:
    """Custom-scalars layout: one multi-line chart per statistic, one line per layer.

    Category "activations (by layer)": a chart per name in ``ACTIVATION_SCALARS`` whose tag
    regex ``activations/.*/<statistic>$`` matches that statistic of every layer, nested paths
    included. With ``gradients=True`` a category "gradients (by layer)" adds ``grad_std`` and
    ``kernel_grad_std``.
    """
    def chart(prefix: str, statistic: str) -> layout_pb2.Chart:
        regex = f"{re.escape(prefix)}/.*/{re.escape(statistic)}$"
        return layout_pb2.Chart(
            title=statistic, multiline=layout_pb2.MultilineChartContent(tag=[regex])
        )

    categories = [
        layout_pb2.Category(
            title=f"{ACTIVATION_PREFIX} (by layer)",
            chart=[chart(ACTIVATION_PREFIX, name) for name in ACTIVATION_SCALARS],
        )
    ]
    if gradients:
        categories.append(
            layout_pb2.Category(
                title=f"{GRADIENT_PREFIX} (by layer)",
                chart=[chart(GRADIENT_PREFIX, name) for name in GRADIENT_SCALARS],
            )
        )
    return layout_pb2.Layout(category=categories)


def layout_summary(gradients: bool = False) -> summary_pb2.Summary:
    """The custom-scalars layout as a ``Summary`` proto (tag ``custom_scalars__config__``)."""
    from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary

    return summary_pb2.Summary.FromString(
        custom_scalar_summary.pb(depth_layout(gradients)).SerializeToString()
    )


class RawSummaryWriter:
    """A ``tf.summary`` file writer that takes ready-made ``Summary`` protos.

    Args:
        run_dir: Directory for the event files; created if missing.

    Raises:
        OSError: if the directory cannot be created or opened for writing.
    """

    def __init__(self, run_dir: str) -> None:
        import tensorflow as tf

        self._tf = tf
        self.run_dir = run_dir
        try:
            tf.io.gfile.makedirs(run_dir)
            self._writer = tf.summary.create_file_writer(run_dir)
        except (tf.errors.OpError, OSError) as error:
            reason = getattr(error, "message", None) or str(error)
            raise OSError(
                f"Cannot create the TensorBoard run directory {run_dir!r}: {reason}"
            ) from None

    def write(self, summaries: Iterable[summary_pb2.Summary] | summary_pb2.Summary,
              step: int) -> None:
        """Write one or more ``Summary`` protos at ``step`` (one op per proto)."""
        if isinstance(summaries, summary_pb2.Summary):
            summaries = [summaries]
        tf = self._tf
        with self._writer.as_default():
            for summary in summaries:
                tf.summary.experimental.write_raw_pb(
                    tf.constant(summary.SerializeToString()), step=np.int64(step)
                )

    def flush(self) -> None:
        """Push buffered events to disk."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
