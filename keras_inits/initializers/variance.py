"""He and Xavier: weights whose variance comes from an activation's gains and the kernel's fans."""

from __future__ import annotations

import math
from typing import Any, Mapping

import keras
from keras import ops

from keras_inits.fans import Layout, check_layout, compute_fans
from keras_inits.initializers.configs import activation_initializer_config
from keras_inits.initializers.base import (
    MODES,
    Activation,
    ActivationInitializer,
    Distribution,
    Mode,
    Seed,
    check_choice,
    check_distribution,
    standardize_call,
    upgrade_0_1_config,
)

__all__ = ["He", "Xavier"]


class _VarianceScaling(ActivationInitializer):
    """What He and Xavier share: a config is checked before anything in it is called, and a
    config saved by 0.1 keeps the law it was saved with."""

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """Rebuilds the initializer from a config that `get_config` wrote.

        The activation must be a Keras activation or a registered object and its keyword
        arguments plain values (see `keras_inits.initializers.configs`): a model file cannot
        have any other function called while it loads. A 0.1 config keeps its law (see
        `upgrade_0_1_config`).

        Raises:
            ValueError: If the activation, `activation_kwargs` or the seed is not one of those
                forms (nothing is called or imported before).
        """
        return cls(**upgrade_0_1_config(activation_initializer_config(config)))


@keras.saving.register_keras_serializable(package="keras_inits")
class He(_VarianceScaling):
    """He initializer for any element-wise activation.

    Draws zero-mean weights whose variance keeps the pre-activation variance in the forward
    pass (`mode="fan_in"`) or the gradient variance in the backward pass (`mode="fan_out"`)
    of a layer followed by `activation`:

        fan_in:  Var(W) = g_f^2 / fan_in,   g_f = 1 / sqrt(E[phi(z)^2])
        fan_out: Var(W) = g_b^2 / fan_out,  g_b = 1 / sqrt(E[phi'(z)^2])

    with z ~ N(0, 1) (see `keras_inits.gains.gain`). For ReLU, g = sqrt(2) and this is Keras's
    `HeNormal`. Fans follow `keras_inits.fans.compute_fans(shape, layout)`: with the default
    `layout="standard"` a kernel `(*k, in, out)` has `fan_in = prod(k) * in` and
    `fan_out = prod(k) * out`, as in Keras.

    Keras calls an initializer with the kernel shape and dtype only: it cannot tell it which
    layer it draws for, and a depthwise kernel `(*k, channels, multiplier)` or a transposed
    one `(*k, out, in)` looks like a standard one. Say so with `layout`:
    `DepthwiseConv2D(3, depthwise_initializer=He(layout="depthwise"))` (fan_in = prod(k)),
    `SeparableConv2D(..., depthwise_initializer=He(layout="depthwise"))`,
    `Conv2DTranspose(..., kernel_initializer=He(layout="transpose"))` (fan_in = prod(k) * in).
    With the standard layout a depthwise kernel gets fan_in = prod(k) * channels, i.e. a std
    sqrt(channels) times too small.

    `distribution` takes the vocabulary of Keras's `VarianceScaling`:

    - `"truncated_normal"` (and its alias `"normal"`, as in Keras): N(0, s^2) truncated to
      [-2 s, 2 s] with s = sqrt(Var) / 0.87962566103423978, so the truncated values have
      variance Var (as in Keras's `VarianceScaling`); drawn without rejection by the
      inverse CDF. Behaviour change in 0.2: in 0.1 `"normal"` meant untruncated; it now
      means what it means in Keras (truncated), and `get_config` stores
      `"truncated_normal"`. Ask for `"untruncated_normal"` to keep 0.1's law (a config
      saved by 0.1, recognised by its missing `"layout"`, keeps it when it is loaded).
    - `"untruncated_normal"`: N(0, Var).
    - `"uniform"`: U(-limit, limit) with limit = sqrt(3 Var).

    Examples:

    >>> # Standalone usage:
    >>> initializer = He("gelu", seed=0)
    >>> values = initializer(shape=(256, 128))

    >>> # Usage in a Keras layer:
    >>> initializer = He("leaky_relu", activation_kwargs={"negative_slope": 0.1})
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        activation: The activation that follows the layer: a Keras name (`"relu"`,
            `"gelu"`, ...), a `keras.activations` function, an element-wise callable
            (registered with `keras.saving.register_keras_serializable` to be saved), or
            `None` (linear).
        mode: `"fan_in"` (forward variance) or `"fan_out"` (backward variance).
        distribution: `"truncated_normal"`, `"untruncated_normal"`, `"uniform"`, or
            `"normal"` (an alias of `"truncated_normal"`, as in Keras).
        seed: An int in [0, 2**63) (the same values on every call, and after `from_config`), a
            `keras.random.SeedGenerator` (new values on every call) or `None` (new values on
            every call, so one instance can be shared by many layers; unlike Keras's own
            initializers, whose unseeded instances repeat their values).
        activation_kwargs: Keyword arguments of the activation, e.g.
            `{"negative_slope": 0.1}` for `"leaky_relu"`.
        layout: The kernel layout, `"standard"`, `"depthwise"` (DepthwiseConv*, the
            depthwise kernel of SeparableConv*) or `"transpose"` (Conv*Transpose); see
            `keras_inits.fans`.

    Raises:
        ValueError: If `mode`, `distribution`, `layout` or `seed` is not one of the values
            above, or `activation` is unknown or not element-wise.

    Reference:
        - [He et al., 2015](https://arxiv.org/abs/1502.01852), "Delving Deep into
          Rectifiers: Surpassing Human-Level Performance on ImageNet Classification".
    """

    def __init__(
        self,
        activation: Activation = "relu",
        mode: Mode = "fan_in",
        distribution: Distribution = "truncated_normal",
        seed: Seed = None,
        activation_kwargs: Mapping[str, Any] | None = None,
        layout: Layout = "standard",
    ) -> None:
        self.mode = check_choice("mode", mode, MODES)
        self.distribution = check_distribution(distribution)
        self.layout = check_layout(layout)
        super().__init__(activation, activation_kwargs, seed)
        self.gain = self._gain("forward" if mode == "fan_in" else "backward")

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        fan_in, fan_out = compute_fans(shape, self.layout)
        fan = fan_in if self.mode == "fan_in" else fan_out
        variance = self.gain**2 / fan
        return self._draw(shape, variance, dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **self._activation_config(),
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self._seed_config(),
            "layout": self.layout,
        }


@keras.saving.register_keras_serializable(package="keras_inits")
class Xavier(_VarianceScaling):
    """Xavier (Glorot) initializer for any element-wise activation.

    Glorot's compromise between the forward and backward conditions, weighted by the
    activation's gains:

        Var(W) = 2 / (fan_in / g_f^2 + fan_out / g_b^2)

    so a linear layer gets Keras's `GlorotUniform` variance 2 / (fan_in + fan_out) and a ReLU
    layer 4 / (fan_in + fan_out) (PyTorch's `xavier_uniform_(gain=sqrt(2))`). `g_f` and `g_b`
    are `keras_inits.gains.gain(activation, "forward" / "backward")`; fans follow
    `keras_inits.fans.compute_fans(shape, layout)` (pass `layout="depthwise"` for a
    depthwise kernel and `layout="transpose"` for a transposed convolution's: Keras cannot
    tell an initializer which layer it draws for; see `He`).
    The distributions are those of `He` (Keras's `VarianceScaling` vocabulary):
    `"uniform"` is U(-sqrt(3 Var), sqrt(3 Var)), `"untruncated_normal"` is N(0, Var),
    `"truncated_normal"` and its alias `"normal"` are N(0, s^2) truncated at +-2 s with
    s = sqrt(Var) / 0.87962566103423978 (variance Var after truncation). Behaviour change in
    0.2: `"normal"` meant untruncated in 0.1.

    Examples:

    >>> # Standalone usage:
    >>> initializer = Xavier("tanh", seed=0)
    >>> values = initializer(shape=(256, 128))

    >>> # Usage in a Keras layer:
    >>> initializer = Xavier("relu", distribution="untruncated_normal")
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        activation: The activation that follows the layer (as in `He`); default linear.
        distribution: `"uniform"`, `"untruncated_normal"`, `"truncated_normal"` or
            `"normal"` (an alias of `"truncated_normal"`).
        seed: An int, a `keras.random.SeedGenerator` or `None`, as in `He`.
        activation_kwargs: Keyword arguments of the activation.
        layout: `"standard"`, `"depthwise"` or `"transpose"`, as in `He`.

    Raises:
        ValueError: If `distribution`, `layout` or `seed` is not one of the values above, or
            `activation` is unknown or not element-wise.

    Reference:
        - [Glorot & Bengio, 2010](https://proceedings.mlr.press/v9/glorot10a.html),
          "Understanding the difficulty of training deep feedforward neural networks".
    """

    def __init__(
        self,
        activation: Activation = "linear",
        distribution: Distribution = "uniform",
        seed: Seed = None,
        activation_kwargs: Mapping[str, Any] | None = None,
        layout: Layout = "standard",
    ) -> None:
        self.distribution = check_distribution(distribution)
        self.layout = check_layout(layout)
        super().__init__(activation, activation_kwargs, seed)
        self.forward_gain = self._gain("forward")
        self.backward_gain = self._gain("backward")

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        fan_in, fan_out = compute_fans(shape, self.layout)
        variance = 2.0 / (fan_in / self.forward_gain**2 + fan_out / self.backward_gain**2)
        return self._draw(shape, variance, dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **self._activation_config(),
            "distribution": self.distribution,
            "seed": self._seed_config(),
            "layout": self.layout,
        }
