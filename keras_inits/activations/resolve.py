"""Resolving an activation argument (a name, a Keras function, None, a config, a callable)."""

from __future__ import annotations

import difflib
import functools
from typing import Any

import keras
import numpy as np

from keras_inits._checks import plain
from keras_inits.activations.arguments import bind_kwargs, check_kwarg_types, keras_builtin_name
from keras_inits.activations.callables import resolve_callable
from keras_inits.activations.closed_forms import (
    ALIASES,
    CLOSED_FORMS,
    NOT_ELEMENTWISE,
    ArrayFunction,
)
from keras_inits.activations.resolved import ResolvedActivation, cache_key, check_callable
from keras_inits.activations.serialization import deserialize_activation


RESOLVE_CACHE_SIZE = 256


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
    # NumPy scalars act as the Python numbers they hold (np.float32(0.1) is not computed in
    # float32), and share their cache entries.
    activation_kwargs = {key: plain(value) for key, value in activation_kwargs.items()}
    if isinstance(activation, ResolvedActivation):
        if activation_kwargs:
            raise TypeError(
                "activation_kwargs cannot be given with an already resolved activation. "
                f"Received: activation_kwargs={activation_kwargs!r}"
            )
        return activation
    # The type is part of the key: True == 1 and hash(True) == hash(1), yet
    # `approximate=1` must be refused even after `approximate=True` was cached.
    frozen_kwargs = tuple(
        sorted((key, type(value), value) for key, value in activation_kwargs.items())
    )
    try:
        hash((activation, frozen_kwargs))
    except TypeError:  # a dict config, a list-valued keyword argument, ...
        return _resolve_uncached(activation, activation_kwargs)
    return _resolve_cached(activation, frozen_kwargs)


@functools.lru_cache(maxsize=RESOLVE_CACHE_SIZE)
def _resolve_cached(activation: Any, frozen_kwargs: tuple) -> ResolvedActivation:
    # A custom callable is checked (element-wise, derivative method) once, not on every call.
    return _resolve_uncached(activation, {key: value for key, _, value in frozen_kwargs})


def _resolve_uncached(activation: Any, activation_kwargs: dict) -> ResolvedActivation:
    received = activation
    if isinstance(activation, dict):
        activation = deserialize_activation(activation)
    if activation is None:
        return _resolve_named("linear", activation_kwargs, received)
    if isinstance(activation, str):
        return _resolve_named(activation, activation_kwargs, received)
    check_callable(activation)
    keras_name = keras_builtin_name(activation)
    if keras_name is not None:
        return _resolve_named(keras_name, activation_kwargs, received)
    return resolve_callable(activation, activation_kwargs, received)


def activation_kinks(activation: Any, activation_kwargs: dict | None = None) -> tuple[float, ...]:
    """Returns the sorted points where ``phi`` or ``phi'`` is not smooth (``()`` if unknown)."""
    return resolve_activation(activation, activation_kwargs).kinks


def activation_derivative(activation: Any, activation_kwargs: dict | None = None) -> ArrayFunction:
    """Returns ``phi'`` as a float64 NumPy function (almost-everywhere derivative)."""
    return resolve_activation(activation, activation_kwargs).derivative


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
        return resolve_callable(keras_function, activation_kwargs, received, name=canonical)

    keras_function = getattr(keras.activations, canonical)
    bound = bind_kwargs(canonical, keras_function, activation_kwargs)
    check_kwarg_types(canonical, bound, activation_kwargs)
    phi, dphi, kinks = CLOSED_FORMS[canonical](**bound)
    key = cache_key("keras", canonical, tuple(sorted(bound.items())))
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
