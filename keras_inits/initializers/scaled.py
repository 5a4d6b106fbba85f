"""ScaledRandom: zero-mean values with a fixed scale, whatever the shape."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from keras_inits import _sampling
from keras_inits.initializers.base import (
    DISTRIBUTIONS,
    Distribution,
    Seed,
    SeededInitializer,
    check_choice,
    check_positive,
    check_representable,
    largest_draw,
    standardize_call,
)
from keras_inits.initializers.configs import seeded_initializer_config

__all__ = ["ScaledRandom"]


@keras.saving.register_keras_serializable(package="keras_inits")
class ScaledRandom(SeededInitializer):
    """The classic `randn * 0.01`: zero-mean values with a fixed scale, whatever the shape.

        "normal", "untruncated_normal": N(0, scale^2)
        "uniform":          U(-scale, scale)
        "truncated_normal": N(0, scale^2) truncated to [-2 scale, 2 scale]; `scale` is the
                            standard deviation of the normal *before* truncation (as in
                            `keras.initializers.TruncatedNormal(stddev=scale)`), so the values
                            have standard deviation 0.87962566103423978 * scale.

    Here `"normal"` keeps the meaning of `keras.initializers.RandomNormal` (untruncated), the
    classic `randn * scale`; `"untruncated_normal"` is accepted as the same law, so the
    vocabulary of `He` and `Xavier` works here too. (In `He`/`Xavier`, as in Keras's
    `VarianceScaling`, `"normal"` is truncated.)

    Examples:

    >>> # Standalone usage:
    >>> initializer = ScaledRandom(scale=0.01, seed=0)
    >>> values = initializer(shape=(2, 2))

    >>> # Usage in a Keras layer:
    >>> initializer = ScaledRandom(scale=0.05, distribution="uniform")
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        scale: A positive finite number (see the laws above).
        distribution: `"normal"` or `"untruncated_normal"` (untruncated), `"uniform"` or
            `"truncated_normal"`.
        seed: An int, a `keras.random.SeedGenerator` or `None`, as in `He`.

    Raises:
        ValueError: If `scale` is not a positive finite number, or `distribution` or `seed`
            is not one of the values above; at call time, if the values would overflow the
            dtype (`scale=1e5` in float16).

    Reference:
        - [Glorot & Bengio, 2010](https://proceedings.mlr.press/v9/glorot10a.html), whose
          experiments show why a fixed small scale fails in deep networks.
    """

    def __init__(
        self,
        scale: float = 0.01,
        distribution: Distribution = "normal",
        seed: Seed = None,
    ) -> None:
        self.scale = check_positive("scale", scale)
        self.distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        reach = largest_draw(self.distribution, self.scale)
        check_representable("scale", self.scale, reach, dtype, shape)
        if self.distribution == "truncated_normal":
            return _sampling.truncated_normal(shape, self.scale, dtype, self._seed_for_call())
        if self.distribution in ("normal", "untruncated_normal"):
            return _sampling.normal(shape, self.scale, dtype, self._seed_for_call())
        return _sampling.uniform(shape, self.scale, dtype, self._seed_for_call())

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "distribution": self.distribution,
            "seed": self._seed_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScaledRandom:
        """Rebuilds the initializer; a dict seed must be a `SeedGenerator` config."""
        return cls(**seeded_initializer_config(config))
