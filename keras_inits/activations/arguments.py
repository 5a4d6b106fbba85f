"""Keyword arguments of activations: binding, defaults, type checks; Keras built-in names."""

from __future__ import annotations

import inspect
import math
import numbers
import types
from typing import Any, Callable

import keras
import numpy as np

from keras_inits.activations.closed_forms import BOOLEAN_KWARGS, OPTIONAL_KWARGS

def keras_builtin_name(function: Any) -> str | None:
    """The name of a ``keras.activations`` function, or None for anything else."""
    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not isinstance(function, types.FunctionType):
        return None
    if getattr(keras.activations, name, None) is function:
        return name
    return None


def bind_kwargs(
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


def check_kwarg_types(name: str, bound: dict, activation_kwargs: dict) -> None:
    for key, value in bound.items():
        if (name, key) in BOOLEAN_KWARGS:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(
                    f"activation_kwargs[{key!r}] of {name} must be a bool. "
                    f"Received: activation_kwargs={activation_kwargs!r}"
                )
            continue
        if value is None and (name, key) in OPTIONAL_KWARGS:
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
