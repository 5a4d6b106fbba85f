"""Fan-in and fan-out of dense, convolution, depthwise and transposed-convolution kernels.

Keras lays its kernels out channels-last, with the receptive field first; what the two
trailing axes mean depends on the layer
(``keras/src/layers/convolutional/base_conv.py``, ``base_depthwise_conv.py``,
``base_separable_conv.py``, ``base_conv_transpose.py``):

- ``"standard"`` (Dense, Conv1D/2D/3D, SeparableConv's pointwise kernel, EinsumDense read as
  ``(..., in, out)``): ``(*k, in, out)``. This is Keras's own
  ``keras.src.initializers.random_initializers.compute_fans``:
  ``fan_in = prod(k) * in``, ``fan_out = prod(k) * out``.
- ``"depthwise"`` (DepthwiseConv1D/2D, SeparableConv1D/2D's depthwise kernel):
  ``(*k, channels, depth_multiplier)``. Every output channel sees one input channel, so
  ``fan_in = prod(k)`` and ``fan_out = prod(k) * depth_multiplier`` (each input value reaches
  ``depth_multiplier`` outputs through each of the ``prod(k)`` taps).
- ``"transpose"`` (Conv1D/2D/3DTranspose): ``(*k, out, in)`` (the output channels come
  first): ``fan_in = prod(k) * in``, ``fan_out = prod(k) * out``.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

from keras_inits._checks import check_choice, check_shape

__all__ = ["LAYOUTS", "Layout", "compute_fans"]

Layout = Literal["standard", "depthwise", "transpose"]

#: The kernel layouts `compute_fans` knows.
LAYOUTS = ("standard", "depthwise", "transpose")

# A convolution kernel has the receptive field in front of the two channel axes.
_CHANNEL_AXES = 2


def check_layout(layout: object) -> str:
    """Returns `layout` if it is one of `LAYOUTS`.

    Raises:
        ValueError: If it is not.
    """
    return check_choice("layout", layout, LAYOUTS)


def compute_fans(shape: Sequence[int], layout: Layout = "standard") -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a kernel shape.

    With ``shape = (*k, a, b)`` and ``r = prod(k)``:

        standard:  fan_in = r * a,  fan_out = r * b   (a = in, b = out; Keras's convention)
        depthwise: fan_in = r,      fan_out = r * b   (a = channels, b = depth multiplier)
        transpose: fan_in = r * b,  fan_out = r * a   (a = out, b = in)

    Examples:

    >>> compute_fans((784, 500))
    (784, 500)
    >>> compute_fans((3, 3, 64, 128))
    (576, 1152)
    >>> compute_fans((3, 3, 64, 1), layout="depthwise")
    (9, 9)
    >>> compute_fans((3, 3, 32, 64), layout="transpose")
    (576, 288)

    Args:
        shape: The kernel shape. Rank 0 gives ``(1, 1)``, rank 1 gives ``(n, n)``, rank 2
            ``(in, out)`` for ``"standard"``; rank >= 3 is read as a channels-last
            convolution kernel of the given layout.
        layout: ``"standard"``, ``"depthwise"`` or ``"transpose"`` (see the module
            docstring for which Keras layers use which).

    Returns:
        A pair of ints. Either may be 0 for a zero-size shape.

    Raises:
        TypeError: If `shape` is not a sequence of ints (Python or NumPy integers).
        ValueError: If a dimension is negative, `layout` is not one of the three, or a
            ``"depthwise"`` or ``"transpose"`` shape has rank < 3 (those layouts exist only
            for convolutions).
    """
    received = shape
    shape = check_shape(shape)
    check_layout(layout)
    if layout != "standard" and len(shape) <= _CHANNEL_AXES:
        raise ValueError(
            f"A {layout!r} kernel has rank >= 3, (*kernel_size, channels, channels). "
            f"Received: shape={received!r}"
        )
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-_CHANNEL_AXES])
    first, second = shape[-2], shape[-1]
    if layout == "depthwise":
        return receptive_field, receptive_field * second
    if layout == "transpose":
        return receptive_field * second, receptive_field * first
    return receptive_field * first, receptive_field * second
