"""Sparse initialization: exactly k non-zero incoming weights per unit (Martens, 2010)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import keras
from keras import ops

from keras_inits import _sampling
from keras_inits.fans import Layout, check_layout
from keras_inits.initializers.configs import activation_initializer_config
from keras_inits.initializers.base import (
    Activation,
    ActivationInitializer,
    Seed,
    check_int,
    check_number,
    check_positive,
    check_representable,
    largest_draw,
    standardize_call,
)

__all__ = ["DEFAULT_CONNECTIONS", "Sparse"]

# Martens (2010)'s number of non-zero incoming weights per unit: Sparse's default.
DEFAULT_CONNECTIONS = 15


@keras.saving.register_keras_serializable(package="keras_inits")
class Sparse(ActivationInitializer):
    """Sparse initializer: exactly `k` non-zero incoming weights per unit.

    Every output unit gets exactly `k` non-zero incoming weights, chosen uniformly at random
    among its `fan_in` incoming weights, independently across units. What a unit and its
    incoming weights are depends on `layout` (Keras cannot tell an initializer which layer it
    draws for: pass `Sparse(..., layout="depthwise")` as a `depthwise_initializer`):

    - `"standard"`, kernel `(*k, in, out)`: a unit is an output channel (last axis); its
      `fan_in = prod(k) * in` incoming weights are the receptive-field positions times
      input channels.
    - `"depthwise"`, kernel `(*k, channels, multiplier)`: a unit is one of the
      `channels * multiplier` depthwise filters; its `fan_in = prod(k)` incoming weights are
      the taps of its receptive field.
    - `"transpose"`, kernel `(*k, out, in)`: a unit is an output channel (axis -2); its
      `fan_in = prod(k) * in` incoming weights are `W[..., unit, :]`.

    The non-zeros are i.i.d. N(0, std^2), with

        k   = connections, or round((1 - sparsity) * fan_in) (halves up, at least 1), or,
              when neither is given, min(15, fan_in) (Martens's 15 connections)
        std = g_f / sqrt(k) by default,   g_f = 1 / sqrt(E[phi(z)^2])

    so the pre-activation variance is kept as with a dense He initialization.

    Examples:

    >>> # Standalone usage:
    >>> initializer = Sparse(connections=15, seed=0)
    >>> values = initializer(shape=(784, 500))

    >>> # Usage in a Keras layer:
    >>> initializer = Sparse(sparsity=0.9, activation="tanh")
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        sparsity: Fraction of zero incoming weights per unit, in [0, 1). Give at most one of
            `sparsity` and `connections`; with neither, `k = min(15, fan_in)`, so that
            `Sparse()` (and `keras.initializers.get("keras_inits>Sparse")`) works on any
            kernel.
        connections: Number `k >= 1` of non-zero incoming weights per unit; at most `fan_in`.
        activation: The activation that follows the layer, for the default `std`.
        std: Standard deviation of the non-zeros (a positive number), or `None` for
            `g_f / sqrt(k)`.
        seed: An int, a `keras.random.SeedGenerator` or `None`, as in `He`. The rows and the
            values both come from this one seed.
        activation_kwargs: Keyword arguments of the activation.
        layout: `"standard"`, `"depthwise"` or `"transpose"`: which weights are a unit's
            incoming weights (above).

    Raises:
        ValueError: If an argument is not one of the values above (NumPy scalars are
            accepted as numbers); at call time, if `connections` exceeds `fan_in` or the
            non-zeros would overflow the dtype (`std=1e5` in float16).

    Reference:
        - [Martens, 2010](https://www.cs.toronto.edu/~jmartens/docs/Deep_HessianFree.pdf),
          "Deep learning via Hessian-free optimization" (sparse initialization, k = 15).
    """

    def __init__(
        self,
        sparsity: float | None = None,
        connections: int | None = None,
        activation: Activation = "linear",
        std: float | None = None,
        seed: Seed = None,
        activation_kwargs: Mapping[str, Any] | None = None,
        layout: Layout = "standard",
    ) -> None:
        self.layout = check_layout(layout)
        if sparsity is not None and connections is not None:
            raise ValueError(
                "At most one of the arguments `sparsity` and `connections` can be given. "
                f"Received: sparsity={sparsity!r}, connections={connections!r}"
            )
        if sparsity is not None:
            sparsity = check_number(
                "sparsity", sparsity, minimum=0.0, maximum=1.0, exclusive_maximum=True
            )
        if connections is not None:
            connections = check_int("connections", connections, minimum=1)
        if std is not None:
            std = check_positive("std", std)
        self.sparsity = sparsity
        self.connections = connections
        self.std = std
        super().__init__(activation, activation_kwargs, seed)
        self.gain = self._gain("forward")

    def connections_for(self, fan_in: int) -> int:
        """The number `k` of non-zero incoming weights per unit for a given `fan_in`."""
        if self.connections is not None:
            return self.connections
        if self.sparsity is None:
            return min(DEFAULT_CONNECTIONS, fan_in)
        return max(1, math.floor((1.0 - self.sparsity) * fan_in + 0.5))

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        minimum_rank = 2 if self.layout == "standard" else 3
        if len(shape) < minimum_rank:
            raise ValueError(
                f"Sparse with layout={self.layout!r} needs a kernel of rank >= {minimum_rank}. "
                f"Received: shape={shape!r}"
            )
        fan_in, units = _sparse_matrix_shape(shape, self.layout)
        if fan_in * units == 0:
            return ops.zeros(shape, dtype=dtype)
        connections = self.connections_for(fan_in)
        if connections > fan_in:
            raise ValueError(
                f"Argument `connections` must be at most fan_in = {fan_in} for "
                f"shape={shape!r} and layout={self.layout!r}. "
                f"Received: connections={connections!r}"
            )
        std = self.std if self.std is not None else self.gain / math.sqrt(connections)
        # A given std is the argument to blame; otherwise the activation's gain set it.
        culprit, value = ("std", self.std) if self.std is not None else ("activation", self.activation)
        check_representable(culprit, value, largest_draw("normal", std), dtype, shape)
        kernel = _sampling.sparse_kernel(fan_in, units, connections, std, dtype, self._seed_for_call())
        if self.layout == "transpose":
            # Columns are the output channels (axis -2); rows the taps times input channels.
            receptive = shape[:-2]
            kernel = ops.reshape(kernel, (math.prod(receptive), shape[-1], shape[-2]))
            kernel = ops.transpose(kernel, (0, 2, 1))
        return ops.reshape(kernel, shape)

    def get_config(self) -> dict[str, Any]:
        return {
            "sparsity": self.sparsity,
            "connections": self.connections,
            **self._activation_config(),
            "std": self.std,
            "seed": self._seed_config(),
            "layout": self.layout,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sparse:
        """Rebuilds the initializer; the config is checked as He's (see `He.from_config`)."""
        return cls(**activation_initializer_config(config))


def _sparse_matrix_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """(incoming weights per unit, units) of a kernel drawn by `Sparse` with `layout`."""
    if layout == "depthwise":
        return math.prod(shape[:-2]), shape[-2] * shape[-1]
    if layout == "transpose":
        return math.prod(shape[:-2]) * shape[-1], shape[-2]
    return math.prod(shape[:-1]), shape[-1]
