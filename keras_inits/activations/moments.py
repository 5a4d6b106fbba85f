"""Closed-form Gaussian moments of the activations that have them.

For z ~ N(0, 1), the quantities `keras_inits.gains` needs are

    phi_squared        = E[phi(z)^2]
    derivative_squared = E[phi'(z)^2]
    slope_numerator    = E[phi(z)^2 (z^2 - 1) / 2]

Closed forms exist for linear, relu (plain), leaky_relu, selu (forward) and exponential;
everything else is integrated by quadrature.
"""

from __future__ import annotations

import math
from typing import Any, Literal

__all__ = ["QUANTITIES", "Quantity", "closed_form_moment"]

Quantity = Literal["phi_squared", "derivative_squared", "slope_numerator"]

#: The Gaussian expectations `closed_form_moment` knows.
QUANTITIES = ("phi_squared", "derivative_squared", "slope_numerator")

# Keras's relu keyword arguments at their defaults: plain relu, a leaky_relu with slope 0.
_PLAIN_RELU = {"negative_slope": 0.0, "max_value": None, "threshold": 0.0}


def closed_form_moment(name: str, kwargs: dict[str, Any], quantity: Quantity) -> float | None:
    """E[...] of a Keras activation in closed form, or None when there is none.

    Examples:

    >>> closed_form_moment("relu", {"negative_slope": 0.0, "max_value": None,
    ...                             "threshold": 0.0}, "phi_squared")
    0.5
    >>> closed_form_moment("tanh", {}, "phi_squared") is None
    True

    Args:
        name: A canonical Keras activation name (aliases resolved).
        kwargs: Its keyword arguments, defaults included.
        quantity: `"phi_squared"`, `"derivative_squared"` or `"slope_numerator"`.

    Returns:
        The expectation, or None.
    """
    if name == "linear":
        return 1.0  # E[z^2] = E[1] = E[z^2 (z^2 - 1) / 2] = 1
    if name == "leaky_relu" or (name == "relu" and kwargs == _PLAIN_RELU):
        # phi = z on one half-line and a z on the other, so each quantity is (1 + a^2) times its
        # half-line value for phi = z: E[z^2; z > 0] = E[1; z > 0] = E[z^2 (z^2 - 1) / 2; z > 0]
        # = 1/2. The slope is therefore 1 (a positively homogeneous activation).
        negative_slope = float(kwargs["negative_slope"])
        return (1.0 + negative_slope * negative_slope) / 2.0
    if name == "selu" and quantity == "phi_squared":
        # Self-normalizing (Klambauer et al., 2017): alpha and scale solve E[selu(z)] = 0 and
        # E[selu(z)^2] = 1; quadrature confirms 1 to 1e-15 (tests/test_gains.py).
        return 1.0
    if name == "exponential":
        # phi = phi' = exp. E[exp(2z)] = e^2; tilting by exp(2z) makes z ~ N(2, 1), where
        # E[(z^2 - 1) / 2] = (5 - 1) / 2 = 2, so E[exp(2z) (z^2 - 1) / 2] = 2 e^2.
        if quantity == "slope_numerator":
            return 2.0 * math.e**2
        return math.e**2
    return None
