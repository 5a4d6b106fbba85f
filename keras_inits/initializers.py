"""Activation-aware He and Xavier, sparse, identity (Dirac) and scaled random initializers.

Every class is a `keras.initializers.Initializer` registered as ``"keras_inits>Name"``, so a
model that uses one saves to ``.keras`` / ``.h5`` / JSON and reloads in any process that has
run ``import keras_inits``. Weights are drawn with `keras.random` / `keras.ops` (see
`keras_inits._sampling`), so the initializers run on every Keras backend and inside
`tf.function`.

Seeds mean what they mean for Keras's own random initializers
(``keras/src/initializers/random_initializers.py``):

- an int: the same values on every call, and after ``from_config``;
- a `keras.random.SeedGenerator`: new values on every call;
- ``None``: new values on every call. Here we differ from Keras on purpose: Keras's own
  ``HeNormal()`` fixes a random int at construction, so one unseeded instance shared by several
  layers (``init = HeNormal(); [Dense(..., kernel_initializer=init) for _ in range(50)]``)
  gives them all the *same* kernel, and a 50-layer ReLU stack then loses its variance
  (measured: pre-activation std 0.07x of layer 1 at layer 50 instead of ~1x). Ours draws a
  random base seed at construction and derives a new stateless seed for every call, so a
  shared instance gives independent kernels and still works inside ``tf.function`` /
  ``jax.jit`` (no backend state). ``get_config`` stores ``None``.
"""

from __future__ import annotations

import math
import numbers
import random as python_random
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import keras
from keras import ops

from keras_inits import _sampling
from keras_inits._activations import deserialize_activation, serialize_activation
from keras_inits.fans import Layout, check_layout, compute_fans
from keras_inits.gains import gain as activation_gain

__all__ = ["Dirac", "He", "ScaledRandom", "Sparse", "Xavier"]

Mode = Literal["fan_in", "fan_out"]
Distribution = Literal["truncated_normal", "normal", "uniform"]
Activation = Union[str, Callable[..., Any], dict, None]
Seed = Union[int, keras.random.SeedGenerator, dict, None]

MODES = ("fan_in", "fan_out")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

# Standard deviation of a standard normal truncated to [-2, 2] (as in Keras's VarianceScaling).
TRUNCATED_NORMAL_STD = 0.87962566103423978

# Largest seed `keras.random.SeedGenerator` draws by default; the base seed for seed=None.
_DEFAULT_SEED_RANGE = (1, int(1e9))
# seed=None: call n of an instance draws with seed (base + n * stride) mod modulus.
_CALL_SEED_STRIDE = 1_000_003
_CALL_SEED_MODULUS = 2**31 - 1


# ----------------------------------------------------------------------------------------------
# Argument checks.
# ----------------------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {', '.join(repr(c) for c in choices)}. "
            f"Received: {name}={value}"
        )
    return value


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive(name: str, value: Any) -> float:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive finite number. Received: {name}={value}"
        )
    return float(value)


def _standardize_seed(seed: Any):
    """Returns the seed to draw with, as Keras's RandomInitializer does."""
    if seed is None:
        return python_random.randint(*_DEFAULT_SEED_RANGE)
    if isinstance(seed, dict):
        seed = keras.saving.deserialize_keras_object(seed)
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return int(seed)
    raise ValueError(
        "Argument `seed` must be an int, a `keras.random.SeedGenerator` or None. "
        f"Received: seed={seed}"
    )


def _standardize_call(shape: Any, dtype: Any) -> tuple[tuple[int, ...], str]:
    """Checks the arguments of `__call__`; returns the shape as ints and the dtype name."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(
            f"Argument `shape` must be a sequence of ints. Received: shape={shape}"
        ) from None
    for dim in dims:
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or dim < 0:
            raise ValueError(
                "Argument `shape` must be fully defined, with non-negative int dimensions. "
                f"Received: shape={shape}"
            )
    dims = tuple(int(dim) for dim in dims)
    if dtype is None:
        dtype = keras.config.floatx()
    try:
        standardized = keras.backend.standardize_dtype(dtype)
    except ValueError:
        standardized = None
    if standardized not in FLOAT_DTYPES:
        raise ValueError(
            f"Argument `dtype` must be a floating-point dtype, one of {', '.join(FLOAT_DTYPES)}. "
            f"Received: dtype={dtype}"
        )
    return dims, standardized


def _draw(distribution: str, shape: tuple[int, ...], variance: float, dtype: str, seed: Any):
    """Zero-mean values of `shape` with the given variance and law."""
    if distribution == "truncated_normal":
        stddev = math.sqrt(variance) / TRUNCATED_NORMAL_STD
        return _sampling.truncated_normal(shape, stddev, dtype, seed)
    if distribution == "normal":
        return _sampling.normal(shape, math.sqrt(variance), dtype, seed)
    return _sampling.uniform(shape, math.sqrt(3.0 * variance), dtype, seed)


# ----------------------------------------------------------------------------------------------
# Shared bases.
# ----------------------------------------------------------------------------------------------


class _SeededInitializer(keras.initializers.Initializer):
    """Seed handling of Keras's (private) RandomInitializer, except that ``seed=None`` gives
    new values on every call (see the module docstring)."""

    def __init__(self, seed: Seed = None) -> None:
        self.seed = _standardize_seed(seed)
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            seed = int(seed)
        self._init_seed = seed
        self._calls = 0

    def _seed_for_call(self) -> Any:
        """The seed of this call: fixed for an int, the generator itself, or a new int for None."""
        if self._init_seed is not None:
            return self.seed
        seed = (self.seed + self._calls * _CALL_SEED_STRIDE) % _CALL_SEED_MODULUS
        self._calls += 1
        return seed

    def _seed_config(self) -> Any:
        return keras.saving.serialize_keras_object(self._init_seed)


class _ActivationInitializer(_SeededInitializer):
    """An initializer whose scale comes from the gains of an element-wise activation."""

    def __init__(
        self, activation: Activation, activation_kwargs: Mapping[str, Any] | None, seed: Seed
    ) -> None:
        if isinstance(activation, dict):
            activation = deserialize_activation(activation)
        if activation_kwargs is None:
            activation_kwargs = {}
        if not isinstance(activation_kwargs, Mapping):
            raise TypeError(
                "Argument `activation_kwargs` must be a dict or None. "
                f"Received: activation_kwargs={activation_kwargs}"
            )
        self.activation = activation
        self.activation_kwargs = dict(activation_kwargs)
        super().__init__(seed=seed)

    def _gain(self, direction: str) -> float:
        return activation_gain(self.activation, direction, **self.activation_kwargs)

    def _activation_config(self) -> dict[str, Any]:
        return {
            "activation": serialize_activation(self.activation),
            "activation_kwargs": dict(self.activation_kwargs),
        }


# ----------------------------------------------------------------------------------------------
# The initializers.
# ----------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_inits")
class He(_ActivationInitializer):
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

    - `"truncated_normal"`: N(0, s^2) truncated to [-2 s, 2 s] with
      s = sqrt(Var) / 0.87962566103423978, so the truncated values have variance Var (as in
      Keras's `VarianceScaling`); drawn without rejection by the inverse CDF.
    - `"normal"`: N(0, Var), untruncated. (Unlike Keras's `VarianceScaling`, where
      `"normal"` means truncated.)
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
        distribution: `"truncated_normal"`, `"normal"` or `"uniform"`.
        seed: An int (the same values on every call, and after `from_config`), a
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
        self.mode = _check_choice("mode", mode, MODES)
        self.distribution = _check_choice("distribution", distribution, DISTRIBUTIONS)
        self.layout = check_layout(layout)
        super().__init__(activation, activation_kwargs, seed)
        self.gain = self._gain("forward" if mode == "fan_in" else "backward")

    def __call__(self, shape, dtype=None):
        shape, dtype = _standardize_call(shape, dtype)
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        fan_in, fan_out = compute_fans(shape, self.layout)
        fan = fan_in if self.mode == "fan_in" else fan_out
        variance = self.gain**2 / fan
        return _draw(self.distribution, shape, variance, dtype, self._seed_for_call())

    def get_config(self) -> dict[str, Any]:
        return {
            **self._activation_config(),
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self._seed_config(),
            "layout": self.layout,
        }


@keras.saving.register_keras_serializable(package="keras_inits")
class Xavier(_ActivationInitializer):
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
    The distributions are those of `He`: `"uniform"` is U(-sqrt(3 Var), sqrt(3 Var)),
    `"normal"` is N(0, Var), `"truncated_normal"` is N(0, s^2) truncated at +-2 s with
    s = sqrt(Var) / 0.87962566103423978 (variance Var after truncation).

    Examples:

    >>> # Standalone usage:
    >>> initializer = Xavier("tanh", seed=0)
    >>> values = initializer(shape=(256, 128))

    >>> # Usage in a Keras layer:
    >>> initializer = Xavier("relu", distribution="normal")
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        activation: The activation that follows the layer (as in `He`); default linear.
        distribution: `"uniform"`, `"normal"` or `"truncated_normal"`.
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
        self.distribution = _check_choice("distribution", distribution, DISTRIBUTIONS)
        self.layout = check_layout(layout)
        super().__init__(activation, activation_kwargs, seed)
        self.forward_gain = self._gain("forward")
        self.backward_gain = self._gain("backward")

    def __call__(self, shape, dtype=None):
        shape, dtype = _standardize_call(shape, dtype)
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        fan_in, fan_out = compute_fans(shape, self.layout)
        variance = 2.0 / (fan_in / self.forward_gain**2 + fan_out / self.backward_gain**2)
        return _draw(self.distribution, shape, variance, dtype, self._seed_for_call())

    def get_config(self) -> dict[str, Any]:
        return {
            **self._activation_config(),
            "distribution": self.distribution,
            "seed": self._seed_config(),
            "layout": self.layout,
        }


@keras.saving.register_keras_serializable(package="keras_inits")
class Sparse(_ActivationInitializer):
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

        k   = connections, or round((1 - sparsity) * fan_in) (halves up, at least 1)
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
        sparsity: Fraction of zero incoming weights per unit, in [0, 1). Give exactly one of
            `sparsity` and `connections`.
        connections: Number `k >= 1` of non-zero incoming weights per unit; at most `fan_in`.
        activation: The activation that follows the layer, for the default `std`.
        std: Standard deviation of the non-zeros (a positive number), or `None` for
            `g_f / sqrt(k)`.
        seed: An int, a `keras.random.SeedGenerator` or `None`, as in `He`. The rows and the
            values both come from this one seed.
        activation_kwargs: Keyword arguments of the activation.
        layout: `"standard"`, `"depthwise"` or `"transpose"`: which weights are a unit's
            incoming weights (above).

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
        if (sparsity is None) == (connections is None):
            raise ValueError(
                "Exactly one of the arguments `sparsity` and `connections` must be given. "
                f"Received: sparsity={sparsity}, connections={connections}"
            )
        if sparsity is not None:
            if not _is_real(sparsity) or not 0.0 <= sparsity < 1.0:
                raise ValueError(
                    f"Argument `sparsity` must be a number in [0, 1). Received: sparsity={sparsity}"
                )
            sparsity = float(sparsity)
        if connections is not None:
            if (
                not isinstance(connections, numbers.Integral)
                or isinstance(connections, bool)
                or connections < 1
            ):
                raise ValueError(
                    "Argument `connections` must be an int >= 1. "
                    f"Received: connections={connections}"
                )
            connections = int(connections)
        if std is not None:
            std = _check_positive("std", std)
        self.sparsity = sparsity
        self.connections = connections
        self.std = std
        super().__init__(activation, activation_kwargs, seed)
        self.gain = self._gain("forward")

    def connections_for(self, fan_in: int) -> int:
        """The number `k` of non-zero incoming weights per unit for a given `fan_in`."""
        if self.connections is not None:
            return self.connections
        return max(1, math.floor((1.0 - self.sparsity) * fan_in + 0.5))

    def __call__(self, shape, dtype=None):
        shape, dtype = _standardize_call(shape, dtype)
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


def _sparse_matrix_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """(incoming weights per unit, units) of a kernel drawn by `Sparse` with `layout`."""
    if layout == "depthwise":
        return math.prod(shape[:-2]), shape[-2] * shape[-1]
    if layout == "transpose":
        return math.prod(shape[:-2]) * shape[-1], shape[-2]
    return math.prod(shape[:-1]), shape[-1]


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

    Reference:
        - [Zagoruyko & Komodakis, 2017](https://arxiv.org/abs/1706.00388), "DiracNets:
          Training Very Deep Neural Networks Without Skip-Connections".
    """

    def __init__(self, gain: float = 1.0) -> None:
        if not _is_real(gain) or not math.isfinite(gain):
            raise ValueError(f"Argument `gain` must be a finite number. Received: gain={gain}")
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        shape, dtype = _standardize_call(shape, dtype)
        if not 2 <= len(shape) <= 5:
            raise ValueError(
                "Dirac needs a kernel of rank 2 (dense) or 3 to 5 (channels-last Conv1D/2D/3D). "
                f"Received: shape={shape}"
            )
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        identity = ops.eye(shape[-2], shape[-1], dtype=dtype) * self.gain
        spatial = shape[:-2]
        kernel = ops.reshape(identity, (1,) * len(spatial) + shape[-2:])
        for axis, size in enumerate(spatial):
            tap = ops.cast(ops.arange(size) == (size - 1) // 2, dtype)
            broadcast = [1] * len(shape)
            broadcast[axis] = size
            kernel = kernel * ops.reshape(tap, broadcast)
        return kernel

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


@keras.saving.register_keras_serializable(package="keras_inits")
class ScaledRandom(_SeededInitializer):
    """The classic `randn * 0.01`: zero-mean values with a fixed scale, whatever the shape.

        "normal":           N(0, scale^2)
        "uniform":          U(-scale, scale)
        "truncated_normal": N(0, scale^2) truncated to [-2 scale, 2 scale]; `scale` is the
                            standard deviation of the normal *before* truncation (as in
                            `keras.initializers.TruncatedNormal(stddev=scale)`), so the values
                            have standard deviation 0.87962566103423978 * scale.

    Examples:

    >>> # Standalone usage:
    >>> initializer = ScaledRandom(scale=0.01, seed=0)
    >>> values = initializer(shape=(2, 2))

    >>> # Usage in a Keras layer:
    >>> initializer = ScaledRandom(scale=0.05, distribution="uniform")
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        scale: A positive finite number (see the laws above).
        distribution: `"normal"`, `"uniform"` or `"truncated_normal"`.
        seed: An int, a `keras.random.SeedGenerator` or `None`, as in `He`.

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
        self.scale = _check_positive("scale", scale)
        self.distribution = _check_choice("distribution", distribution, DISTRIBUTIONS)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape, dtype = _standardize_call(shape, dtype)
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        if self.distribution == "truncated_normal":
            return _sampling.truncated_normal(shape, self.scale, dtype, self._seed_for_call())
        if self.distribution == "normal":
            return _sampling.normal(shape, self.scale, dtype, self._seed_for_call())
        return _sampling.uniform(shape, self.scale, dtype, self._seed_for_call())

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "distribution": self.distribution,
            "seed": self._seed_config(),
        }
