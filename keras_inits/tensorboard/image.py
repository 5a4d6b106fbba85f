"""The depth-profile picture: std and mean cosine similarity against depth, as a PNG.

matplotlib is optional and imported lazily, with the Agg canvas directly (no pyplot, no
global state, no GUI backend). A full matplotlib draw of a two-panel figure costs 25-100 ms,
most of it text and ticks, so the figure is drawn *once* (and again only when the layers
change or the std leaves the decades on the axis) and then blitted: each render restores the
cached background, draws the three lines and encodes the pixels as a fast PNG (a few ms).
"""

from __future__ import annotations

import importlib.util
import io
import math
from typing import Mapping

import numpy as np

from keras_inits.stats import LayerStatistics

#: Figure size in inches and resolution: small on purpose (drawn during training).
FIGURE_SIZE = (7.0, 2.8)
DPI = 80
#: Up to this many layers, the x axis is labelled with layer paths instead of depth indices.
MAX_NAMED_TICKS = 16
#: zlib level of the PNG: 1 is several times faster than the default and barely larger.
PNG_COMPRESS_LEVEL = 1
#: Default std axis (log scale) before any data: 1e-2 .. 1e1.
DEFAULT_STD_DECADES = (-2, 1)


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _positive(value: float) -> float:
    """Values a log axis can show (0 and non-finite become NaN, i.e. a gap)."""
    return value if math.isfinite(value) and value > 0 else math.nan


class DepthProfilePlot:
    """Draws std (and pre-activation std, log scale) and mean cosine similarity per layer.

    Examples:

    >>> plot = DepthProfilePlot()                    # doctest: +SKIP
    >>> png, width, height = plot.render(stats)      # doctest: +SKIP
    """

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self._figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
        self._figure.subplots_adjust(left=0.07, right=0.98, bottom=0.33, top=0.88, wspace=0.22)
        self._canvas = FigureCanvasAgg(self._figure)
        self._std_axes, self._cosine_axes = self._figure.subplots(1, 2)
        # animated=True: left out of the full draw, drawn by blitting.
        (self._std_line,) = self._std_axes.plot(
            [], [], marker="o", markersize=3, label="std", animated=True
        )
        (self._pre_std_line,) = self._std_axes.plot(
            [], [], marker=".", markersize=3, linestyle="--", label="pre_std", animated=True
        )
        (self._cosine_line,) = self._cosine_axes.plot(
            [], [], marker="o", markersize=3, color="tab:red", animated=True
        )
        from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

        self._std_axes.set_yscale("log")
        # Plain "0.01"-style labels: the default mathtext ones ("$10^{-2}$") cost ~50 ms to parse.
        self._std_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        self._std_axes.yaxis.set_minor_formatter(NullFormatter())
        self._std_axes.yaxis.set_minor_locator(NullLocator())  # minor log ticks: ~40 ms
        self._std_axes.set_title("std by depth", fontsize=9)
        self._std_axes.axhline(1.0, color="grey", linewidth=0.6)
        self._std_axes.legend(fontsize=7, loc="upper right")
        self._cosine_axes.set_title("mean cosine similarity by depth", fontsize=9)
        self._cosine_axes.set_ylim(-0.05, 1.05)
        for axes in (self._std_axes, self._cosine_axes):
            axes.tick_params(labelsize=7)
            axes.grid(True, linewidth=0.3)
        self._paths: tuple[str, ...] | None = None
        self._decades: tuple[int, int] = DEFAULT_STD_DECADES
        self._background = None
        # The first draw in a process loads fonts and fills matplotlib's caches (~2x the cost
        # of later draws): pay it here, when the callback is built, not during training.
        self._canvas.draw()

    def _needed_decades(self, values: list[float]) -> tuple[int, int]:
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return self._decades
        low = math.floor(math.log10(min(finite)))
        high = math.ceil(math.log10(max(finite)))
        if high == low:
            high += 1
        return low, high

    def _draw_background(self, paths: tuple[str, ...], decades: tuple[int, int]) -> None:
        positions = list(range(1, len(paths) + 1))
        for axes in (self._std_axes, self._cosine_axes):
            axes.set_xlim(0.5, len(paths) + 0.5)
            if len(paths) <= MAX_NAMED_TICKS:
                axes.set_xticks(positions, labels=list(paths), rotation=60, ha="right",
                                fontsize=6)
            else:
                axes.set_xlabel("layer (depth)", fontsize=7)
        self._std_axes.set_ylim(10.0 ** decades[0], 10.0 ** decades[1])
        self._canvas.draw()
        self._background = self._canvas.copy_from_bbox(self._figure.bbox)
        self._paths = paths
        self._decades = decades

    def render(self, statistics: Mapping[str, LayerStatistics]) -> tuple[bytes, int, int]:
        """Draw the profile; return ``(png_bytes, width, height)``."""
        from PIL import Image  # a dependency of matplotlib

        paths = tuple(statistics)
        depth = list(range(1, len(paths) + 1))
        std = [_positive(s.std) for s in statistics.values()]
        pre_std = [_positive(s.pre_std) for s in statistics.values()]
        cosine = [math.nan if s.cosine is None else s.cosine for s in statistics.values()]

        needed = self._needed_decades(std + pre_std)
        fits = self._decades[0] <= needed[0] and needed[1] <= self._decades[1]
        if self._background is None or paths != self._paths or not fits:
            widened = (min(needed[0], self._decades[0]), max(needed[1], self._decades[1]))
            self._draw_background(paths, needed if paths != self._paths else widened)

        self._canvas.restore_region(self._background)
        self._std_line.set_data(depth, std)
        self._pre_std_line.set_data(depth, pre_std)
        self._cosine_line.set_data(depth, cosine)
        self._std_axes.draw_artist(self._std_line)
        self._std_axes.draw_artist(self._pre_std_line)
        self._cosine_axes.draw_artist(self._cosine_line)

        pixels = np.asarray(self._canvas.buffer_rgba())[..., :3]
        height, width = pixels.shape[:2]
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue(), width, height
