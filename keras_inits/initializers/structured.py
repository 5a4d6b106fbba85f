"""Structured (deterministic) initializers: the identity (Dirac delta) kernel."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from keras_inits.initializers.base import check_number, check_representable, standardize_call

__all__ = ["Dirac"]


@keras.saving.register_keras_serializable(package="keras_inits")
class Dirac(keras.initializers.Initializer):
    """Identity (Dirac delta) initializer for dense and convolution kernels.

    A 2-D kernel `(in, out)` gets `gain` on its main diagonal (rectangular shapes allowed). A
    3-, 4- or 5-D channels-last kernel `(*spatial, in, out)` gets `gain` at
    `W[c_1, ..., c_d, i, i]` for `i < min(in, out)` and zeros elsewhere, at the tap
    `c_j = (k_j - 1) // 2` that `padding="same"` aligns with the output (TensorFlow pads
    the extra element of an even kernel at the end), so that `Conv1D`/`Conv2D`/`Conv3D` with
    `padding="same"`, stride 1 and `in == out` channels return their input times `gain`, for
    odd and even kernel sizes. Unlike `keras.initializers.Identity`, `gain` survives a config
    round trip.

    Examples:

    >>> # Standalone usage:
    >>> initializer = Dirac(gain=1.0)
    >>> values = initializer(shape=(3, 3, 16, 16))

    >>> # Usage in a Keras layer:
    >>> initializer = Dirac()
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        gain: The value of the identity entries (a finite number).

    Raises:
        ValueError: If `gain` is not a finite number; at call time, if the shape is not of
            rank 2 to 5 or `gain` overflows the dtype (`gain=1e5` in float16).

    Reference:
        - [Zagoruyko & Komodakis, 2017](https://arxiv.org/abs/1706.00388), "DiracNets:
          Training Very Deep Neural Networks Without Skip-Connections".
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = check_number("gain", gain)

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        if not 2 <= len(shape) <= 5:
            raise ValueError(
                "Dirac needs a kernel of rank 2 (dense) or 3 to 5 (channels-last Conv1D/2D/3D). "
                f"Received: shape={shape!r}"
            )
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        check_representable("gain", self.gain, abs(self.gain), dtype, shape)
        identity = ops.eye(shape[-2], shape[-1], dtype=dtype) * self.gain
        return at_centre_tap(identity, shape)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


def at_centre_tap(matrix, shape: tuple[int, ...]):
    """A kernel of `shape` holding the `(in, out)` `matrix` at the centre tap, zeros elsewhere.

    The centre tap is index `(k - 1) // 2` on every spatial axis of size `k`: the tap that
    `padding="same"` aligns with the output position, so a convolution with this kernel
    applies `matrix` to every position's channel vector. A rank-2 `shape` is `matrix` itself.

    Args:
        matrix: A backend tensor of shape `shape[-2:]`.
        shape: The kernel shape `(*spatial, in, out)`.

    Returns:
        A backend tensor of `shape` and `matrix`'s dtype.
    """
    spatial = shape[:-2]
    kernel = ops.reshape(matrix, (1,) * len(spatial) + tuple(shape[-2:]))
    for axis, size in enumerate(spatial):
        tap = ops.cast(ops.arange(size) == (size - 1) // 2, matrix.dtype)
        broadcast = [1] * len(shape)
        broadcast[axis] = size
        kernel = kernel * ops.reshape(tap, broadcast)
    return kernel
