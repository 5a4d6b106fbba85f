"""TensorBoard ``Summary`` protos built by hand: scalars, histograms, a PNG, the layout.

No TensorFlow: every proto is assembled from TensorBoard's own pure-Python protobuf modules
(``tensorboard.compat.proto``) with TensorBoard's plugin metadata (scalars, histograms,
images, custom scalars), so TensorBoard reads them exactly as it reads ``tf.summary.scalar``
/ ``histogram`` / ``image`` output. Every statistic of one step goes into ONE ``Summary``
proto: one event per step instead of one per number.

Tags:

* ``activations/<layer>/<statistic>``: scalars (``keras_inits.stats.ACTIVATION_SCALARS``);
* ``gradients/<layer>/grad_std``, ``gradients/<layer>/kernel_grad_std``: scalars;
* ``activations/<layer>``: histogram of the layer's output values;
* ``gradients/<layer>``: histogram of ``d loss / d output`` (with gradients);
* ``activations/depth_profile``: image (PNG) of std and cosine against depth;
* ``residual_stream/std/<k>_<merge>``, ``residual_stream/growth/<k>_<merge>``: scalars of the
  stream after residual block ``k`` (zero-padded, so the tags sort by depth), and
  ``residual_stream/std_ratio_last_first``: the last block's std over the first's;
* ``custom_scalars__config__``: the custom-scalars layout, written once.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from keras_inits.stats import (
    ACTIVATION_SCALARS,
    GRADIENT_SCALARS,
    LayerStatistics,
    StreamStatistics,
)

ACTIVATION_PREFIX = "activations"
GRADIENT_PREFIX = "gradients"
DEPTH_PROFILE_TAG = f"{ACTIVATION_PREFIX}/depth_profile"
STREAM_PREFIX = "residual_stream"
#: Tag of the std of the stream after the last block over the std after the first.
STREAM_RATIO_TAG = f"{STREAM_PREFIX}/std_ratio_last_first"
#: Fewest digits of the block index in a stream tag.
_STREAM_INDEX_DIGITS = 2
#: The tag TensorBoard's custom-scalars plugin reads its layout from.
LAYOUT_TAG = custom_scalar_metadata.CONFIG_SUMMARY_TAG

_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)
_HISTOGRAM_METADATA = histogram_metadata.create_summary_metadata(
    display_name=None, description=None
)
_IMAGE_METADATA = image_metadata.create_summary_metadata(display_name=None, description=None)
_LAYOUT_METADATA = custom_scalar_metadata.create_summary_metadata()


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


def stream_tag(statistic: str, block: StreamStatistics, blocks: int) -> str:
    """TensorBoard tag of the ``std`` or ``growth`` of the stream after one of ``blocks`` blocks.

    Examples:

    >>> stream_tag("std", StreamStatistics(3, "add_3", 1.0, 1.0), blocks=16)
    'residual_stream/std/03_add_3'
    """
    digits = max(_STREAM_INDEX_DIGITS, len(str(blocks - 1)))
    return f"{STREAM_PREFIX}/{statistic}/{block.index:0{digits}d}_{block.merge}"


def add_stream(summary: summary_pb2.Summary, stream: Sequence[StreamStatistics]) -> None:
    """Append the residual stream's scalars (nothing for a model without residual merges)."""
    for block in stream:
        add_scalar(summary, stream_tag("std", block, len(stream)), block.std)
        add_scalar(summary, stream_tag("growth", block, len(stream)), block.growth)
    if stream:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = float(np.float64(stream[-1].std) / np.float64(stream[0].std))
        add_scalar(summary, STREAM_RATIO_TAG, ratio)


def add_scalar(summary: summary_pb2.Summary, tag: str, value: float) -> None:
    """Append a scalar: a rank-0 DT_FLOAT tensor with the scalars plugin's metadata."""
    entry = summary.value.add(tag=tag)
    entry.metadata.CopyFrom(_SCALAR_METADATA)
    entry.tensor.dtype = types_pb2.DT_FLOAT
    entry.tensor.float_val.append(value)


def add_histogram(summary: summary_pb2.Summary, tag: str, edges: np.ndarray,
                  counts: np.ndarray) -> None:
    """Append a histogram: a ``(k, 3)`` DT_DOUBLE tensor of ``[left, right, count]`` rows.

    Args:
        summary: The proto to append to.
        tag: The histogram's tag.
        edges: ``k + 1`` bucket edges.
        counts: ``k`` bucket counts.
    """
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


def add_png(summary: summary_pb2.Summary, tag: str, png: bytes, width: int,
            height: int) -> None:
    """Append an image: a DT_STRING tensor ``[width, height, png_bytes]`` (the image plugin's form)."""
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
        statistics: From ``activation_statistics``; its ``residual_stream`` (when it has
            one) is written under ``residual_stream/`` tags.
        histograms: Include a histogram per layer (and of its gradient, when measured).
        image: Optional ``(png_bytes, width, height)`` for ``activations/depth_profile``.

    Returns:
        A TensorBoard ``Summary`` proto.
    """
    summary = summary_pb2.Summary()
    for path, layer_stats in statistics.items():
        for name, value in layer_stats.scalars().items():
            add_scalar(summary, scalar_tag(path, name), value)
    add_stream(summary, getattr(statistics, "residual_stream", ()))
    if histograms:
        for path, layer_stats in statistics.items():
            add_histogram(
                summary, histogram_tag(path), layer_stats.histogram.edges,
                layer_stats.histogram.counts,
            )
            if layer_stats.grad_histogram is not None:
                add_histogram(
                    summary, gradient_histogram_tag(path), layer_stats.grad_histogram.edges,
                    layer_stats.grad_histogram.counts,
                )
    if image is not None:
        png, width, height = image
        add_png(summary, DEPTH_PROFILE_TAG, png, width, height)
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
    """The custom-scalars layout as a ``Summary`` proto.

    One ``Summary.Value`` with tag ``custom_scalars__config__``, the ``custom_scalars``
    plugin's metadata and a rank-0 DT_STRING tensor holding ``Layout.SerializeToString()``:
    what ``tensorboard.plugins.custom_scalar.summary.pb`` builds, without its TensorFlow.

    Examples:

    >>> summary = layout_summary()
    >>> (summary.value[0].tag, summary.value[0].metadata.plugin_data.plugin_name)
    ('custom_scalars__config__', 'custom_scalars')
    """
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[depth_layout(gradients).SerializeToString()],
    )
    summary = summary_pb2.Summary()
    summary.value.add(tag=LAYOUT_TAG, metadata=_LAYOUT_METADATA, tensor=tensor)
    return summary
