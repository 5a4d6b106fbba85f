"""What every keras_inits initializer shares: argument checks, dtypes, seeds, the draw.

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
import random as python_random
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import keras
import numpy as np

from keras_inits import _checks, _sampling, backend
from keras_inits._checks import is_int, plain
from keras_inits.activations import deserialize_activation, serialize_activation
from keras_inits.gains import gain as activation_gain

Mode = Literal["fan_in", "fan_out"]
Distribution = Literal["truncated_normal", "untruncated_normal", "uniform", "normal"]
Activation = Union[str, Callable[..., Any], dict, None]
Seed = Union[int, keras.random.SeedGenerator, dict, None]

MODES = ("fan_in", "fan_out")
#: Keras's `VarianceScaling` vocabulary. As there, "normal" is an alias of "truncated_normal".
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")
_DISTRIBUTION_ALIASES = {"normal": "truncated_normal"}
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

# Standard deviation of a standard normal truncated to [-2, 2] (as in Keras's VarianceScaling).
TRUNCATED_NORMAL_STD = 0.87962566103423978

# Largest seed `keras.random.SeedGenerator` draws by default; the base seed for seed=None.
_DEFAULT_SEED_RANGE = (1, int(1e9))
# Keras's JAX backend takes seeds below 2**32 (uint32) and torch reduces them modulo 2**32:
# a larger seed is folded to 32 bits by a SeedSequence, the same on every backend.
_PORTABLE_SEED_LIMIT = 2**32
# seed=None: call n of an instance draws with seed (base + n * stride) mod modulus.
_CALL_SEED_STRIDE = 1_000_003
_CALL_SEED_MODULUS = 2**31 - 1

#: Largest finite value of each float dtype (bfloat16 has float32's exponent range).
LARGEST_VALUE = {
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
    "float32": 3.4028234663852886e38,
    "float64": 1.7976931348623157e308,
}
#: An untruncated normal draw is taken to reach this many standard deviations: NumPy's and
#: the backends' samplers (inverse CDF of a float32 or float64 uniform) stay within it.
NORMAL_TAIL_SIGMAS = 8.0
#: A truncated normal reaches 2 standard deviations of the normal before truncation.
TRUNCATION_SIGMAS = 2.0


# ----------------------------------------------------------------------------------------------
# Argument checks. Initializers raise ValueError for every bad argument, as Keras's own do.
# ----------------------------------------------------------------------------------------------


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Returns `value` if it is one of `choices` (see `keras_inits._checks.check_choice`)."""
    return _checks.check_choice(name, value, choices)


def check_distribution(value: Any) -> str:
    """The canonical name of a Keras `VarianceScaling` distribution ("normal" is truncated)."""
    distribution = check_choice("distribution", value, DISTRIBUTIONS)
    return _DISTRIBUTION_ALIASES.get(distribution, distribution)


def check_positive(name: str, value: Any) -> float:
    """A positive finite number as a float; ValueError otherwise."""
    return _checks.check_positive(name, value, type_error=ValueError)


def check_number(name: str, value: Any, **bounds: Any) -> float:
    """A finite number in the given bounds as a float; ValueError otherwise."""
    return _checks.check_number(name, value, type_error=ValueError, **bounds)


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """An int (not a bool or a float) >= `minimum`; ValueError otherwise."""
    return _checks.check_int(name, value, minimum=minimum, type_error=ValueError)


def check_int_seed(seed: Any) -> int:
    """An int seed in [0, 2**63) as a Python int; ValueError otherwise."""
    return _checks.check_seed(seed, type_error=ValueError)


def portable_seed(seed: int) -> int:
    """`seed` itself below 2**32; a 32-bit fold of it (the same on every backend) above."""
    if seed < _PORTABLE_SEED_LIMIT:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint32)[0])


def standardize_seed(seed: Any):
    """Returns the seed to draw with, as Keras's RandomInitializer does."""
    if seed is None:
        return python_random.randint(*_DEFAULT_SEED_RANGE)
    if isinstance(seed, dict):
        seed = keras.saving.deserialize_keras_object(seed)
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if is_int(seed):
        return portable_seed(check_int_seed(seed))
    raise ValueError(
        "Argument `seed` must be an int in [0, 2**63), a `keras.random.SeedGenerator` or None. "
        f"Received: seed={seed!r}"
    )


def standardize_call(shape: Any, dtype: Any) -> tuple[tuple[int, ...], str]:
    """Checks the arguments of `__call__`; returns the shape as ints and the dtype name."""
    dims = _checks.check_shape(shape, type_error=ValueError)
    if dtype is None:
        dtype = keras.config.floatx()
    try:
        standardized = keras.backend.standardize_dtype(dtype)
    except (ValueError, TypeError, AttributeError):
        standardized = None
    if standardized not in FLOAT_DTYPES:
        raise ValueError(
            f"Argument `dtype` must be a floating-point dtype, one of {', '.join(FLOAT_DTYPES)}. "
            f"Received: dtype={dtype!r}"
        )
    if standardized == "float64" and not backend.current().float64_available():
        raise ValueError(
            "float64 weights need JAX's 64-bit mode, which is off: set the environment "
            "variable JAX_ENABLE_X64=1 before Python starts, or run "
            "`jax.config.update('jax_enable_x64', True)` before building the model "
            "(without it JAX silently draws float32). "
            f"Received: dtype={dtype!r}"
        )
    return dims, standardized


def check_representable(
    name: str, value: Any, largest_draw: float, dtype: str, shape: tuple[int, ...]
) -> None:
    """Refuses a draw whose largest magnitude `largest_draw` overflows `dtype` (inf weights).

    Raises:
        ValueError: Naming the argument `name` that set the scale, its value, the dtype and
            the largest magnitude the draw can reach.
    """
    largest = LARGEST_VALUE[dtype]
    if math.isfinite(largest_draw) and largest_draw <= largest:
        return
    raise ValueError(
        f"Argument `{name}` makes the weights of shape {shape} reach magnitude "
        f"{largest_draw:.4g}, beyond the largest {dtype} value {largest:.6g} (the kernel would "
        f"hold inf). Use a smaller scale or a wider dtype. "
        f"Received: {name}={value!r}, dtype={dtype!r}"
    )


def largest_draw(distribution: str, scale: float) -> float:
    """The largest magnitude a draw of `distribution` with `scale` can reach.

    `scale` is the std of the normal before truncation ("truncated_normal"), the std
    ("normal", "untruncated_normal") or the limit ("uniform").
    """
    if distribution == "truncated_normal":
        return TRUNCATION_SIGMAS * scale
    if distribution == "uniform":
        return scale
    return NORMAL_TAIL_SIGMAS * scale


def draw(distribution: str, shape: tuple[int, ...], variance: float, dtype: str, seed: Any):
    """Zero-mean values of `shape` with the given variance and law."""
    scale = draw_scale(distribution, variance)
    if distribution == "truncated_normal":
        return _sampling.truncated_normal(shape, scale, dtype, seed)
    if distribution == "untruncated_normal":
        return _sampling.normal(shape, scale, dtype, seed)
    return _sampling.uniform(shape, scale, dtype, seed)


def draw_scale(distribution: str, variance: float) -> float:
    """The `_sampling` scale of a draw with `variance`: the pre-truncation std, std or limit."""
    if distribution == "truncated_normal":
        return math.sqrt(variance) / TRUNCATED_NORMAL_STD
    if distribution == "untruncated_normal":
        return math.sqrt(variance)
    return math.sqrt(3.0 * variance)


# ----------------------------------------------------------------------------------------------
# Shared bases.
# ----------------------------------------------------------------------------------------------


class SeededInitializer(keras.initializers.Initializer):
    """Seed handling of Keras's (private) RandomInitializer, except that ``seed=None`` gives
    new values on every call (see the module docstring)."""

    def __init__(self, seed: Seed = None) -> None:
        self.seed = standardize_seed(seed)
        if is_int(seed):
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


class ActivationInitializer(SeededInitializer):
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
                f"Received: activation_kwargs={activation_kwargs!r}"
            )
        self.activation = activation
        self.activation_kwargs = {key: plain(value) for key, value in activation_kwargs.items()}
        super().__init__(seed=seed)

    def _gain(self, direction: str) -> float:
        return activation_gain(self.activation, direction, **self.activation_kwargs)

    def _draw(self, shape: tuple[int, ...], variance: float, dtype: str):
        """`draw` with this instance's law and seed, refused if it overflows `dtype`.

        Raises:
            ValueError: If the activation's gain makes the values overflow `dtype`.
        """
        reach = largest_draw(self.distribution, draw_scale(self.distribution, variance))
        check_representable("activation", self.activation, reach, dtype, shape)
        return draw(self.distribution, shape, variance, dtype, self._seed_for_call())

    def _activation_config(self) -> dict[str, Any]:
        return {
            "activation": serialize_activation(self.activation),
            "activation_kwargs": dict(self.activation_kwargs),
        }


def upgrade_0_1_config(config: dict[str, Any]) -> dict[str, Any]:
    """A He/Xavier config as 0.2 reads it; a 0.1 config keeps the law it was saved with.

    0.1 configs have no ``"layout"`` key, and their ``"normal"`` meant untruncated (0.2 follows
    Keras, where ``"normal"`` is truncated): such a config reads as ``"untruncated_normal"``.
    """
    if "layout" not in config and config.get("distribution") == "normal":
        return {**config, "distribution": "untruncated_normal"}
    return config
