"""Argument checks shared by the whole package: one helper per kind of argument.

Every helper names the argument and shows the received value with ``!r``
(``Received: scale='0.1'``), accepts NumPy scalars wherever Python numbers are meant
(``np.int64(3)``, ``np.float32(0.5)``, ``np.bool_(True)``) and returns the plain Python value,
so that configs stay JSON. A bool is never a number, and a 0-d array is not a scalar (pass
``array.item()``).

Wrong values raise ValueError. Wrong types raise ``type_error``: TypeError by default; the
initializers pass ValueError, as Keras's own initializers do for every bad argument.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import keras
import numpy as np

__all__ = [
    "SEED_LIMIT",
    "check_bool",
    "check_choice",
    "check_int",
    "check_model",
    "check_number",
    "check_positive",
    "check_seed",
    "check_shape",
    "is_int",
    "is_real",
    "plain",
]

#: Seeds are ints in [0, SEED_LIMIT): non-negative int64 values.
SEED_LIMIT = 2**63


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python number or bool it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def is_real(value: Any) -> bool:
    """A Python or NumPy real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_int(value: Any) -> bool:
    """A Python or NumPy integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    type_error: type[Exception] = TypeError,
) -> float:
    """Returns `value` as a float if it is a finite real number in the given range.

    Raises:
        type_error: If `value` is not a real number (bools, strings and arrays are not).
        ValueError: If it is NaN, infinite or out of range.
    """
    interval = _interval(minimum, maximum, exclusive_minimum, exclusive_maximum)
    if not is_real(value):
        raise type_error(
            f"Argument `{name}` must be a finite number{interval}. Received: {name}={value!r}"
        )
    number = float(value)
    too_small = minimum is not None and (
        number < minimum or (exclusive_minimum and number == minimum)
    )
    too_large = maximum is not None and (
        number > maximum or (exclusive_maximum and number == maximum)
    )
    if not math.isfinite(number) or too_small or too_large:
        raise ValueError(
            f"Argument `{name}` must be a finite number{interval}. Received: {name}={value!r}"
        )
    return number


def check_positive(name: str, value: Any, *, type_error: type[Exception] = TypeError) -> float:
    """Returns `value` as a float if it is a positive finite number."""
    return check_number(name, value, minimum=0.0, exclusive_minimum=True, type_error=type_error)


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    type_error: type[Exception] = TypeError,
) -> int:
    """Returns `value` as an int if it is an integer (not a bool, not a float) >= `minimum`."""
    bound = "" if minimum is None else f" >= {minimum}"
    if not is_int(value):
        raise type_error(f"Argument `{name}` must be an int{bound}. Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"Argument `{name}` must be an int{bound}. Received: {name}={value!r}")
    return int(value)


def check_bool(name: str, value: Any, *, type_error: type[Exception] = TypeError) -> bool:
    """Returns `value` as a bool if it is ``True``/``False`` (or a NumPy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise type_error(f"Argument `{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Returns `value` if it is one of the strings `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {', '.join(repr(c) for c in choices)}. "
            f"Received: {name}={value!r}"
        )
    return str(value)


def check_seed(value: Any, *, name: str = "seed", type_error: type[Exception] = TypeError) -> int:
    """Returns an int seed in [0, 2**63) as a Python int.

    Raises:
        type_error: If `value` is not an integer (floats, bools and strings are not).
        ValueError: If it is negative or >= 2**63.
    """
    if not is_int(value):
        raise type_error(
            f"Argument `{name}` must be an int in [0, 2**63) or None. Received: {name}={value!r}"
        )
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(
            f"Argument `{name}` must be an int in [0, 2**63) or None. Received: {name}={value!r}"
        )
    return int(value)


def check_model(value: Any, *, name: str = "model") -> keras.Model:
    """Returns `value` if it is a `keras.Model` (Sequential, Functional or subclassed)."""
    if not isinstance(value, keras.Model):
        raise TypeError(
            f"Argument `{name}` must be a keras.Model (Sequential, Functional or subclassed). "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    return value


def check_shape(value: Any, *, name: str = "shape", type_error: type[Exception] = TypeError):
    """Returns a kernel shape (a sequence of non-negative ints) as a tuple of Python ints."""
    if isinstance(value, (str, bytes, dict)) or not _iterable(value):
        raise type_error(
            f"Argument `{name}` must be a sequence of non-negative ints. Received: {name}={value!r}"
        )
    dims = tuple(value)
    for dim in dims:
        if not is_int(dim):
            raise type_error(
                f"Argument `{name}` must be a fully defined sequence of non-negative ints. "
                f"Received: {name}={value!r}"
            )
        if dim < 0:
            raise ValueError(
                f"Argument `{name}` must be a sequence of non-negative ints. "
                f"Received: {name}={value!r}"
            )
    return tuple(int(dim) for dim in dims)


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _interval(
    minimum: float | None, maximum: float | None, exclusive_minimum: bool, exclusive_maximum: bool
) -> str:
    if minimum == 0.0 and exclusive_minimum and maximum is None:
        return " > 0"
    if minimum is None and maximum is None:
        return ""
    left = "(" if exclusive_minimum or minimum is None else "["
    right = ")" if exclusive_maximum or maximum is None else "]"
    low = "-inf" if minimum is None else f"{minimum:g}"
    high = "inf" if maximum is None else f"{maximum:g}"
    return f" in {left}{low}, {high}{right}"
