"""Gains of element-wise activations and the slope of their variance map.

For a layer ``h = W x`` with zero-mean i.i.d. weights, ``Var(h) = fan_in * Var(W) * E[x^2]``. With
``x = phi(z)`` and ``z ~ N(0, 1)`` the variance is preserved by ``Var(W) = g_f^2 / fan_in`` in the
forward pass and by ``Var(W) = g_b^2 / fan_out`` in the backward pass, where

    g_f = 1 / sqrt(E[phi(z)^2])        (forward gain)
    g_b = 1 / sqrt(E[phi'(z)^2])       (backward gain)

Expectations use closed forms where they exist (linear, relu, leaky_relu, selu forward,
exponential) and otherwise adaptive composite Gauss-Legendre quadrature against the normal density,
split at the activation's kinks (plain Gauss-Hermite misses 1e-5 on kinked activations).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Literal

import numpy as np

from keras_inits.activations import ResolvedActivation, closed_form_moment, resolve_activation

__all__ = ["gain", "variance_slope"]

Direction = Literal["forward", "backward"]
DIRECTIONS = ("forward", "backward")

# Quadrature: z beyond +-40 carries a normal density below exp(-800), which underflows float64.
INTEGRATION_BOUND = 40.0
# Initial panel edges (kinks are added); panels are narrow where the normal density has its mass.
BASE_EDGES = (-40.0, -20.0, -12.0, -8.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0,
              1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 40.0)
NODES_PER_PANEL = 16
DEFAULT_RTOL = 1e-13
MAX_LEVELS = 60
MAX_ACTIVE_PANELS = 4096
# A panel narrower than this (relative to its position) is accepted as it is: it straddles a jump.
MIN_RELATIVE_WIDTH = 1e-13
# The integrand at +-INTEGRATION_BOUND must be this small relative to the integral.
TAIL_RTOL = 1e-12
# Panels accepted unconverged (too narrow to bisect, or past the panel budget) may carry at
# most this share of the integral of |integrand|: beyond, the integrand has a singularity
# that is not integrable (1/z at 0: every bisection adds as much as the last) and the
# expectation does not exist. Float32 rounding noise leaves ~1e-7; a divergence leaves O(1).
UNRESOLVED_RTOL = 1e-3
# A moment below the smallest normal float64 gives a gain whose square overflows.
SMALLEST_MOMENT = float(np.finfo(np.float64).tiny)

_LEGENDRE_NODES, _LEGENDRE_WEIGHTS = np.polynomial.legendre.leggauss(NODES_PER_PANEL)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_CACHE_SIZE = 1024


def gain(
    activation: str | Callable | None = "relu",
    direction: Direction = "forward",
    **activation_kwargs: Any,
) -> float:
    """Returns the variance-preserving gain of an element-wise activation.

    With ``z ~ N(0, 1)`` the forward and backward gains are

        g_f = 1 / sqrt(E[phi(z)^2])       (use with fan_in:  Var(W) = g_f^2 / fan_in)
        g_b = 1 / sqrt(E[phi'(z)^2])      (use with fan_out: Var(W) = g_b^2 / fan_out)

    so ``relu`` gives ``sqrt(2)`` both ways and ``leaky_relu`` with slope ``a`` gives
    ``sqrt(2 / (1 + a^2))``. Closed forms are used where they exist; every other activation,
    custom callables included, is integrated by adaptive Gauss-Legendre quadrature split at its
    kinks (relative accuracy about 1e-12). Results are cached.

    Examples:

    >>> round(gain("relu"), 6)
    1.414214
    >>> round(gain("leaky_relu", negative_slope=0.1), 6)
    1.407195
    >>> round(gain("tanh"), 4)
    1.5925
    >>> round(gain("tanh", direction="backward"), 4)
    1.4674
    >>> round(gain(None), 6)  # linear
    1.0

    Args:
        activation: A Keras activation name (``"relu"``, ``"gelu"``, ...), a
            ``keras.activations`` function, ``None`` (linear), or any element-wise callable
            (it may return a backend tensor).
        direction: ``"forward"`` for ``E[phi(z)^2]`` (fan_in), ``"backward"`` for
            ``E[phi'(z)^2]`` (fan_out). The backward gain uses the almost-everywhere
            derivative: jumps of ``phi`` add nothing.
        **activation_kwargs: Keyword arguments of the activation, e.g. ``negative_slope`` for
            ``leaky_relu``, ``alpha`` for ``elu``, ``approximate`` for ``gelu``.

    Returns:
        The gain, a positive float.

    Raises:
        ValueError: If ``direction`` is not ``"forward"`` or ``"backward"``, the activation name
            is unknown, the activation is not element-wise (softmax), or the expectation is 0 or
            infinite.
        TypeError: If ``activation`` has a wrong type or ``activation_kwargs`` holds an argument
            the activation does not take.

    Reference:
        - He et al., 2015, "Delving Deep into Rectifiers: Surpassing Human-Level Performance
          on ImageNet Classification", https://arxiv.org/abs/1502.01852
        - Glorot & Bengio, 2010, "Understanding the difficulty of training deep feedforward
          neural networks", AISTATS.
    """
    if direction not in DIRECTIONS:
        raise ValueError(
            "Argument `direction` must be 'forward' or 'backward'. "
            f"Received: direction={direction!r}"
        )
    phi = resolve_activation(activation, activation_kwargs)
    quantity = "phi_squared" if direction == "forward" else "derivative_squared"
    second_moment = _expectation(phi, quantity)
    _check_moment(second_moment, phi, direction)
    return math.sqrt(1.0 / second_moment)


def variance_slope(activation: str | Callable | None = "relu", **activation_kwargs: Any) -> float:
    """Returns the slope at ``q = 1`` of the activation's variance map under its forward gain.

    The variance map sends the variance ``q`` of a pre-activation to the variance of the next
    one, ``V(q) = g_f^2 E[phi(sqrt(q) z)^2]`` with ``z ~ N(0, 1)``, so ``V(1) = 1``. Its slope

        V'(1) = g_f^2 E[phi(z)^2 (z^2 - 1) / 2]

    (Gaussian integration by parts; no derivative of ``phi`` is needed) says what a deep stack
    initialized with the exact forward gain does: a slope below 1 pulls the variance back to 1
    (stable: tanh, sigmoid, selu, elu, softplus), 1 is neutral (linear, relu, leaky_relu: any
    positively homogeneous activation) and above 1 the deviations grow with depth (unstable:
    gelu, silu, mish). Results are cached.

    Examples:

    >>> round(variance_slope("relu"), 6)
    1.0
    >>> variance_slope("tanh") < 1 < variance_slope("gelu")
    True

    Args:
        activation: As in :func:`gain`.
        **activation_kwargs: Keyword arguments of the activation.

    Returns:
        The slope ``V'(1)``, a float.

    Raises:
        ValueError: As in :func:`gain` (forward direction).
        TypeError: As in :func:`gain`.

    Reference:
        - Poole et al., 2016, "Exponential expressivity in deep neural networks through
          transient chaos", https://arxiv.org/abs/1606.05340
    """
    phi = resolve_activation(activation, activation_kwargs)
    second_moment = _expectation(phi, "phi_squared")
    _check_moment(second_moment, phi, "forward")
    numerator = _expectation(phi, "slope_numerator")
    if not math.isfinite(numerator):
        raise ValueError(
            "The variance slope does not exist: E[phi(z)^2 (z^2 - 1) / 2] is infinite or "
            f"undefined for z ~ N(0, 1). Received: {phi.describe()}"
        )
    return numerator / second_moment


def _check_moment(value: float, phi: ResolvedActivation, direction: str) -> None:
    what = "E[phi(z)^2]" if direction == "forward" else "E[phi'(z)^2]"
    if not math.isfinite(value):
        raise ValueError(
            f"The {direction} gain does not exist: {what} is infinite or undefined for "
            "z ~ N(0, 1) (the integrand grows too fast, has a singularity that is not "
            "integrable, or the activation returns inf or nan). "
            f"Received: {phi.describe()}"
        )
    if value <= 0.0:
        raise ValueError(
            f"The {direction} gain does not exist: {what} is 0 for z ~ N(0, 1). "
            f"Received: {phi.describe()}"
        )
    if value < SMALLEST_MOMENT:
        raise ValueError(
            f"The {direction} gain is too large to represent: {what} = {value:.3g} for "
            f"z ~ N(0, 1), so the gain^2 overflows float64. Received: {phi.describe()}"
        )


# --------------------------------------------------------------------------------------------
# Closed forms.
# --------------------------------------------------------------------------------------------


def _closed_form(phi: ResolvedActivation, quantity: str) -> float | None:
    """E[...] in closed form (from the activation registry), or None."""
    if not phi.closed_form:
        return None
    return closed_form_moment(phi.name, phi.kwargs, quantity)


# --------------------------------------------------------------------------------------------
# Quadrature.
# --------------------------------------------------------------------------------------------


def _integrand(phi: ResolvedActivation, quantity: str) -> Callable[[np.ndarray], np.ndarray]:
    if quantity == "phi_squared":
        return lambda z: phi(z) ** 2
    if quantity == "derivative_squared":
        return lambda z: phi.derivative(z) ** 2
    if quantity == "slope_numerator":
        return lambda z: phi(z) ** 2 * (z * z - 1.0) / 2.0
    raise ValueError(f"Unknown quantity {quantity!r}")


def _expectation_uncached(phi: ResolvedActivation, quantity: str) -> float:
    exact = _closed_form(phi, quantity)
    if exact is not None:
        return exact
    rtol = max(DEFAULT_RTOL, 30.0 * phi.rtol)
    return gaussian_expectation(_integrand(phi, quantity), phi.kinks, rtol=rtol)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _expectation_cached(phi: ResolvedActivation, quantity: str) -> float:
    return _expectation_uncached(phi, quantity)


def _expectation(phi: ResolvedActivation, quantity: str) -> float:
    if phi.key is None:
        return _expectation_uncached(phi, quantity)
    return _expectation_cached(phi, quantity)


def gaussian_expectation(
    function: Callable[[np.ndarray], np.ndarray],
    kinks: tuple[float, ...] = (),
    *,
    rtol: float = DEFAULT_RTOL,
) -> float:
    """``E[function(z)]`` for ``z ~ N(0, 1)`` by adaptive composite Gauss-Legendre quadrature.

    The integral of ``function(z) * pdf(z)`` over ``[-40, 40]`` is split at fixed edges and at
    ``kinks``; each panel is bisected until the 16-point rule on the panel and on its two halves
    agree to ``rtol`` times the integral of ``|function| * pdf``. All panels of one bisection
    level are evaluated in a single vectorized call, so a TensorFlow callable costs one call per
    level. Unknown kinks are found by the bisection itself (more levels, same accuracy).

    Returns ``inf`` when ``function`` is not finite, does not decay at +-40, or has a
    singularity that is not integrable (panels that cannot be resolved carry more than
    ``UNRESOLVED_RTOL`` of the integral): the expectation does not exist.
    """
    edges = np.array(
        sorted(
            set(BASE_EDGES)
            | {float(k) for k in kinks if -INTEGRATION_BOUND < k < INTEGRATION_BOUND}
        )
    )
    left_edges, right_edges = edges[:-1], edges[1:]

    def panel_integrals(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half_width = (right - left)[:, None] / 2.0
        nodes = (left + right)[:, None] / 2.0 + half_width * _LEGENDRE_NODES[None, :]
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.asarray(function(nodes.ravel()), dtype=np.float64).reshape(nodes.shape)
            weighted = values * np.exp(-0.5 * nodes * nodes) / _SQRT_2PI
        if not np.all(np.isfinite(values)) or not np.all(np.isfinite(weighted)):
            raise _NotFinite
        weights = half_width * _LEGENDRE_WEIGHTS[None, :]
        return (weighted * weights).sum(axis=1), (np.abs(weighted) * weights).sum(axis=1)

    try:
        with np.errstate(over="ignore", invalid="ignore"):
            tails = np.asarray(
                function(np.array([-INTEGRATION_BOUND, INTEGRATION_BOUND])), dtype=np.float64
            )
        if not np.all(np.isfinite(tails)):
            return math.inf
        whole, _ = panel_integrals(left_edges, right_edges)
        accepted = 0.0
        accepted_abs = 0.0
        unresolved = 0.0
        for _level in range(MAX_LEVELS):
            middles = (left_edges + right_edges) / 2.0
            count = len(left_edges)
            sums, abs_sums = panel_integrals(
                np.concatenate([left_edges, middles]), np.concatenate([middles, right_edges])
            )
            halves = sums[:count] + sums[count:]
            halves_abs = abs_sums[:count] + abs_sums[count:]
            scale = accepted_abs + halves_abs.sum()
            errors = np.abs(halves - whole)
            narrow = (right_edges - left_edges) <= MIN_RELATIVE_WIDTH * np.maximum(
                1.0, np.abs(middles)
            )
            converged = errors <= rtol * scale
            done = converged | narrow
            accepted += halves[done].sum()
            accepted_abs += halves_abs[done].sum()
            unresolved += errors[narrow & ~converged].sum()
            refine = ~done
            if not refine.any():
                break
            if 2 * refine.sum() > MAX_ACTIVE_PANELS or _level == MAX_LEVELS - 1:
                # Noise-limited (e.g. a float32 callable): accept the best estimate there is.
                accepted += halves[refine].sum()
                accepted_abs += halves_abs[refine].sum()
                unresolved += errors[refine].sum()
                break
            left_edges = np.concatenate([left_edges[refine], middles[refine]])
            right_edges = np.concatenate([middles[refine], right_edges[refine]])
            whole = np.concatenate([sums[:count][refine], sums[count:][refine]])
    except _NotFinite:
        return math.inf
    if unresolved > UNRESOLVED_RTOL * accepted_abs:
        return math.inf  # a singularity that bisection cannot resolve: not integrable
    largest_tail = float(np.max(np.abs(tails)))
    if largest_tail > 0.0:
        # In logs: the density at the bound, exp(-800), underflows float64.
        log_tail = math.log(largest_tail) - 0.5 * INTEGRATION_BOUND**2 - math.log(_SQRT_2PI)
        if log_tail > math.log(TAIL_RTOL * max(accepted_abs, 1e-300)):
            return math.inf  # the integrand has not decayed at the bound: divergent
    return float(accepted)


class _NotFinite(Exception):
    """The integrand returned inf or nan."""
