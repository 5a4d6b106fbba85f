"""Mirrored ("looks linear") kernels: a ReLU network that is exactly linear at initialization."""

from __future__ import annotations

import math
from typing import Any, Literal

import keras
from keras import ops

from keras_inits.initializers.base import (
    Seed,
    SeededInitializer,
    check_choice,
    check_positive,
    check_representable,
    standardize_call,
)
from keras_inits.initializers.configs import seeded_initializer_config
from keras_inits.initializers.orthogonal import orthogonal_matrix
from keras_inits.initializers.structured import at_centre_tap

__all__ = ["POSITIONS", "LooksLinear"]

Position = Literal["first", "hidden", "last"]

#: Where a layer sits in a ReLU stack; each position gets its own mirrored form.
POSITIONS = ("first", "hidden", "last")
#: Kernel ranks LooksLinear accepts: 2 (dense) and 3 to 5 (channels-last Conv1D/2D/3D).
_DENSE_RANK = 2
_LARGEST_CONV_RANK = 5
#: The absolute value of an entry of a matrix with orthonormal rows or columns is at most 1.
_LARGEST_ORTHOGONAL_ENTRY = 1.0
#: The widths each position mirrors, as its error message names them.
_MIRRORED_WIDTHS = {
    "first": "output width (the last axis)",
    "hidden": "input and output widths (the last two axes)",
    "last": "input width (axis -2)",
}


@keras.saving.register_keras_serializable(package="keras_inits")
class LooksLinear(SeededInitializer):
    """Looks-linear initializer: mirrored orthogonal kernels for ReLU networks.

    With a ReLU, ``relu(a) - relu(-a) = a``. A layer whose outputs come in mirrored pairs
    ``[a, -a]`` therefore loses nothing to the ReLU, and the next layer can undo it exactly by
    subtracting the second half from the first. The three forms, with `W0` a Haar-random
    orthogonal matrix times `gain` (`W0 W0^T = gain^2 I` or `W0^T W0 = gain^2 I`, whichever
    side is smaller), are, for Keras's kernel layout `y = x W` with `W` of shape `(in, out)`:

        position="first":   W = [W0, -W0]              W0: (in, out/2)
        position="hidden":  W = [[ W0, -W0],           W0: (in/2, out/2)
                                 [-W0,  W0]]
        position="last":    W = [[ W0],                W0: (in/2, out)
                                 [-W0]]

    - the **first** layer sees a plain input `x`: it emits `[x W0, -x W0]`, and the ReLU
      keeps both halves as `[relu(u), relu(-u)]` with `u = x W0`;
    - a **hidden** layer reads such a pair and emits the next one:
      `relu(u) W0 - relu(-u) W0 = u W0`, so its output is `[u W0, -u W0]`;
    - the **last** (readout) layer reads a pair and emits `u W0` itself, so the output is
      linear in `x` (it must not be followed by a ReLU).

    With zero biases (Keras's default), a ReLU MLP `first, hidden x (L - 2), last` built this
    way computes at initialization exactly the linear map

        y = x W0_1 W0_2 ... W0_L = gain^L x Q_1 Q_2 ... Q_L

    with `Q_l` orthogonal (an isometry when no `W0` has more rows than columns). Every hidden
    representation keeps the norm of its input exactly: `||relu(u)||^2 + ||relu(-u)||^2 =
    ||u||^2 = gain^(2 l) ||x||^2` after layer `l`. So the default `gain=1` keeps the norm at
    every depth (He's `sqrt(2)` is not needed: no half of the signal is lost to the ReLU),
    and two inputs keep their cosine similarity instead of collapsing towards 1. Layers whose
    width is not the mirrored one need even widths: `out` for "first", `in` and `out` for
    "hidden", `in` for "last".

    Convolution kernels `(*k, in, out)` (Conv1D/2D/3D, channels last) are mirrored over the
    channels the same way and delta-orthogonal in space (Xiao et al., 2018): the tap that
    `padding="same"` aligns with the output (index `(k_j - 1) // 2`, as in `Dirac`) holds the
    mirrored matrix above and every other tap is zero. A plain ReLU CNN with `padding="same"`
    and stride 1 then computes, at every position, the same linear map of its input pixel as
    the MLP above, and keeps its norm per position (`gain=1`).

    Examples:

    >>> # Standalone usage:
    >>> initializer = LooksLinear("hidden", seed=0)
    >>> values = initializer(shape=(256, 256))

    >>> # Usage in a ReLU MLP (input 784, width 256, 10 outputs):
    >>> layers = [keras.layers.Dense(256, "relu", kernel_initializer=LooksLinear("first"))]
    >>> layers += [keras.layers.Dense(256, "relu", kernel_initializer=LooksLinear("hidden"))
    ...            for _ in range(48)]
    >>> layers += [keras.layers.Dense(10, kernel_initializer=LooksLinear("last"))]
    >>> model = keras.Sequential([keras.Input((784,)), *layers])

    Args:
        position: Where the layer sits: `"first"` (reads the input), `"hidden"` (reads and
            emits mirrored pairs) or `"last"` (reads mirrored pairs, emits the linear output).
        gain: The scale of the orthogonal block `W0` (a positive number); the network's
            end-to-end map is `gain^L` times an orthogonal product.
        seed: An int in [0, 2**63) (the same values on every call, and after `from_config`), a
            `keras.random.SeedGenerator` or `None` (new values on every call), as in `He`.

    Raises:
        ValueError: If `position` is not one of the values above, `gain` is not a positive
            finite number or `seed` is not a seed; at call time, if the kernel is not of
            rank 2 to 5, a mirrored width is odd, or `gain` overflows the dtype.

    Reference:
        - [Balduzzi et al., 2017](https://arxiv.org/abs/1702.08591), "The Shattered Gradients
          Problem: If resnets are the answer, then what is the question?".
        - [Burkholz & Dubatovka, 2019](https://arxiv.org/abs/1905.13654), "Initialization of
          ReLUs for Dynamical Isometry".
        - [Xiao et al., 2018](https://arxiv.org/abs/1806.05393), "Dynamical Isometry and a
          Mean Field Theory of CNNs" (the delta-orthogonal convolution kernel).
    """

    def __init__(
        self, position: Position = "hidden", gain: float = 1.0, seed: Seed = None
    ) -> None:
        self.position = check_choice("position", position, POSITIONS)
        self.gain = check_positive("gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        if not _DENSE_RANK <= len(shape) <= _LARGEST_CONV_RANK:
            raise ValueError(
                "LooksLinear needs a kernel of rank 2 (dense) or 3 to 5 (channels-last "
                f"Conv1D/2D/3D). Received: shape={shape!r}"
            )
        fan_in, fan_out = shape[-2:]
        self._check_widths(shape)
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        check_representable("gain", self.gain, self.gain * _LARGEST_ORTHOGONAL_ENTRY, dtype, shape)
        rows = fan_in if self.position == "first" else fan_in // 2
        columns = fan_out if self.position == "last" else fan_out // 2
        block = orthogonal_matrix(rows, columns, dtype, self._seed_for_call(), gain=self.gain)
        matrix = _mirror(block, self.position)
        return at_centre_tap(matrix, shape)

    def _check_widths(self, shape: tuple[int, ...]) -> None:
        fan_in, fan_out = shape[-2:]
        odd_in = self.position != "first" and fan_in % 2 == 1
        odd_out = self.position != "last" and fan_out % 2 == 1
        if not (odd_in or odd_out):
            return
        raise ValueError(
            f"LooksLinear(position={self.position!r}) mirrors its units in pairs [u, -u] and "
            f"needs an even {_MIRRORED_WIDTHS[self.position]}. Received: shape={shape!r}"
        )

    def get_config(self) -> dict[str, Any]:
        return {"position": self.position, "gain": self.gain, "seed": self._seed_config()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LooksLinear:
        """Rebuilds the initializer; a dict seed must be a `SeedGenerator` config.

        Raises:
            ValueError: If `position`, `gain` or `seed` is not one of the allowed forms.
        """
        return cls(**seeded_initializer_config(config))


def _mirror(block, position: str):
    """The mirrored (in, out) matrix of `position` built from the orthogonal `block`."""
    if position == "first":
        return ops.concatenate([block, -block], axis=1)
    if position == "last":
        return ops.concatenate([block, -block], axis=0)
    top = ops.concatenate([block, -block], axis=1)
    return ops.concatenate([top, -top], axis=0)

