"""Fan-in and fan-out of dense and channels-last convolution kernels.

The convention is Keras's own (``keras.src.initializers.random_initializers.compute_fans``):
a kernel of shape ``(*receptive_field, in_channels, out_channels)`` has

    fan_in  = prod(receptive_field) * in_channels
    fan_out = prod(receptive_field) * out_channels

so that a ``Dense`` kernel ``(in, out)`` gives ``(in, out)`` and a ``Conv2D`` kernel
``(kh, kw, in, out)`` gives ``(kh * kw * in, kh * kw * out)``.
"""

from __future__ import annotations

import math
from typing import Sequence


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a kernel shape.

    Args:
        shape: The kernel shape. Rank 0 gives ``(1, 1)``, rank 1 gives ``(n, n)``, rank 2
            ``(in, out)``, and rank >= 3 is read as a channels-last convolution kernel.

    Returns:
        A pair of ints. Either may be 0 for a zero-size shape.

    Examples:

    >>> compute_fans((784, 500))
    (784, 500)
    >>> compute_fans((3, 3, 64, 128))
    (576, 1152)
    """
    shape = tuple(int(dim) for dim in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field
