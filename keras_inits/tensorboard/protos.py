"""TensorBoard ``Summary`` protos built by hand: scalars, histograms, a PNG, text, the layout.

No TensorFlow: every proto is assembled from TensorBoard's own pure-Python protobuf modules
(``tensorboard.compat.proto``) with TensorBoard's plugin metadata (scalars, histograms,
images, custom scalars), so TensorBoard reads them exactly as it reads ``tf.summary.scalar``
/ ``histogram`` / ``image`` output. Every statistic of one step goes into ONE ``Summary``
proto: one event per step instead of one per number.

Tags of the statistics run (``<log_dir>/activations``), grouped by statistic and sorted by
depth: ``<kk>`` is the layer's depth index among the monitored layers (0 the shallowest),
zero-padded to the width of the last index (at least :data:`INDEX_DIGITS` digits: ``00`` ..
``99``, ``000`` .. ``119`` for 120 layers), so that text order is depth order
(``00_dense`` before ``05_dense_5``):

* ``activations/<statistic>/<kk>_<layer>``: scalars (``keras_inits.stats.ACTIVATION_SCALARS``;
  ``saturation_fraction`` only for layers with a bounded activation);
* ``activations/log10_std/<kk>_<layer>``, ``activations/log10_pre_std/<kk>_<layer>``: the
  base-10 logarithm of ``std`` and ``pre_std`` (a collapse to 1e-8 reads -8 on a linear
  axis); not written at a step where the std is 0 or not finite;
* ``gradients/grad_std/<kk>_<layer>``, ``gradients/kernel_grad_std/<kk>_<layer>``,
  ``gradients/log10_grad_std/<kk>_<layer>``: scalars (with gradients);
* ``activations/histogram/<kk>_<layer>``: histogram of the layer's output values;
* ``gradients/histogram/<kk>_<layer>``: histogram of ``d loss / d output`` (with gradients);
* ``activations/depth_profile/init`` (the run's first write) and
  ``activations/depth_profile/latest`` (every image write): image (PNG) of std and cosine
  against depth;
* ``residual_stream/std/<k>_<merge>``, ``residual_stream/growth/<k>_<merge>``: scalars of the
  stream after residual block ``k`` (zero-padded, so the tags sort by depth), and
  ``residual_stream/std_ratio_last_first``: the last block's std over the first's;
* ``diagnosis``: text (Markdown), :func:`keras_inits.diagnose`'s report, at the run's first
  write and whenever the findings change;
* ``custom_scalars__config__``: the custom-scalars layout, written once.

Tags of the depth-profile runs (``<log_dir>/activations_profile/init`` and ``.../latest``),
where the *step is the depth index* ``kk``: ``depth_profile/<statistic>`` for
:data:`PROFILE_SCALARS` (and ``depth_profile/residual_stream_std`` and
``depth_profile/residual_stream_growth`` at step = block index ``k``).
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata

from keras_inits.stats import (
    ACTIVATION_SCALARS,
    GRADIENT_SCALARS,
    LayerStatistics,
    StreamStatistics,
)

ACTIVATION_PREFIX = "activations"
GRADIENT_PREFIX = "gradients"
#: The middle part of a histogram tag (``activations/histogram/03_dense_2``).
HISTOGRAM_NAME = "histogram"
DEPTH_PROFILE_TAG = f"{ACTIVATION_PREFIX}/depth_profile"
#: Image of the run's first write (step 0 of a fresh training).
DEPTH_PROFILE_INIT_TAG = f"{DEPTH_PROFILE_TAG}/init"
#: Image of every image write, the step-0 one included (TensorBoard opens it on the latest).
DEPTH_PROFILE_LATEST_TAG = f"{DEPTH_PROFILE_TAG}/latest"
STREAM_PREFIX = "residual_stream"
#: Text-plugin tag of the diagnosis (:func:`keras_inits.diagnose`'s report, Markdown).
DIAGNOSIS_TAG = "diagnosis"
#: Tag of the std of the stream after the last block over the std after the first.
STREAM_RATIO_TAG = f"{STREAM_PREFIX}/std_ratio_last_first"
#: Fewest digits of a depth index in a tag (``00_dense``).
INDEX_DIGITS = 2
#: The std statistics that are also written as their base-10 logarithm, and the log's name.
LOG10_STATISTICS: dict[str, str] = {
    "std": "log10_std",
    "pre_std": "log10_pre_std",
    "grad_std": "log10_grad_std",
}
#: Prefix of the depth-profile runs' tags (step = depth index).
PROFILE_PREFIX = "depth_profile"
#: Statistics of the depth-profile runs, one value per layer at step = its depth index.
PROFILE_SCALARS: tuple[str, ...] = (
    "std",
    "log10_std",
    "pre_std",
    "log10_pre_std",
    "cosine",
    "dead_fraction",
    "saturation_fraction",
    "grad_std",
    "log10_grad_std",
)
#: Residual-stream statistics of the depth-profile runs (step = block index).
PROFILE_STREAM_SCALARS: tuple[str, ...] = ("std", "growth")
#: The tag TensorBoard's custom-scalars plugin reads its layout from.
LAYOUT_TAG = custom_scalar_metadata.CONFIG_SUMMARY_TAG

_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)
_HISTOGRAM_METADATA = histogram_metadata.create_summary_metadata(
    display_name=None, description=None
)
_IMAGE_METADATA = image_metadata.create_summary_metadata(display_name=None, description=None)
_LAYOUT_METADATA = custom_scalar_metadata.create_summary_metadata()
_TEXT_METADATA = text_metadata.create_summary_metadata(display_name=None, description=None)


def index_digits(count: int) -> int:
    """Digits of a zero-padded depth index among ``count`` layers (or blocks).

    Examples:

    >>> index_digits(10), index_digits(11), index_digits(101)
    (2, 2, 3)
    """
    return max(INDEX_DIGITS, len(str(max(count - 1, 0))))


def _indexed(index: int, name: str, digits: int) -> str:
    return f"{index:0{digits}d}_{name}"


def _prefix(statistic: str) -> str:
    gradient_statistics = GRADIENT_SCALARS + (LOG10_STATISTICS["grad_std"],)
    return GRADIENT_PREFIX if statistic in gradient_statistics else ACTIVATION_PREFIX


def scalar_tag(statistic: str, index: int, path: str, digits: int = INDEX_DIGITS) -> str:
    """TensorBoard tag of one statistic of the layer at depth ``index``.

    Examples:

    >>> scalar_tag("pre_std", 3, "dense_2")
    'activations/pre_std/03_dense_2'
    >>> scalar_tag("grad_std", 3, "dense_2", digits=3)
    'gradients/grad_std/003_dense_2'
    """
    return f"{_prefix(statistic)}/{statistic}/{_indexed(index, path, digits)}"


def histogram_tag(index: int, path: str, digits: int = INDEX_DIGITS) -> str:
    """TensorBoard tag of the output histogram of the layer at depth ``index``."""
    return f"{ACTIVATION_PREFIX}/{HISTOGRAM_NAME}/{_indexed(index, path, digits)}"


def gradient_histogram_tag(index: int, path: str, digits: int = INDEX_DIGITS) -> str:
    """TensorBoard tag of the ``d loss / d output`` histogram of the layer at depth ``index``."""
    return f"{GRADIENT_PREFIX}/{HISTOGRAM_NAME}/{_indexed(index, path, digits)}"


def stream_tag(statistic: str, block: StreamStatistics, blocks: int) -> str:
    """TensorBoard tag of the ``std`` or ``growth`` of the stream after one of ``blocks`` blocks.

    Examples:

    >>> stream_tag("std", StreamStatistics(3, "add_3", 1.0, 1.0), blocks=16)
    'residual_stream/std/03_add_3'
    """
    return f"{STREAM_PREFIX}/{statistic}/{_indexed(block.index, block.merge, index_digits(blocks))}"


def profile_tag(statistic: str) -> str:
    """Tag of one statistic in the depth-profile runs (``depth_profile/pre_std``)."""
    return f"{PROFILE_PREFIX}/{statistic}"


def profile_stream_tag(statistic: str) -> str:
    """Tag of a residual-stream statistic in the depth-profile runs."""
    return f"{PROFILE_PREFIX}/{STREAM_PREFIX}_{statistic}"


def log10(value: float) -> float | None:
    """``log10(value)`` of a std, or ``None`` (not written) for 0, negative or non-finite."""
    if not math.isfinite(value) or value <= 0:
        return None
    return math.log10(value)


def layer_scalars(layer_stats: LayerStatistics) -> dict[str, float]:
    """Every scalar written for one layer: its statistics, then the log10 of its stds."""
    values = layer_stats.scalars()
    for statistic, log_name in LOG10_STATISTICS.items():
        if statistic in values:
            logarithm = log10(values[statistic])
            if logarithm is not None:
                values[log_name] = logarithm
    return values


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


def add_text(summary: summary_pb2.Summary, tag: str, markdown: str) -> None:
    """Append a text: a rank-0 DT_STRING tensor with the text plugin's metadata (Markdown)."""
    entry = summary.value.add(tag=tag)
    entry.metadata.CopyFrom(_TEXT_METADATA)
    entry.tensor.dtype = types_pb2.DT_STRING
    entry.tensor.string_val.append(markdown.encode("utf-8"))


def statistics_summary(
    statistics: Mapping[str, LayerStatistics],
    *,
    histograms: bool = True,
    image: tuple[bytes, int, int] | None = None,
    init_image: bool = False,
) -> summary_pb2.Summary:
    """One ``Summary`` proto holding every statistic of one step.

    Args:
        statistics: From ``activation_statistics``, shallow to deep (the order gives the
            depth index of each tag); its ``residual_stream`` (when it has one) is written
            under ``residual_stream/`` tags.
        histograms: Include a histogram per layer (and of its gradient, when measured).
        image: Optional ``(png_bytes, width, height)`` for ``activations/depth_profile/latest``.
        init_image: Also write ``image`` as ``activations/depth_profile/init`` (the run's
            first write).

    Returns:
        A TensorBoard ``Summary`` proto.
    """
    summary = summary_pb2.Summary()
    digits = index_digits(len(statistics))
    for index, (path, layer_stats) in enumerate(statistics.items()):
        for name, value in layer_scalars(layer_stats).items():
            add_scalar(summary, scalar_tag(name, index, path, digits), value)
    add_stream(summary, getattr(statistics, "residual_stream", ()))
    if histograms:
        for index, (path, layer_stats) in enumerate(statistics.items()):
            add_histogram(
                summary, histogram_tag(index, path, digits), layer_stats.histogram.edges,
                layer_stats.histogram.counts,
            )
            if layer_stats.grad_histogram is not None:
                add_histogram(
                    summary, gradient_histogram_tag(index, path, digits),
                    layer_stats.grad_histogram.edges, layer_stats.grad_histogram.counts,
                )
    if image is not None:
        png, width, height = image
        if init_image:
            add_png(summary, DEPTH_PROFILE_INIT_TAG, png, width, height)
        add_png(summary, DEPTH_PROFILE_LATEST_TAG, png, width, height)
    return summary


def profile_summaries(
    statistics: Mapping[str, LayerStatistics],
) -> list[tuple[int, summary_pb2.Summary]]:
    """The depth profile: one ``(depth index, Summary)`` per layer, shallow to deep.

    The summary at step ``kk`` holds ``depth_profile/<statistic>`` of the layer at depth
    ``kk`` for every statistic of :data:`PROFILE_SCALARS` it has, and, at step ``k`` of
    residual block ``k``, ``depth_profile/residual_stream_std`` and ``..._growth``. In
    TensorBoard's Scalars tab the horizontal axis "Step" is then the depth.

    Examples:

    >>> import numpy as np, keras
    >>> from keras_inits import activation_statistics
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    >>> stats = activation_statistics(model, np.ones((8, 4), "float32"))
    >>> [(step, summary.value[0].tag) for step, summary in profile_summaries(stats)]
    [(0, 'depth_profile/std')]
    """
    stream = tuple(getattr(statistics, "residual_stream", ()))
    depth = max(len(statistics), len(stream))
    summaries = [summary_pb2.Summary() for _ in range(depth)]
    for index, layer_stats in enumerate(statistics.values()):
        values = layer_scalars(layer_stats)
        for name in PROFILE_SCALARS:
            if name in values:
                add_scalar(summaries[index], profile_tag(name), values[name])
    for block in stream:
        add_scalar(summaries[block.index], profile_stream_tag("std"), block.std)
        add_scalar(summaries[block.index], profile_stream_tag("growth"), block.growth)
    return [(step, summary) for step, summary in enumerate(summaries) if summary.value]


def _present(statistics: Mapping[str, LayerStatistics]) -> set[str]:
    """Names of the scalars that at least one layer has."""
    names: set[str] = set()
    for layer_stats in statistics.values():
        names.update(layer_scalars(layer_stats))
    return names


def _chart(title: str, regex: str) -> layout_pb2.Chart:
    return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=[regex]))


def depth_layout(statistics: Mapping[str, LayerStatistics]) -> layout_pb2.Layout:
    """Custom-scalars layout for the statistics a model has: no chart that is always empty.

    * "depth profile (step = layer index)": a chart per :data:`PROFILE_SCALARS` name the
      model has (regex ``depth_profile/<statistic>$``), drawn from the runs
      ``activations_profile/init`` and ``.../latest``, so the line is the profile;
    * "activations (by layer)": a chart per statistic the model has (regex
      ``activations/<statistic>/``), a line per layer;
    * "gradients (by layer)" with gradients, "residual stream (by block)" for a residual
      model.

    ``saturation_fraction`` is charted only when a layer has a bounded activation.
    """
    present = _present(statistics)
    stream = tuple(getattr(statistics, "residual_stream", ()))
    profile_charts = [
        _chart(name, f"{re.escape(profile_tag(name))}$")
        for name in PROFILE_SCALARS if name in present
    ]
    if stream:
        profile_charts += [
            _chart(f"{STREAM_PREFIX}_{name}", f"{re.escape(profile_stream_tag(name))}$")
            for name in PROFILE_STREAM_SCALARS
        ]
    activation_names = [name for name in ACTIVATION_SCALARS if name in present]
    for statistic in ("std", "pre_std"):
        if LOG10_STATISTICS[statistic] in present:
            activation_names.insert(activation_names.index(statistic) + 1,
                                    LOG10_STATISTICS[statistic])
    categories = [
        layout_pb2.Category(title=f"{PROFILE_PREFIX} (step = layer index)", chart=profile_charts),
        layout_pb2.Category(
            title=f"{ACTIVATION_PREFIX} (by layer)",
            chart=[_chart(name, f"{ACTIVATION_PREFIX}/{re.escape(name)}/")
                   for name in activation_names],
        ),
    ]
    gradient_names = [name for name in GRADIENT_SCALARS + (LOG10_STATISTICS["grad_std"],)
                      if name in present]
    if gradient_names:
        categories.append(
            layout_pb2.Category(
                title=f"{GRADIENT_PREFIX} (by layer)",
                chart=[_chart(name, f"{GRADIENT_PREFIX}/{re.escape(name)}/")
                       for name in gradient_names],
            )
        )
    if stream:
        categories.append(
            layout_pb2.Category(
                title=f"{STREAM_PREFIX} (by block)",
                chart=[_chart(name, f"{STREAM_PREFIX}/{name}/") for name in ("std", "growth")],
            )
        )
    return layout_pb2.Layout(category=categories)


def layout_summary(statistics: Mapping[str, LayerStatistics]) -> summary_pb2.Summary:
    """The custom-scalars layout of :func:`depth_layout` as a ``Summary`` proto.

    One ``Summary.Value`` with tag ``custom_scalars__config__``, the ``custom_scalars``
    plugin's metadata and a rank-0 DT_STRING tensor holding ``Layout.SerializeToString()``:
    what ``tensorboard.plugins.custom_scalar.summary.pb`` builds, without its TensorFlow.

    Examples:

    >>> summary = layout_summary({})
    >>> (summary.value[0].tag, summary.value[0].metadata.plugin_data.plugin_name)
    ('custom_scalars__config__', 'custom_scalars')
    """
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[depth_layout(statistics).SerializeToString()],
    )
    summary = summary_pb2.Summary()
    summary.value.add(tag=LAYOUT_TAG, metadata=_LAYOUT_METADATA, tensor=tensor)
    return summary
