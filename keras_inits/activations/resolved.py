"""The resolved activation: an element-wise activation as float64 NumPy functions."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from keras_inits.activations.closed_forms import ArrayFunction, as_float

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
        return as_float(self._function(as_float(x)))

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """Evaluates ``phi'`` at ``x`` (float64)."""
        return as_float(self._derivative(as_float(x)))

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


def cache_key(*parts: Any) -> tuple | None:
    """``parts`` as a cache key, or ``None`` when one of them is not hashable."""
    try:
        hash(parts)
    except TypeError:
        return None
    return parts


def check_callable(activation: Any) -> None:
    """A non-string, non-None activation must be a callable (numbers and bools are not)."""
    if isinstance(activation, (bool, numbers.Number)) or not callable(activation):
        raise TypeError(
            "activation must be the name of a Keras activation, a callable or None. "
            f"Received: activation={activation!r} (of type {type(activation).__name__})"
        )
