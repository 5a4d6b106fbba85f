"""The depth-profile picture: std and mean cosine similarity against depth, as a PNG.

matplotlib is optional and imported lazily, with the Agg canvas directly (no pyplot, no
global state, no GUI backend). A full matplotlib draw of a two-panel figure costs 25-100 ms,
most of it text and ticks, so the figure is drawn *once* (and again only when the layers
change or the std leaves the decades on the axis) and then blitted: each render restores the
cached background, draws the lines and the title and encodes the pixels as a palette PNG
(measured at 1100 x 440 px: ~25 ms, ~24 KB).
"""

from __future__ import annotations

import importlib.util
import io
import math
from typing import Any, Mapping

import numpy as np

from keras_inits.stats import LayerStatistics

#: Figure size in inches and resolution: 1100 x 440 px, readable where TensorBoard shows an
#: image at its own size (the Images tab; "Show actual image size" elsewhere).
FIGURE_SIZE = (11.0, 4.4)
DPI = 100
#: Font sizes in points; at :data:`DPI` the smallest (ticks) is 10 pt = 13.9 px.
TITLE_POINTS = 13
LABEL_POINTS = 11
TICK_POINTS = 10
#: Up to this many layers, the x axis is labelled with layer paths instead of depth indices.
MAX_NAMED_TICKS = 16
#: Bottom margin (figure fraction) under layer-name ticks, and under a depth-index axis.
NAMED_BOTTOM = 0.27
INDEXED_BOTTOM = 0.15
#: zlib level of the PNG: 1 is several times faster than the default and barely larger.
PNG_COMPRESS_LEVEL = 1
#: Colours of the palette PNG (a plot has a few, plus the anti-aliasing shades).
PNG_COLORS = 64
#: Default std axis (log scale) before any data: 1e-2 .. 1e1.
DEFAULT_STD_DECADES = (-2, 1)
#: A value within this factor of a decade edge gets the next decade too, so that no point
#: (a std of exactly 1.0, say) sits clipped on the frame of the std axis.
DECADE_HEADROOM = 1.25
#: Shown in the std panel instead of an empty log axis when no layer has a std above 0.
ZERO_STD_MESSAGE = ("std is 0 (or not finite) at every layer:\n"
                    "every output is constant, nothing to draw on a log axis")


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _positive(value: float) -> float:
    """Values a log axis can show (0 and non-finite become NaN, i.e. a gap)."""
    return value if math.isfinite(value) and value > 0 else math.nan


class DepthProfilePlot:
    """Draws std and pre-activation std (log scale) and mean cosine similarity against depth.

    The horizontal axis is the depth index ``kk`` of the tags (0 the shallowest monitored
    layer), the title names the run and the step, the legend sits above the panels, outside
    the axes, the output layer is marked by a dashed vertical line, and when no layer has a
    std above 0 the std panel says so in a sentence (:data:`ZERO_STD_MESSAGE`).

    Examples:

    >>> plot = DepthProfilePlot()                                          # doctest: +SKIP
    >>> png, width, height = plot.render(stats, title="logs/activations, step 0",
    ...                                  output="out")                     # doctest: +SKIP
    """

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

        self._figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
        self._figure.subplots_adjust(left=0.06, right=0.99, bottom=NAMED_BOTTOM, top=0.78,
                                     wspace=0.14)
        self._canvas = FigureCanvasAgg(self._figure)
        self._std_axes, self._cosine_axes = self._figure.subplots(1, 2)
        # animated=True: left out of the full draw, drawn by blitting.
        (self._std_line,) = self._std_axes.plot(
            [], [], marker="o", markersize=5, label="std (output)", animated=True
        )
        (self._pre_std_line,) = self._std_axes.plot(
            [], [], marker=".", markersize=5, linestyle="--", label="pre_std (before activation)",
            animated=True,
        )
        (self._cosine_line,) = self._cosine_axes.plot(
            [], [], marker="o", markersize=5, color="tab:red", label="mean cosine similarity",
            animated=True,
        )
        self._title = self._figure.text(0.01, 0.98, "", ha="left", va="top",
                                        fontsize=TITLE_POINTS, animated=True)
        self._zero_message = self._std_axes.text(
            0.5, 0.5, ZERO_STD_MESSAGE, transform=self._std_axes.transAxes, ha="center",
            va="center", fontsize=LABEL_POINTS, color="tab:red", animated=True,
        )
        self._output_marks: list = []

        self._std_axes.set_yscale("log")
        # Plain "0.01"-style labels: the default mathtext ones ("$10^{-2}$") cost ~50 ms to parse.
        self._std_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        self._std_axes.yaxis.set_minor_formatter(NullFormatter())
        self._std_axes.yaxis.set_minor_locator(NullLocator())  # minor log ticks: ~40 ms
        self._std_axes.set_title("std by depth (log scale)", fontsize=LABEL_POINTS)
        self._std_axes.axhline(1.0, color="grey", linewidth=0.8)
        self._cosine_axes.set_title("mean cosine similarity between samples by depth",
                                    fontsize=LABEL_POINTS)
        self._cosine_axes.set_ylim(-0.05, 1.05)
        for axes in (self._std_axes, self._cosine_axes):
            axes.tick_params(labelsize=TICK_POINTS)
            axes.grid(True, linewidth=0.4)
        self._paths: tuple[str, ...] | None = None
        self._output: str | None = None
        self._decades: tuple[int, int] = DEFAULT_STD_DECADES
        self._background = None
        # The PNG palette of the current background (see _background_palette); every image
        # maps to it by nearest colour: 1.5 ms instead of 9-10 ms for an octree per image.
        self._palette: Any = None
        # The first draw in a process loads fonts and fills matplotlib's caches (~2x the cost
        # of later draws): pay it here, when the callback is built, not during training.
        self._canvas.draw()

    def _needed_decades(self, values: list[float]) -> tuple[int, int]:
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return self._decades
        low = math.floor(math.log10(min(finite) / DECADE_HEADROOM))
        high = math.ceil(math.log10(max(finite) * DECADE_HEADROOM))
        if high == low:
            high += 1
        return low, high

    def _draw_background(self, paths: tuple[str, ...], output: str | None,
                         decades: tuple[int, int]) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        positions = list(range(len(paths)))
        named = len(paths) <= MAX_NAMED_TICKS
        # Room under the panels for rotated layer names, or for one axis label.
        self._figure.subplots_adjust(bottom=NAMED_BOTTOM if named else INDEXED_BOTTOM)
        for mark in self._output_marks:
            mark.remove()
        self._output_marks = []
        for axes in (self._std_axes, self._cosine_axes):
            axes.set_xlim(-0.5, len(paths) - 0.5)
            if named:
                labels = [f"{index:02d} {path}" for index, path in enumerate(paths)]
                axes.set_xticks(positions, labels=labels, rotation=40, ha="right",
                                fontsize=TICK_POINTS)
            else:
                axes.xaxis.set_major_locator(MaxNLocator(integer=True))
                axes.set_xlabel("layer depth index (kk in the tags)", fontsize=LABEL_POINTS)
            if output in paths:
                self._output_marks.append(axes.axvline(paths.index(output), color="black",
                                                       linestyle=":", linewidth=1.2))
        handles = [self._std_line, self._pre_std_line, self._cosine_line]
        if output in paths:
            handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1.2,
                                  label=f"output layer ({output})"))
        for legend in self._figure.legends:
            legend.remove()
        self._figure.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, 0.93),
                            ncol=len(handles), fontsize=TICK_POINTS, frameon=False)
        self._std_axes.set_ylim(10.0 ** decades[0], 10.0 ** decades[1])
        self._canvas.draw()
        self._background = self._canvas.copy_from_bbox(self._figure.bbox)
        self._palette = self._background_palette()
        self._paths = paths
        self._output = output
        self._decades = decades

    def _background_palette(self) -> Any:
        """The palette of every image on the background just drawn (a ``"P"`` PIL image).

        :data:`PNG_COLORS` colours: the exact colours of the artists drawn over the
        background (the three lines, the sentence, the title), and an octree of the
        background's own pixels for the rest, so no image depends on which was drawn first.
        """
        from matplotlib.colors import to_rgb
        from PIL import Image

        artists = (self._std_line, self._pre_std_line, self._cosine_line, self._zero_message,
                   self._title)
        exact = list(dict.fromkeys(
            tuple(round(255 * channel) for channel in to_rgb(artist.get_color()))
            for artist in artists
        ))
        background = Image.fromarray(np.asarray(self._canvas.buffer_rgba())).convert("RGB")
        shades = background.quantize(colors=PNG_COLORS - len(exact),
                                     method=Image.Quantize.FASTOCTREE)
        colours = shades.getpalette()[: 3 * (PNG_COLORS - len(exact))]
        palette = Image.new("P", (1, 1))
        palette.putpalette(colours + [channel for colour in exact for channel in colour])
        return palette

    def render(self, statistics: Mapping[str, LayerStatistics], *, title: str = "",
               output: str | None = None) -> tuple[bytes, int, int]:
        """Draw the profile; return ``(png_bytes, width, height)``.

        Args:
            statistics: Path -> statistics, shallow to deep.
            title: The figure's title (the callback: run directory and step).
            output: Path of the model's output layer, marked on both panels (if monitored).
        """
        from PIL import Image  # a dependency of matplotlib

        paths = tuple(statistics)
        depth = list(range(len(paths)))
        std = [_positive(s.std) for s in statistics.values()]
        pre_std = [_positive(s.pre_std) for s in statistics.values()]
        cosine = [math.nan if s.cosine is None else s.cosine for s in statistics.values()]

        needed = self._needed_decades(std + pre_std)
        fits = self._decades[0] <= needed[0] and needed[1] <= self._decades[1]
        layers_changed = paths != self._paths or output != self._output
        if self._background is None or layers_changed or not fits:
            widened = (min(needed[0], self._decades[0]), max(needed[1], self._decades[1]))
            self._draw_background(paths, output, needed if layers_changed else widened)

        self._canvas.restore_region(self._background)
        self._std_line.set_data(depth, std)
        self._pre_std_line.set_data(depth, pre_std)
        self._cosine_line.set_data(depth, cosine)
        self._std_axes.draw_artist(self._std_line)
        self._std_axes.draw_artist(self._pre_std_line)
        self._cosine_axes.draw_artist(self._cosine_line)
        if all(math.isnan(value) for value in std + pre_std):
            self._std_axes.draw_artist(self._zero_message)
        self._title.set_text(title)
        self._figure.draw_artist(self._title)

        pixels = np.asarray(self._canvas.buffer_rgba())
        height, width = pixels.shape[:2]
        buffer = io.BytesIO()
        # A palette PNG: half the bytes of an RGB one (smaller event files), and faster to
        # encode.
        opaque = Image.fromarray(pixels).convert("RGB")  # no transparency chunk in the PNG
        palette = opaque.quantize(palette=self._palette, dither=Image.Dither.NONE)
        palette.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue(), width, height
