"""Resolving, differentiating and serializing element-wise activations (private).

An activation may be given as a Keras name (``"gelu"``), a Keras activation function
(``keras.activations.gelu``), ``None`` (linear), a serialized config ``dict`` or any element-wise
Python callable. :func:`resolve_activation` turns each of these into a :class:`ResolvedActivation`:
a float64 NumPy function ``phi`` with its keyword arguments bound, its derivative and the points
where ``phi`` or ``phi'`` is not smooth (its *kinks*). ``keras_inits.gains`` integrates it; the
initializers use the same function to check their ``activation`` argument early.

Every element-wise Keras 3.15 activation has a NumPy closed form here (its value *and* its
derivative), written to match the Keras definition (``keras/src/activations/activations.py`` and the
TensorFlow backend), defaults included. ``tests/test_gains.py`` checks each one against Keras on a
grid. Anything else is called as given on a float64 array and checked to be element-wise.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
import types
from typing import Any, Callable

import keras
import numpy as np

from keras_inits import backend

__all__ = [
    "ResolvedActivation",
    "activation_derivative",
    "activation_kinks",
    "deserialize_activation",
    "resolve_activation",
    "serialize_activation",
]

ArrayFunction = Callable[[np.ndarray], np.ndarray]

# SELU constants as used by ``tf.nn.selu`` (Klambauer et al., 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# ``tf.nn.gelu(approximate=True)``: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
GELU_TANH_COEFFICIENT = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# Keras activations that mix the entries of their input (they normalize or split along an axis).
NOT_ELEMENTWISE = {
    "softmax": "softmax mixes the entries of its input",
    "log_softmax": "log_softmax mixes the entries of its input",
    "sparsemax": "sparsemax mixes the entries of its input",
    "glu": "glu splits its input in two halves along an axis and multiplies them",
}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

# Probe used to check that a custom callable is element-wise. Irregular values that avoid the
# usual kink locations (0, +-0.5, +-1, +-3, 6).
_PROBE = np.array(
    [-3.71, -2.43, -1.87, -1.22, -0.73, -0.31, -0.12, 0.07,
     0.23, 0.41, 0.66, 0.94, 1.38, 1.91, 2.57, 4.13],
    dtype=np.float64,
)
_PROBE_PERMUTATION = np.array([5, 12, 0, 9, 15, 3, 7, 1, 14, 10, 2, 8, 13, 4, 11, 6])
_ELEMENTWISE_RTOL = 1e-5
_DERIVATIVE_AGREEMENT_RTOL = 1e-4
_DERIVATIVE_AGREEMENT_FRACTION = 0.75
_ONE_SIDED_SMOOTHNESS_FACTOR = 4.0
_RESOLVE_CACHE_SIZE = 256


# --------------------------------------------------------------------------------------------
# NumPy closed forms of the element-wise Keras activations: (phi, phi', kinks) given kwargs.
# --------------------------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _as_float(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    decay = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * _erfc(-x / math.sqrt(2.0)).astype(np.float64)


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _linear():
    return (lambda x: x + 0.0), (lambda x: np.ones_like(x)), ()


def _relu(negative_slope=0.0, max_value=None, threshold=0.0):
    # Keras ReLU.static_call: where(x > t, x, 0), clipped to [0, max_value] when max_value is
    # set, minus negative_slope * relu(t - x).
    def phi(x):
        y = np.where(x > threshold, x, 0.0)
        if max_value is not None:
            y = np.clip(y, 0.0, max_value)
        return y - negative_slope * np.maximum(threshold - x, 0.0)

    def dphi(x):
        passing = x > threshold
        if max_value is not None:
            y = np.where(passing, x, 0.0)
            passing = passing & (y > 0.0) & (y < max_value)
        return passing.astype(np.float64) + negative_slope * (x < threshold)

    kinks = {float(threshold)}
    if max_value is not None:
        kinks |= {0.0, float(max_value)}
    return phi, dphi, tuple(sorted(kinks))


def _leaky_relu(negative_slope=0.2):
    return (
        lambda x: np.where(x > 0, x, negative_slope * x),
        lambda x: np.where(x > 0, 1.0, negative_slope),
        (0.0,),
    )


def _relu6():
    return (
        lambda x: np.clip(x, 0.0, 6.0),
        lambda x: ((x > 0) & (x < 6)).astype(np.float64),
        (0.0, 6.0),
    )


def _elu(alpha=1.0):
    return (
        lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
        lambda x: np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0))),
        (0.0,),
    )


def _selu():
    return (
        lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
        lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0))),
        (0.0,),
    )


def _celu(alpha=1.0):
    def phi(x):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.maximum(x, 0.0) + alpha * np.expm1(np.minimum(x, 0.0) / alpha)

    def dphi(x):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0) / alpha))

    return phi, dphi, (0.0,)


def _gelu(approximate=False):
    if approximate:

        def phi(x):
            return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_COEFFICIENT * x**3)))

        def dphi(x):
            t = np.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_COEFFICIENT * x**3))
            inner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEFFICIENT * x**2)
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner

        return phi, dphi, ()
    return (
        lambda x: x * _normal_cdf(x),
        lambda x: _normal_cdf(x) + x * _normal_pdf(x),
        (),
    )


def _silu():
    return (
        lambda x: x * _sigmoid(x),
        lambda x: _sigmoid(x) * (1.0 + x * _sigmoid(-x)),
        (),
    )


def _mish():
    def dphi(x):
        t = np.tanh(_softplus(x))
        return t + x * (1.0 - t * t) * _sigmoid(x)

    return (lambda x: x * np.tanh(_softplus(x))), dphi, ()


def _tanh():
    return np.tanh, (lambda x: 1.0 - np.tanh(x) ** 2), ()


def _sigmoid_activation():
    return _sigmoid, (lambda x: _sigmoid(x) * _sigmoid(-x)), ()


def _hard_sigmoid():
    return (
        lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        lambda x: ((x > -3) & (x < 3)) / 6.0,
        (-3.0, 3.0),
    )


def _hard_silu():
    return (
        lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        lambda x: np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, (2.0 * x + 3.0) / 6.0)),
        (-3.0, 3.0),
    )


def _softplus_activation():
    return _softplus, _sigmoid, ()


def _softsign():
    return (lambda x: x / (1.0 + np.abs(x))), (lambda x: 1.0 / (1.0 + np.abs(x)) ** 2), (0.0,)


def _exponential():
    return np.exp, np.exp, ()


def _log_sigmoid():
    return (lambda x: -_softplus(-x)), (lambda x: _sigmoid(-x)), ()


def _sparse_plus():
    return (
        lambda x: np.where(x <= -1, 0.0, np.where(x < 1, 0.25 * (x + 1.0) ** 2, x)),
        lambda x: np.where(x <= -1, 0.0, np.where(x < 1, 0.5 * (x + 1.0), 1.0)),
        (-1.0, 1.0),
    )


def _sparse_sigmoid():
    return (
        lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, 1.0, 0.5 * (x + 1.0))),
        lambda x: ((x > -1) & (x < 1)) * 0.5,
        (-1.0, 1.0),
    )


def _squareplus(b=4):
    def phi(x):
        with np.errstate(invalid="ignore"):
            return 0.5 * (x + np.sqrt(x * x + b))

    def dphi(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return 0.5 * (1.0 + x / np.sqrt(x * x + b))

    return phi, dphi, ((0.0,) if b <= 0 else ())


def _tanh_shrink():
    return (lambda x: x - np.tanh(x)), (lambda x: np.tanh(x) ** 2), ()


def _hard_tanh():
    return (
        lambda x: np.clip(x, -1.0, 1.0),
        lambda x: ((x > -1) & (x < 1)).astype(np.float64),
        (-1.0, 1.0),
    )


def _hard_shrink(threshold=0.5):
    return (
        lambda x: np.where(np.abs(x) > threshold, x, 0.0),
        lambda x: (np.abs(x) > threshold).astype(np.float64),
        tuple(sorted({-float(threshold), float(threshold)})),
    )


def _soft_shrink(threshold=0.5):
    return (
        lambda x: np.where(
            x > threshold, x - threshold, np.where(x < -threshold, x + threshold, 0.0)
        ),
        lambda x: ((x > threshold) | (x < -threshold)).astype(np.float64),
        tuple(sorted({-float(threshold), float(threshold)})),
    )


def _threshold(threshold, default_value):
    return (
        lambda x: np.where(x > threshold, x, default_value + 0.0 * x),
        lambda x: (x > threshold).astype(np.float64),
        (float(threshold),),
    )


# name -> factory(**kwargs) returning (phi, phi', kinks). Derivatives are the almost-everywhere
# derivatives: a jump of phi (threshold, hard_shrink, relu with threshold > 0) adds nothing.
CLOSED_FORMS: dict[str, Callable[..., tuple[ArrayFunction, ArrayFunction, tuple]]] = {
    "linear": _linear,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "relu6": _relu6,
    "elu": _elu,
    "selu": _selu,
    "celu": _celu,
    "gelu": _gelu,
    "silu": _silu,
    "mish": _mish,
    "tanh": _tanh,
    "sigmoid": _sigmoid_activation,
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": _hard_silu,
    "softplus": _softplus_activation,
    "softsign": _softsign,
    "exponential": _exponential,
    "log_sigmoid": _log_sigmoid,
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": _sparse_sigmoid,
    "squareplus": _squareplus,
    "tanh_shrink": _tanh_shrink,
    "hard_tanh": _hard_tanh,
    "hard_shrink": _hard_shrink,
    "soft_shrink": _soft_shrink,
    "threshold": _threshold,
}

# Keyword arguments that must be booleans, or may be None; every other one must be a real number.
_BOOLEAN_KWARGS = {("gelu", "approximate")}
_OPTIONAL_KWARGS = {("relu", "max_value")}


# --------------------------------------------------------------------------------------------
# The resolved activation.
# --------------------------------------------------------------------------------------------


class ResolvedActivation:
    """An element-wise activation as float64 NumPy functions (private).

    Calling it evaluates ``phi``; :attr:`derivative` evaluates ``phi'`` (almost everywhere).

    Attributes:
        name: The Keras name (aliases resolved: ``"swish"`` -> ``"silu"``) or, for a custom
            callable, its ``__name__``.
        kwargs: The keyword arguments bound to the activation, defaults included for Keras
            activations.
        kinks: Sorted points where ``phi`` or ``phi'`` is not smooth (empty when unknown).
        closed_form: Whether ``phi`` and ``phi'`` are this module's NumPy closed forms.
        rtol: The relative accuracy that ``phi`` can deliver (from its output dtype), a floor for
            quadrature tolerances.
        key: A hashable identity for caching, or ``None`` if the callable or a keyword value is
            not hashable.
        received: The original ``activation`` argument, for error messages.
        received_kwargs: The original ``activation_kwargs``, for error messages.
    """

    def __init__(
        self,
        function: ArrayFunction,
        derivative: ArrayFunction,
        *,
        name: str,
        kwargs: dict,
        kinks: tuple[float, ...],
        closed_form: bool,
        rtol: float,
        key: Any,
        received: Any,
        received_kwargs: dict | None = None,
    ) -> None:
        self._function = function
        self._derivative = derivative
        self.name = name
        self.kwargs = dict(kwargs)
        self.kinks = tuple(float(k) for k in kinks)
        self.closed_form = closed_form
        self.rtol = rtol
        self.key = key
        self.received = received
        self.received_kwargs = dict(received_kwargs or {})

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _as_float(self._function(_as_float(x)))

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """Evaluates ``phi'`` at ``x`` (float64)."""
        return _as_float(self._derivative(_as_float(x)))

    def describe(self) -> str:
        """``"activation='relu', activation_kwargs={...}"`` for error messages."""
        text = f"activation={self.received!r}"
        if self.received_kwargs:
            text += f", activation_kwargs={self.received_kwargs!r}"
        return text

    def __hash__(self) -> int:
        if self.key is None:
            raise TypeError(f"The activation {self.name!r} is not hashable.")
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResolvedActivation):
            return NotImplemented
        if self.key is None or other.key is None:
            return self is other
        return self.key == other.key

    def __repr__(self) -> str:
        return f"ResolvedActivation({self.name!r}, kwargs={self.kwargs!r}, kinks={self.kinks!r})"


def _cache_key(*parts: Any) -> tuple | None:
    """``parts`` as a cache key, or ``None`` when one of them is not hashable."""
    try:
        hash(parts)
    except TypeError:
        return None
    return parts


def _check_callable(activation: Any) -> None:
    """A non-string, non-None activation must be a callable (numbers and bools are not)."""
    if isinstance(activation, (bool, numbers.Number)) or not callable(activation):
        raise TypeError(
            "activation must be the name of a Keras activation, a callable or None. "
            f"Received: activation={activation!r} (of type {type(activation).__name__})"
        )


def resolve_activation(
    activation: Any, activation_kwargs: dict | None = None
) -> ResolvedActivation:
    """Turns an activation argument into a float64 element-wise NumPy function.

    Args:
        activation: A Keras activation name, a Keras activation function, ``None`` (linear), a
            config dict from :func:`serialize_activation`, or an element-wise callable (it may
            return a backend tensor).
        activation_kwargs: Keyword arguments for the activation (``negative_slope``, ``alpha``,
            ``approximate``, ...).

    Returns:
        A :class:`ResolvedActivation` ``phi`` with ``phi.derivative`` and ``phi.kinks``.

    Raises:
        ValueError: If the name is unknown or the activation is not element-wise.
        TypeError: If ``activation`` has a wrong type, or ``activation_kwargs`` holds an argument
            the activation does not take, misses a required one, or has a wrong type.
    """
    if activation_kwargs is None:
        activation_kwargs = {}
    if not isinstance(activation_kwargs, dict):
        raise TypeError(
            "activation_kwargs must be a dict or None. "
            f"Received: activation_kwargs={activation_kwargs!r}"
        )
    if isinstance(activation, ResolvedActivation):
        if activation_kwargs:
            raise TypeError(
                "activation_kwargs cannot be given with an already resolved activation. "
                f"Received: activation_kwargs={activation_kwargs!r}"
            )
        return activation
    frozen_kwargs = tuple(sorted(activation_kwargs.items()))
    try:
        hash((activation, frozen_kwargs))
    except TypeError:  # a dict config, a list-valued keyword argument, ...
        return _resolve_uncached(activation, activation_kwargs)
    return _resolve_cached(activation, frozen_kwargs)


@functools.lru_cache(maxsize=_RESOLVE_CACHE_SIZE)
def _resolve_cached(activation: Any, frozen_kwargs: tuple) -> ResolvedActivation:
    # A custom callable is checked (element-wise, derivative method) once, not on every call.
    return _resolve_uncached(activation, dict(frozen_kwargs))


def _resolve_uncached(activation: Any, activation_kwargs: dict) -> ResolvedActivation:
    received = activation
    if isinstance(activation, dict):
        activation = deserialize_activation(activation)
    if activation is None:
        return _resolve_named("linear", activation_kwargs, received)
    if isinstance(activation, str):
        return _resolve_named(activation, activation_kwargs, received)
    _check_callable(activation)
    keras_name = _keras_builtin_name(activation)
    if keras_name is not None:
        return _resolve_named(keras_name, activation_kwargs, received)
    return _resolve_callable(activation, activation_kwargs, received)


def activation_kinks(activation: Any, activation_kwargs: dict | None = None) -> tuple[float, ...]:
    """Returns the sorted points where ``phi`` or ``phi'`` is not smooth (``()`` if unknown)."""
    return resolve_activation(activation, activation_kwargs).kinks


def activation_derivative(activation: Any, activation_kwargs: dict | None = None) -> ArrayFunction:
    """Returns ``phi'`` as a float64 NumPy function (almost-everywhere derivative)."""
    return resolve_activation(activation, activation_kwargs).derivative


def _keras_builtin_name(function: Any) -> str | None:
    """The name of a ``keras.activations`` function, or None for anything else."""
    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not isinstance(function, types.FunctionType):
        return None
    if getattr(keras.activations, name, None) is function:
        return name
    return None


def _known_names() -> list[str]:
    names = sorted(set(CLOSED_FORMS) | set(ALIASES))
    for name in dir(keras.activations):
        if name.startswith("_") or name in {"get", "serialize", "deserialize"}:
            continue
        if name not in NOT_ELEMENTWISE and callable(getattr(keras.activations, name)):
            names.append(name)
    return sorted(set(names))


def _resolve_named(name: str, activation_kwargs: dict, received: Any) -> ResolvedActivation:
    if name in NOT_ELEMENTWISE:
        raise ValueError(
            f"activation must be element-wise; {NOT_ELEMENTWISE[name]}. "
            f"Received: activation={received!r}"
        )
    canonical = ALIASES.get(name, name)
    if canonical not in CLOSED_FORMS:
        keras_function = getattr(keras.activations, canonical, None)
        if name.startswith("_") or name in {"get", "serialize", "deserialize"} or not callable(
            keras_function
        ):
            suggestions = difflib.get_close_matches(name, _known_names(), n=3)
            hint = f" Did you mean {' or '.join(map(repr, suggestions))}?" if suggestions else ""
            examples = ", ".join(repr(n) for n in ("relu", "gelu", "silu", "tanh", "leaky_relu"))
            raise ValueError(
                f"Unknown activation {name!r}.{hint} Expected the name of an element-wise Keras "
                f"activation (e.g. {examples}; all: {', '.join(_known_names())}), "
                f"a callable or None. Received: activation={received!r}"
            )
        # A Keras activation newer than this module: evaluate it through Keras.
        return _resolve_callable(keras_function, activation_kwargs, received, name=canonical)

    keras_function = getattr(keras.activations, canonical)
    bound = _bind_kwargs(canonical, keras_function, activation_kwargs)
    _check_kwarg_types(canonical, bound, activation_kwargs)
    phi, dphi, kinks = CLOSED_FORMS[canonical](**bound)
    key = _cache_key("keras", canonical, tuple(sorted(bound.items())))
    return ResolvedActivation(
        phi,
        dphi,
        name=canonical,
        kwargs=bound,
        kinks=kinks,
        closed_form=True,
        rtol=float(np.finfo(np.float64).eps),
        key=key,
        received=received,
        received_kwargs=activation_kwargs,
    )


def _bind_kwargs(
    name: str, function: Callable, activation_kwargs: dict, with_defaults: bool = True
) -> dict:
    """Checks ``activation_kwargs`` against the signature of ``function`` (minus ``x``).

    Returns them with the defaults of the other keyword parameters added if ``with_defaults``.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return dict(activation_kwargs)
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        parameters = parameters[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(activation_kwargs)
    accepted = {
        p.name: p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    unknown = [k for k in activation_kwargs if k not in accepted]
    if unknown:
        takes = (
            f"{name} takes: {', '.join(repr(k) for k in accepted)}"
            if accepted
            else f"{name} takes no arguments"
        )
        raise TypeError(
            f"activation_kwargs has an argument that {name} does not take: "
            f"{', '.join(repr(k) for k in unknown)} ({takes}). "
            f"Received: activation_kwargs={activation_kwargs!r}"
        )
    missing = [
        p.name
        for p in accepted.values()
        if p.default is inspect.Parameter.empty and p.name not in activation_kwargs
    ]
    if missing:
        raise TypeError(
            f"activation_kwargs is missing an argument that {name} requires: "
            f"{', '.join(repr(k) for k in missing)}. "
            f"Received: activation_kwargs={activation_kwargs!r}"
        )
    if not with_defaults:
        return dict(activation_kwargs)
    bound = {
        p.name: p.default for p in accepted.values() if p.default is not inspect.Parameter.empty
    }
    bound.update(activation_kwargs)
    return bound


def _check_kwarg_types(name: str, bound: dict, activation_kwargs: dict) -> None:
    for key, value in bound.items():
        if (name, key) in _BOOLEAN_KWARGS:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(
                    f"activation_kwargs[{key!r}] of {name} must be a bool. "
                    f"Received: activation_kwargs={activation_kwargs!r}"
                )
            continue
        if value is None and (name, key) in _OPTIONAL_KWARGS:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"activation_kwargs[{key!r}] of {name} must be a real number. "
                f"Received: activation_kwargs={activation_kwargs!r}"
            )
        if not math.isfinite(float(value)):
            raise ValueError(
                f"activation_kwargs[{key!r}] of {name} must be finite. "
                f"Received: activation_kwargs={activation_kwargs!r}"
            )


# --------------------------------------------------------------------------------------------
# Custom callables.
# --------------------------------------------------------------------------------------------


def _callable_name(function: Any) -> str:
    name = getattr(function, "__name__", None)
    if isinstance(name, str):
        return name
    inner = getattr(function, "func", None)  # functools.partial
    if inner is not None:
        return _callable_name(inner)
    return type(function).__name__


def _to_numpy(values: Any) -> np.ndarray:
    try:
        return np.asarray(values)
    except Exception:  # e.g. a tensor type NumPy cannot read directly
        return np.asarray(keras.ops.convert_to_numpy(values))


def _dtype_rtol(array: np.ndarray) -> float:
    dtype = array.dtype
    if dtype.kind in "iub":
        return float(np.finfo(np.float64).eps)
    try:
        return max(float(np.finfo(dtype).eps), float(np.finfo(np.float64).eps))
    except (TypeError, ValueError):  # bfloat16 and other ml_dtypes
        return 1e-2 if dtype.itemsize <= 2 else float(np.finfo(np.float32).eps)


def _resolve_callable(
    function: Callable, activation_kwargs: dict, received: Any, name: str | None = None
) -> ResolvedActivation:
    name = name or _callable_name(function)
    bound = _bind_kwargs(name, function, activation_kwargs, with_defaults=False)
    bound_function = functools.partial(function, **bound) if bound else function

    def call_with(x: np.ndarray, as_tensor: bool) -> np.ndarray:
        inputs = keras.ops.convert_to_tensor(x) if as_tensor else x
        try:
            return _to_numpy(bound_function(inputs))
        except TypeError as error:
            if activation_kwargs:
                raise TypeError(
                    f"{name} raised a TypeError when called with activation_kwargs: {error}. "
                    f"Received: activation_kwargs={activation_kwargs!r}"
                ) from error
            raise

    # A float64 NumPy array first (fast, exact); a backend tensor if the callable needs one.
    try:
        call_with(_PROBE.copy(), as_tensor=False)
        as_tensor = False
    except Exception as numpy_error:
        try:
            call_with(_PROBE.copy(), as_tensor=True)
        except Exception:
            raise numpy_error from None
        as_tensor = True
    call_raw = functools.partial(call_with, as_tensor=as_tensor)

    probe_output = _check_elementwise(call_raw, received)
    rtol = _dtype_rtol(probe_output)

    def phi(x: np.ndarray) -> np.ndarray:
        return _as_float(call_raw(x))

    derivative = _choose_derivative(bound_function, phi, rtol)
    key = _cache_key("callable", function, tuple(sorted(bound.items())))
    return ResolvedActivation(
        phi,
        derivative,
        name=name,
        kwargs=bound,
        kinks=(),
        closed_form=False,
        rtol=rtol,
        key=key,
        received=received,
        received_kwargs=activation_kwargs,
    )


def _check_elementwise(call_raw: Callable[[np.ndarray], np.ndarray], received: Any) -> np.ndarray:
    """Raises ValueError unless ``call_raw`` acts on each entry on its own; returns phi(probe)."""
    output = call_raw(_PROBE.copy())
    if output.shape != _PROBE.shape:
        raise ValueError(
            f"activation must be element-wise; it returned shape {output.shape} for an input "
            f"of shape {_PROBE.shape}. Received: activation={received!r}"
        )
    reference = _as_float(output)
    scale = float(np.nanmax(np.abs(reference), initial=0.0)) if reference.size else 0.0
    atol = _ELEMENTWISE_RTOL * max(scale, 1e-12)

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        a = _as_float(a)
        return a.shape == b.shape and bool(
            np.allclose(a, b, rtol=_ELEMENTWISE_RTOL, atol=atol, equal_nan=True)
        )

    checks = (
        (_PROBE[_PROBE_PERMUTATION], reference[_PROBE_PERMUTATION]),  # position-dependent
        (_PROBE[:5], reference[:5]),  # depends on the other entries (mean, norm, softmax)
        (_PROBE[9:10], reference[9:10]),
    )
    for inputs, expected in checks:
        if not same(call_raw(inputs.copy()), expected):
            raise ValueError(
                "activation must be element-wise; the value it gives an entry depends on the "
                "other entries of its input (it mixes the entries of its input). "
                f"Received: activation={received!r}"
            )
    return output


def _finite_difference(phi: ArrayFunction, rtol: float) -> ArrayFunction:
    """Fourth-order finite differences that step around kinks they cannot see.

    At each point three five-point stencils are candidates: central, left-sided and right-sided.
    The central one is used unless a one-sided stencil is much smoother (a four times smaller
    fourth difference): then a kink or a jump of ``phi`` lies inside the central stencil, and the
    one-sided stencil that avoids it gives the derivative on its side. The step balances
    truncation (``h^4``) and rounding (``rtol / h``).
    """
    relative_step = rtol ** (1.0 / 5.0)
    offsets = np.arange(-4.0, 5.0)

    def derivative(x: np.ndarray) -> np.ndarray:
        x = _as_float(x)
        shape = x.shape
        x = x.ravel()
        step = relative_step * np.maximum(1.0, np.abs(x))
        points = x[None, :] + offsets[:, None] * step[None, :]
        f = phi(points.ravel()).reshape(points.shape)  # f[k] = phi(x + (k - 4) h)
        with np.errstate(invalid="ignore", over="ignore"):
            central = (f[2] - 8.0 * f[3] + 8.0 * f[5] - f[6]) / (12.0 * step)
            right = (-25.0 * f[4] + 48.0 * f[5] - 36.0 * f[6] + 16.0 * f[7] - 3.0 * f[8]) / (
                12.0 * step
            )
            left = (25.0 * f[4] - 48.0 * f[3] + 36.0 * f[2] - 16.0 * f[1] + 3.0 * f[0]) / (
                12.0 * step
            )
            roughness_central = np.abs(f[2] - 4.0 * f[3] + 6.0 * f[4] - 4.0 * f[5] + f[6])
            roughness_right = np.abs(f[4] - 4.0 * f[5] + 6.0 * f[6] - 4.0 * f[7] + f[8])
            roughness_left = np.abs(f[0] - 4.0 * f[1] + 6.0 * f[2] - 4.0 * f[3] + f[4])
        smoother = roughness_central / _ONE_SIDED_SMOOTHNESS_FACTOR
        use_right = (roughness_right < roughness_left) & (roughness_right < smoother)
        use_left = ~use_right & (roughness_left < smoother)
        result = np.where(use_right, right, np.where(use_left, left, central))
        return result.reshape(shape)

    return derivative


def _choose_derivative(function: Callable, phi: ArrayFunction, rtol: float) -> ArrayFunction:
    """Autodiff when the backend can differentiate ``function``, else finite differences.

    The autodiff result is kept only if it agrees with finite differences on most of the probe
    (a probe point near a kink may disagree), so a ``stop_gradient`` or a custom gradient cannot
    stand in for the true derivative.
    """
    finite_difference = _finite_difference(phi, rtol)
    autodiff = backend.current().elementwise_derivative(function)
    if autodiff is None:
        return finite_difference
    try:
        by_tape = autodiff(_PROBE)
    except Exception:
        return finite_difference
    by_difference = finite_difference(_PROBE)
    tolerance = max(_DERIVATIVE_AGREEMENT_RTOL, 1e3 * rtol ** (4.0 / 5.0))
    if by_tape.shape != _PROBE.shape:
        return finite_difference
    agree = np.isclose(by_tape, by_difference, rtol=tolerance, atol=tolerance)
    if np.mean(agree) >= _DERIVATIVE_AGREEMENT_FRACTION:
        return autodiff
    return finite_difference


# --------------------------------------------------------------------------------------------
# Serialization.
# --------------------------------------------------------------------------------------------


def serialize_activation(activation: Any) -> str | dict | None:
    """Turns an activation argument into a JSON-friendly config.

    A name stays the name; a ``keras.activations`` function becomes its name; a function
    registered with ``keras.saving.register_keras_serializable`` (or an instance of a registered
    class with ``get_config``/``from_config``) becomes
    ``keras.saving.serialize_keras_object(activation)``.

    Raises:
        ValueError: For a callable that is not registered (a lambda, a local function):
            ``serialize_keras_object`` would write ``{"config": "f"}`` that no other process can
            load.
        TypeError: For anything that is not a string, a dict, a callable or None.
    """
    if activation is None or isinstance(activation, str):
        return activation
    if isinstance(activation, dict):
        return dict(activation)
    if isinstance(activation, ResolvedActivation):
        raise TypeError(
            "serialize_activation takes the activation as the user gave it, not a "
            f"ResolvedActivation. Received: activation={activation!r}"
        )
    _check_callable(activation)
    keras_name = _keras_builtin_name(activation)
    if keras_name is not None:
        return keras.activations.serialize(activation)
    if _is_registered(activation):
        return keras.saving.serialize_keras_object(activation)
    name = _callable_name(activation)
    raise ValueError(
        f"activation {name!r} cannot be serialized: it is not registered with Keras, so a saved "
        "model could not be reloaded. Define it as a named module-level function decorated with "
        "`@keras.saving.register_keras_serializable(package=...)`. "
        f"Received: activation={activation!r}"
    )


def _is_registered(activation: Any) -> bool:
    """Whether Keras can find ``activation`` (a function) or its class again by name."""
    target = activation if isinstance(activation, types.FunctionType) else type(activation)
    if isinstance(activation, types.FunctionType) and activation.__name__ == "<lambda>":
        return False
    if not isinstance(activation, types.FunctionType) and not (
        hasattr(activation, "get_config") and hasattr(type(activation), "from_config")
    ):
        return False  # an instance Keras could serialize but not rebuild
    try:
        registered_name = keras.saving.get_registered_name(target)
    except AttributeError:
        return False
    return keras.saving.get_registered_object(registered_name) is target


def deserialize_activation(config: Any) -> str | Callable | None:
    """Inverts :func:`serialize_activation`: ``None`` and names stay, dicts become callables.

    Raises:
        TypeError: For anything other than None, a string or a dict.
    """
    if config is None or isinstance(config, str):
        return config
    if isinstance(config, dict):
        return keras.saving.deserialize_keras_object(config)
    raise TypeError(
        "An activation config must be a string, a dict or None. "
        f"Received: config={config!r} (of type {type(config).__name__})"
    )
