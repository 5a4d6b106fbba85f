"""Gains of element-wise activations and the slope of their variance map.

For a layer ``h = W x`` with zero-mean i.i.d. weights, ``Var(h) = fan_in * Var(W) * E[x^2]``. With
``x = phi(z)`` and ``z ~ N(0, 1)`` the variance is preserved by ``Var(W) = g_f^2 / fan_in`` in the
forward pass and by ``Var(W) = g_b^2 / fan_out`` in the backward pass, where

    g_f = 1 / sqrt(E[phi(z)^2])        (forward gain)
    g_b = 1 / sqrt(E[phi'(z)^2])       (backward gain)

Expectations use closed forms where they exist (linear, relu, leaky_relu, selu forward,
exponential) and otherwise adaptive composite Gauss-Legendre quadrature against the normal density,
split at the activation's kinks (plain Gauss-Hermite misses 1e-5 on kinked activations).

The edge of chaos (Poole et al. 2016, Schoenholz et al. 2017) uses the same integrals: with
weights ``N(0, weight_std^2 / N)`` and biases ``N(0, bias_std^2)`` the pre-activation variance
follows the length map to its fixed point ``q*`` (:func:`length_fixed_point`), the cosine
between two inputs follows the correlation map (:func:`correlation_map`), and its slope at
``c = 1``, ``chi_1``, separates order (< 1) from chaos (> 1): :func:`edge_of_chaos` finds the
weight std at which ``chi_1 = 1``, :func:`depth_scale` the depth over which correlations
are forgotten.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal

import numpy as np

from keras_inits._checks import check_number, check_positive
from keras_inits.activations import ResolvedActivation, closed_form_moment, resolve_activation

__all__ = [
    "Criticality",
    "correlation_map",
    "depth_scale",
    "edge_of_chaos",
    "gain",
    "length_fixed_point",
    "variance_slope",
]

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


# --------------------------------------------------------------------------------------------
# The edge of chaos: length map, correlation map, criticality, depth scale.
# --------------------------------------------------------------------------------------------

# The length map's fixed point is searched from q = 1 by steps of this factor.
LENGTH_SEARCH_FACTOR = 4.0
# No fixed point below this variance (pre-activation std 1e4): the length map diverges.
LENGTH_LIMIT = 1e8
# Below this variance a contracting length map with G(0) = 0 is taken to reach q* = 0: there
# G(q) / q - 1 is O(q) for smooth activations and drowns in the quadrature's 1e-13.
LENGTH_FLOOR = 1e-12
# q* = 0 is evaluated as the limit q -> 0+ at this variance (kinked activations: corrections
# of order sqrt(q) = 1e-15).
LIMIT_VARIANCE = 1e-30
# |G(q) / q - 1| below this at q = 1: every q is a fixed point (a neutral map, relu at sqrt(2)).
NEUTRAL_RTOL = 1e-12
# Root finding: relative tolerance on log(q), log(weight_std) and c; iteration budget.
ROOT_XTOL = 1e-15
ROOT_MAX_ITERATIONS = 200
# The critical weight std is searched from 1 by doubling or halving, within these bounds.
WEIGHT_STD_MIN = 1e-3
WEIGHT_STD_MAX = 1e3
# The q* = 0 branch's exact root may lie this far above the bracket: chi_1 - 1 is O(q*^2)
# just above it (tanh), below the quadrature's resolution.
LIMIT_ROOT_RTOL = 1e-6
# A root of chi_1 - 1 further from 0 than this, or with a divergent length map just above it
# (chi_1 -> 1 only as q* -> inf: softplus), is a jump, not a critical point.
CRITICAL_ATOL = 1e-10
# |chi_1 - 1| below this: at criticality, the correlation depth scale is infinite.
CRITICAL_DEPTH_ATOL = 1e-12
# The chaotic fixed point c* < 1 is bracketed from c = 1 - step for these steps.
CORRELATION_STEPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
# Outer tolerance of the two-dimensional Gaussian integrals.
CORRELATION_RTOL = 1e-12
# Inner panel edges, in standard deviations of the inner normal variable (kinks are added).
_INNER_EDGES = np.unique(
    np.concatenate(
        [np.linspace(-10.0, 10.0, 81), [-40.0, -30.0, -20.0, -14.0, 14.0, 20.0, 30.0, 40.0]]
    )
)
# Positive homogeneity phi(s x) = s phi(x) is tested at these scales and points.
HOMOGENEITY_SCALES = (0.25, 4.0)
_HOMOGENEITY_POINTS = np.concatenate([-np.logspace(-3.0, 3.0, 13), np.logspace(-3.0, 3.0, 13)])
# Relative agreement that counts as homogeneous, at least this many ulps of phi's precision.
HOMOGENEITY_ULPS = 100.0
HOMOGENEITY_RTOL = 1e-12


@dataclasses.dataclass(frozen=True)
class Criticality:
    """The edge of chaos of an activation at a bias std (from :func:`edge_of_chaos`).

    Attributes:
        weight_std: ``sigma_w``: weights ``N(0, sigma_w^2 / fan_in)`` make ``chi_1 = 1``.
        bias_std: ``sigma_b``: biases ``N(0, sigma_b^2)``.
        length_fixed_point: ``q*``, the pre-activation variance the length map settles at
            (``0.0``: it decays to 0; for relu at ``bias_std = 0`` every ``q`` is a fixed point
            and ``1.0``, the unit input, is reported).
        chi_1: ``sigma_w^2 E[phi'(sqrt(q*) z)^2]`` at ``weight_std``: 1 to about 1e-12.
        length_depth_scale: ``xi_q = -1 / ln(chi_q)``, the depth over which the variance settles
            at ``q*`` (``chi_q`` the slope of the length map at ``q*``; ``math.inf`` when the map
            is neutral there, as for relu or for tanh at ``bias_std = 0``). The correlation
            depth scale is ``math.inf`` at criticality: see :func:`depth_scale`.
    """

    weight_std: float
    bias_std: float
    length_fixed_point: float
    chi_1: float
    length_depth_scale: float


def length_fixed_point(
    activation: str | Callable | None,
    weight_std: float,
    bias_std: float = 0.0,
    **activation_kwargs: Any,
) -> float:
    """Returns ``q*``, the fixed point of the length map of a deep random network.

    With weights ``N(0, sigma_w^2 / N)``, biases ``N(0, sigma_b^2)`` and ``z ~ N(0, 1)``, the
    variance of a pre-activation follows the length map

        q^l = G(q^{l-1}) = sigma_w^2 E[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2

    and ``q*`` is the fixed point it reaches from a unit-variance input (``q^0 = 1``): the
    sign change of ``G(q) - q`` nearest to ``q = 1``, searched by factors of 4 and refined by
    bracketed root finding. It is ``0.0`` when the map contracts to 0 (``phi(0) = 0``,
    ``sigma_b = 0``: tanh with ``sigma_w <= 1``; fixed points below 1e-12 count as 0), and
    ``1.0`` when every ``q`` is a fixed point
    (relu at ``sigma_w = sqrt(2)``, ``sigma_b = 0``).

    Examples:

    >>> length_fixed_point("relu", weight_std=1.0, bias_std=1.0)  # q = q / 2 + 1
    2.0
    >>> length_fixed_point("tanh", weight_std=0.9)
    0.0
    >>> round(length_fixed_point("tanh", weight_std=1.5, bias_std=0.1), 4)
    0.8133

    Args:
        activation: As in :func:`gain`: a Keras activation name, a Keras activation, ``None``
            (linear) or any element-wise callable.
        weight_std: ``sigma_w > 0``.
        bias_std: ``sigma_b >= 0``.
        **activation_kwargs: Keyword arguments of the activation.

    Returns:
        ``q*``, a float >= 0.

    Raises:
        ValueError: If ``weight_std <= 0``, ``bias_std < 0``, the activation is unknown or not
            element-wise, or the length map has no fixed point below 1e8 (it diverges: e.g. relu
            with ``weight_std > sqrt(2)``).
        TypeError: If an argument has a wrong type.

    Reference:
        - Poole et al., 2016, "Exponential expressivity in deep neural networks through
          transient chaos", https://arxiv.org/abs/1606.05340
        - Schoenholz et al., 2017, "Deep Information Propagation", ICLR,
          https://arxiv.org/abs/1611.01232
    """
    phi = resolve_activation(activation, activation_kwargs)
    sigma_w, sigma_b = _check_stds(weight_std, bias_std)
    q_star = _fixed_point(phi, sigma_w, sigma_b)
    if q_star is None:
        raise ValueError(_divergence_message(phi, sigma_w, sigma_b))
    return q_star


def correlation_map(
    activation: str | Callable | None,
    c: float | np.ndarray,
    weight_std: float,
    bias_std: float = 0.0,
    **activation_kwargs: Any,
) -> float | np.ndarray:
    """Returns one step of the correlation map at the length fixed point ``q*``.

    Two inputs whose pre-activations have variance ``q*`` and correlation ``c`` reach the next
    layer with correlation

        C(c) = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q*,
        u1 = sqrt(q*) z1,   u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2),   z1, z2 ~ N(0, 1),

    with ``q* = sigma_w^2 E[phi(u1)^2] + sigma_b^2`` (the denominator used, so ``C(1) = 1``
    exactly). At ``q* = 0`` the limit ``q -> 0+`` is returned. ``C`` is increasing in ``c``;
    its slope at ``c = 1`` is ``chi_1 = sigma_w^2 E[phi'(u1)^2]``. The double integral is an
    adaptive Gauss-Legendre quadrature over ``z1`` of a composite Gauss-Legendre rule over
    ``u2`` split at the kinks of ``phi`` (relative accuracy about 1e-10).

    Examples:

    >>> round(correlation_map("relu", 0.0, weight_std=2**0.5), 6)  # 1 / pi
    0.31831
    >>> correlation_map("tanh", 1.0, weight_std=1.5, bias_std=0.1)
    1.0

    Args:
        activation: As in :func:`gain`.
        c: The correlation in ``[-1, 1]``, a number or an array of them.
        weight_std: ``sigma_w > 0``.
        bias_std: ``sigma_b >= 0``.
        **activation_kwargs: Keyword arguments of the activation.

    Returns:
        ``C(c)``: a float, or a float64 array of the shape of ``c``.

    Raises:
        ValueError: If ``c`` is outside ``[-1, 1]``, or as in :func:`length_fixed_point`.
        TypeError: If an argument has a wrong type.

    Reference:
        - Poole et al., 2016, https://arxiv.org/abs/1606.05340
        - Schoenholz et al., 2017, https://arxiv.org/abs/1611.01232
    """
    values = _check_correlations(c)
    phi = resolve_activation(activation, activation_kwargs)
    sigma_w, sigma_b = _check_stds(weight_std, bias_std)
    q = _evaluation_variance(phi, sigma_w, sigma_b)
    mapped = np.array(
        [_correlation_step(phi, q, value, sigma_w, sigma_b) for value in values.ravel()]
    )
    if isinstance(c, np.ndarray):
        return mapped.reshape(values.shape)
    return float(mapped[0])


def edge_of_chaos(
    activation: str | Callable | None = "tanh",
    bias_std: float = 0.0,
    **activation_kwargs: Any,
) -> Criticality:
    """Returns the weight std at which a deep random network is critical (``chi_1 = 1``).

    Mean-field theory of deep random networks (weights ``N(0, sigma_w^2 / N)``, biases
    ``N(0, sigma_b^2)``): at the length fixed point ``q*`` (:func:`length_fixed_point`)

        chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2],   z ~ N(0, 1),

    is the slope of the correlation map at ``c = 1``. Below 1 (ordered) all inputs converge
    to one direction within ``-1 / ln(chi_1)`` layers; above 1 (chaotic) nearby inputs
    decorrelate; at 1 correlations and gradients propagate over a depth that diverges, which
    is where very deep plain networks train (Schoenholz et al. 2017; Xiao et al. 2018 with
    orthogonal kernels). The root of ``chi_1(sigma_w) - 1`` is bracketed from
    ``sigma_w = 1`` by doubling or halving and refined in ``log(sigma_w)``.

    For a positively homogeneous activation (relu, leaky_relu, linear) ``chi_1 =
    sigma_w^2 E[phi'(z)^2]`` does not depend on ``q``: critical at ``sigma_w = g_b`` (relu:
    ``sqrt(2)``) where the length map is neutral, so a critical point exists only at
    ``bias_std = 0``. For a layer with ``fan_in`` inputs per unit, draw the weights with std
    ``weight_std / sqrt(fan_in)`` (``keras.initializers.VarianceScaling(scale=weight_std**2,
    mode="fan_in", distribution="untruncated_normal")``, or an orthogonal kernel with gain
    ``weight_std``) and the biases from ``keras.initializers.RandomNormal(stddev=bias_std)``.

    Examples:

    >>> round(edge_of_chaos("relu").weight_std, 6)
    1.414214
    >>> round(edge_of_chaos("tanh").weight_std, 6)
    1.0
    >>> round(edge_of_chaos("tanh", bias_std=0.3).weight_std, 4)
    1.3956

    Args:
        activation: As in :func:`gain`.
        bias_std: ``sigma_b >= 0``.
        **activation_kwargs: Keyword arguments of the activation.

    Returns:
        A :class:`Criticality`: ``weight_std``, ``bias_std``, ``length_fixed_point`` (``q*``),
        ``chi_1`` and ``length_depth_scale``.

    Raises:
        ValueError: If ``bias_std < 0``, the activation is unknown or not element-wise, or it
            has no critical point at this ``bias_std`` (the message says why: relu with
            ``bias_std > 0`` reaches ``chi_1 = 1`` only as ``q* -> inf``; gelu at
            ``bias_std = 0`` jumps from ``chi_1 <= 1/2`` to a divergent length map).
        TypeError: If an argument has a wrong type.

    Reference:
        - Poole et al., 2016, "Exponential expressivity in deep neural networks through
          transient chaos", https://arxiv.org/abs/1606.05340
        - Schoenholz et al., 2017, "Deep Information Propagation", ICLR,
          https://arxiv.org/abs/1611.01232
    """
    phi = resolve_activation(activation, activation_kwargs)
    sigma_b = check_number("bias_std", bias_std, minimum=0.0)
    if _is_homogeneous(phi):
        sigma_w = _homogeneous_criticality(phi, sigma_b)
    else:
        sigma_w = _critical_weight_std(phi, sigma_b)
    q_star = _fixed_point(phi, sigma_w, sigma_b)
    q = max(q_star, LIMIT_VARIANCE)
    return Criticality(
        weight_std=sigma_w,
        bias_std=sigma_b,
        length_fixed_point=q_star,
        chi_1=_chi_1(phi, q, sigma_w),
        length_depth_scale=_depth(_length_slope(phi, q, sigma_w)),
    )


def depth_scale(
    activation: str | Callable | None,
    weight_std: float,
    bias_std: float = 0.0,
    **activation_kwargs: Any,
) -> float:
    """Returns ``xi_c``, the depth over which a deep random network forgets correlations.

    Near the stable fixed point ``c*`` of the correlation map (:func:`correlation_map`), the
    distance to it shrinks like ``exp(-l / xi_c)`` with depth ``l``, where

        xi_c = -1 / ln(chi_c),   chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]  at  c = c*

    (``u1, u2`` as in :func:`correlation_map`). In the ordered phase (``chi_1 < 1``)
    ``c* = 1`` and ``chi_c = chi_1``; in the chaotic phase ``c* < 1`` is found by bracketed
    root finding. At criticality (``chi_1 = 1`` to 1e-12) the depth scale diverges and
    ``math.inf`` is returned: Schoenholz et al. 2017 find that networks train up to a depth of
    about ``6 xi_c``.

    Examples:

    >>> round(depth_scale("tanh", weight_std=0.5), 4)  # -1 / ln(0.25)
    0.7213
    >>> depth_scale("tanh", weight_std=1.0)
    inf

    Args:
        activation: As in :func:`gain`.
        weight_std: ``sigma_w > 0``.
        bias_std: ``sigma_b >= 0``.
        **activation_kwargs: Keyword arguments of the activation.

    Returns:
        ``xi_c``, a positive float or ``math.inf``.

    Raises:
        ValueError: As in :func:`length_fixed_point`.
        TypeError: If an argument has a wrong type.

    Reference:
        - Schoenholz et al., 2017, "Deep Information Propagation", ICLR,
          https://arxiv.org/abs/1611.01232
        - Poole et al., 2016, https://arxiv.org/abs/1606.05340
    """
    phi = resolve_activation(activation, activation_kwargs)
    sigma_w, sigma_b = _check_stds(weight_std, bias_std)
    q = _evaluation_variance(phi, sigma_w, sigma_b)
    chi_1 = _chi_1(phi, q, sigma_w)
    if abs(chi_1 - 1.0) <= CRITICAL_DEPTH_ATOL:
        return math.inf
    if chi_1 < 1.0:
        return _depth(chi_1)
    c_star = _chaotic_fixed_point(phi, q, sigma_w, sigma_b)
    derivative = phi.derivative
    scale = _scaled_expectation(phi, q, "derivative_squared")
    chi_c = sigma_w**2 * _bivariate_expectation(derivative, derivative, q, c_star, phi, scale)
    return _depth(chi_c)


# Checks and messages.


def _check_stds(weight_std: Any, bias_std: Any) -> tuple[float, float]:
    return check_positive("weight_std", weight_std), check_number("bias_std", bias_std, minimum=0.0)


def _check_correlations(c: Any) -> np.ndarray:
    if isinstance(c, np.ndarray):
        if c.dtype.kind not in "iuf" or not np.all(np.isfinite(c)) or np.any(np.abs(c) > 1.0):
            raise ValueError(
                f"Argument `c` must hold finite numbers in [-1, 1]. Received: c={c!r}"
            )
        return c.astype(np.float64)
    return np.array([check_number("c", c, minimum=-1.0, maximum=1.0)])


def _divergence_message(phi: ResolvedActivation, sigma_w: float, sigma_b: float) -> str:
    return (
        "The length map q -> weight_std^2 E[phi(sqrt(q) z)^2] + bias_std^2 has no fixed point "
        f"below {LENGTH_LIMIT:g}: the pre-activation variance grows without bound with depth "
        "(weight_std too large for this activation). "
        f"Received: weight_std={sigma_w!r}, bias_std={sigma_b!r}, {phi.describe()}"
    )


# Homogeneous activations: phi(s x) = s phi(x) for s > 0.


def _is_homogeneous(phi: ResolvedActivation) -> bool:
    if phi.key is None:
        return _is_homogeneous_uncached(phi)
    return _is_homogeneous_cached(phi)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _is_homogeneous_cached(phi: ResolvedActivation) -> bool:
    return _is_homogeneous_uncached(phi)


def _is_homogeneous_uncached(phi: ResolvedActivation) -> bool:
    if any(kink != 0.0 for kink in phi.kinks):
        return False
    rtol = max(HOMOGENEITY_RTOL, HOMOGENEITY_ULPS * phi.rtol)
    with np.errstate(over="ignore", invalid="ignore"):
        base = phi(_HOMOGENEITY_POINTS)
        for scale in HOMOGENEITY_SCALES:
            scaled = phi(scale * _HOMOGENEITY_POINTS)
            if not np.allclose(scaled, scale * base, rtol=rtol, atol=0.0):
                return False
    return True


def _homogeneous_criticality(phi: ResolvedActivation, sigma_b: float) -> float:
    backward = _expectation(phi, "derivative_squared")
    _check_moment(backward, phi, "backward")
    sigma_w = math.sqrt(1.0 / backward)
    if sigma_b > 0.0:
        raise ValueError(
            "This activation has no critical point at bias_std > 0: it is positively "
            "homogeneous (phi(s x) = s phi(x)), so chi_1 = weight_std^2 E[phi'(z)^2] does not "
            f"depend on q and equals 1 only at weight_std = {sigma_w:.6g}, where the length map "
            "q -> q + bias_std^2 has no fixed point (q* = inf). Use bias_std=0. "
            f"Received: {phi.describe()}, bias_std={sigma_b!r}"
        )
    return sigma_w


# The length map.


def _scaled_expectation(phi: ResolvedActivation, q: float, quantity: str) -> float:
    """E[...] of ``phi(sqrt(q) z)`` for z ~ N(0, 1)."""
    if phi.key is None:
        return _scaled_expectation_uncached(phi, q, quantity)
    return _scaled_expectation_cached(phi, q, quantity)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _scaled_expectation_cached(phi: ResolvedActivation, q: float, quantity: str) -> float:
    return _scaled_expectation_uncached(phi, q, quantity)


def _scaled_expectation_uncached(phi: ResolvedActivation, q: float, quantity: str) -> float:
    root = math.sqrt(q)
    if quantity == "phi_squared":
        integrand = lambda z: phi(root * z) ** 2
    elif quantity == "derivative_squared":
        integrand = lambda z: phi.derivative(root * z) ** 2
    else:  # "slope_numerator"
        integrand = lambda z: phi(root * z) ** 2 * (z * z - 1.0) / 2.0
    rtol = max(DEFAULT_RTOL, 30.0 * phi.rtol)
    kinks = tuple(kink / root for kink in phi.kinks)
    value = gaussian_expectation(integrand, kinks, rtol=rtol)
    if not math.isfinite(value):
        raise ValueError(
            f"The Gaussian expectation of the activation at variance q={q:.6g} is infinite or "
            f"undefined. Received: {phi.describe()}"
        )
    return value


def _length_excess(phi: ResolvedActivation, q: float, sigma_w: float, sigma_b: float) -> float:
    """G(q) - q."""
    return sigma_w**2 * _scaled_expectation(phi, q, "phi_squared") + sigma_b**2 - q


def _fixed_point(phi: ResolvedActivation, sigma_w: float, sigma_b: float) -> float | None:
    """q* reached from q = 1, or None when the length map diverges."""
    if _is_homogeneous(phi):
        return _homogeneous_fixed_point(phi, sigma_w, sigma_b)
    excess = _length_excess(phi, 1.0, sigma_w, sigma_b)
    if excess == 0.0:
        return 1.0
    if excess > 0.0:
        low = 1.0
        high = LENGTH_SEARCH_FACTOR
        while _length_excess(phi, high, sigma_w, sigma_b) > 0.0:
            if high > LENGTH_LIMIT:
                return None
            low = high
            high *= LENGTH_SEARCH_FACTOR
        root = _log_root(lambda q: _length_excess(phi, q, sigma_w, sigma_b), low, high)
        return root if root <= LENGTH_LIMIT else None
    at_zero = sigma_w**2 * float(phi(np.zeros(1))[0]) ** 2 + sigma_b**2
    high = 1.0
    low = high / LENGTH_SEARCH_FACTOR
    while _length_excess(phi, low, sigma_w, sigma_b) <= 0.0:
        high = low
        low /= LENGTH_SEARCH_FACTOR
        if low < LENGTH_FLOOR:
            if at_zero <= 0.0:
                return 0.0
            lower, upper = _bracketed_root(
                lambda q: at_zero if q == 0.0 else _length_excess(phi, q, sigma_w, sigma_b),
                0.0,
                low,
                at_zero,
                _length_excess(phi, low, sigma_w, sigma_b),
            )
            return (lower + upper) / 2.0
    return _log_root(lambda q: _length_excess(phi, q, sigma_w, sigma_b), low, high)


def _homogeneous_fixed_point(
    phi: ResolvedActivation, sigma_w: float, sigma_b: float
) -> float | None:
    ratio = sigma_w**2 * _expectation(phi, "phi_squared")
    if abs(ratio - 1.0) <= NEUTRAL_RTOL:
        return 1.0 if sigma_b == 0.0 else None
    if ratio > 1.0:
        return None
    return sigma_b**2 / (1.0 - ratio)


def _evaluation_variance(phi: ResolvedActivation, sigma_w: float, sigma_b: float) -> float:
    q_star = _fixed_point(phi, sigma_w, sigma_b)
    if q_star is None:
        raise ValueError(_divergence_message(phi, sigma_w, sigma_b))
    return max(q_star, LIMIT_VARIANCE)


def _chi_1(phi: ResolvedActivation, q: float, sigma_w: float) -> float:
    return sigma_w**2 * _scaled_expectation(phi, q, "derivative_squared")


def _length_slope(phi: ResolvedActivation, q: float, sigma_w: float) -> float:
    """G'(q) = sigma_w^2 E[phi(sqrt(q) z)^2 (z^2 - 1)] / (2 q) (integration by parts)."""
    return sigma_w**2 * _scaled_expectation(phi, q, "slope_numerator") / q


def _depth(slope: float) -> float:
    if slope >= 1.0 - CRITICAL_DEPTH_ATOL:
        return math.inf
    if slope <= 0.0:
        return 0.0
    return -1.0 / math.log(slope)


# Criticality.


def _critical_weight_std(phi: ResolvedActivation, sigma_b: float) -> float:
    def excess(log_w: float) -> float:
        sigma_w = math.exp(log_w)
        q_star = _fixed_point(phi, sigma_w, sigma_b)
        if q_star is None:
            return 1.0  # a divergent length map is on the chaotic side
        return _chi_1(phi, max(q_star, LIMIT_VARIANCE), sigma_w) - 1.0

    step = math.log(2.0)
    start = excess(0.0)
    if start == 0.0:
        return 1.0
    direction = 1.0 if start < 0.0 else -1.0
    previous, previous_value = 0.0, start
    current = direction * step
    current_value = excess(current)
    while (current_value < 0.0) == (start < 0.0):
        if not math.log(WEIGHT_STD_MIN) <= current <= math.log(WEIGHT_STD_MAX):
            raise ValueError(
                f"No critical point: chi_1 stays {'below' if start < 0 else 'above'} 1 for "
                f"weight_std in [{WEIGHT_STD_MIN:g}, {WEIGHT_STD_MAX:g}]. "
                f"Received: {phi.describe()}, bias_std={sigma_b!r}"
            )
        previous, previous_value = current, current_value
        current += direction * step
        current_value = excess(current)
    if direction > 0:
        bracket = (previous, current, previous_value, current_value)
    else:
        bracket = (current, previous, current_value, previous_value)
    lower, upper = _bracketed_root(excess, *bracket)
    sigma_w = _refine_limit_root(phi, math.exp(lower), math.exp(upper), sigma_b)
    q_star = _fixed_point(phi, sigma_w, sigma_b)
    crossing = _fixed_point(phi, math.exp(upper), sigma_b) is not None
    if q_star is None or not crossing or abs(excess(math.log(sigma_w))) > CRITICAL_ATOL:
        below = excess(lower) + 1.0
        raise ValueError(
            f"No critical point: chi_1 does not cross 1; it reaches {below:.10g} just below "
            f"weight_std = {math.exp(upper):.6g}, above which the length map has no finite "
            "fixed point (the pre-activation variance grows without bound). "
            f"Received: {phi.describe()}, bias_std={sigma_b!r}"
        )
    return sigma_w


def _refine_limit_root(
    phi: ResolvedActivation, lower: float, upper: float, sigma_b: float
) -> float:
    """The root in [lower, upper]; exact where chi_1 = sigma_w^2 phi'(0)^2 holds (q* = 0)."""
    if _fixed_point(phi, lower, sigma_b) == 0.0:
        limit = math.sqrt(1.0 / _scaled_expectation(phi, LIMIT_VARIANCE, "derivative_squared"))
        if limit <= upper * (1.0 + LIMIT_ROOT_RTOL) and _fixed_point(phi, limit, sigma_b) == 0.0:
            return limit
    candidates = [lower, upper]
    errors = []
    for sigma_w in candidates:
        q_star = _fixed_point(phi, sigma_w, sigma_b)
        if q_star is None:
            errors.append(math.inf)
        else:
            errors.append(abs(_chi_1(phi, max(q_star, LIMIT_VARIANCE), sigma_w) - 1.0))
    return candidates[int(np.argmin(errors))]


# The correlation map.


def _bivariate_expectation(
    first: Callable[[np.ndarray], np.ndarray],
    second: Callable[[np.ndarray], np.ndarray],
    q: float,
    c: float,
    phi: ResolvedActivation,
    scale: float,
) -> float:
    """E[first(u1) second(u2)], u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2).

    ``scale`` bounds ``|E[first(u1) second(u2)]|`` (Cauchy-Schwarz: the geometric mean of the
    second moments) and is added to the integrand, so the tolerance is relative to it: near
    ``c = 0`` the integral itself is 0 and a purely relative tolerance is never met.

    Outer: adaptive Gauss-Legendre over z1 (:func:`gaussian_expectation`). Inner, for every z1
    at once: E[second(a + b z2)] with a = sqrt(q) c z1, b = sqrt(q) sqrt(1 - c^2), by a fixed
    composite 16-point Gauss-Legendre rule on ``_INNER_EDGES`` (in units of b) split at the
    kinks of ``phi`` (fixed in u2, so they move with a in z2).
    """
    root = math.sqrt(q)
    spread = root * math.sqrt(max(0.0, 1.0 - c * c))
    kinks = np.array(phi.kinks, dtype=np.float64)

    def inner(z1: np.ndarray) -> np.ndarray:
        centre = root * c * z1
        if spread == 0.0:
            return second(centre)
        kink_edges = np.clip(
            (kinks[None, :] - centre[:, None]) / spread, -INTEGRATION_BOUND, INTEGRATION_BOUND
        )
        base_edges = np.broadcast_to(_INNER_EDGES, (len(z1), len(_INNER_EDGES)))
        edges = np.sort(
            np.concatenate([base_edges, kink_edges], axis=1),
            axis=1,
        )
        left, right = edges[:, :-1], edges[:, 1:]
        half_width = (right - left)[:, :, None] / 2.0
        nodes = (left + right)[:, :, None] / 2.0 + half_width * _LEGENDRE_NODES[None, None, :]
        values = second((centre[:, None, None] + spread * nodes).ravel()).reshape(nodes.shape)
        density = np.exp(-0.5 * nodes * nodes) / _SQRT_2PI
        weights = half_width * _LEGENDRE_WEIGHTS[None, None, :]
        return (values * density * weights).sum(axis=(1, 2))

    outer_kinks = [kink / root for kink in phi.kinks]
    if c != 0.0:
        outer_kinks += [kink / (root * c) for kink in phi.kinks]
    rtol = max(CORRELATION_RTOL, 30.0 * phi.rtol)
    value = (
        gaussian_expectation(
            lambda z1: first(root * z1) * inner(z1) + scale, tuple(outer_kinks), rtol=rtol
        )
        - scale
    )
    if not math.isfinite(value):
        raise ValueError(
            f"The correlation map's Gaussian integral is infinite or undefined at q={q:.6g}, "
            f"c={c:.6g}. Received: {phi.describe()}"
        )
    return value


def _correlation_step(
    phi: ResolvedActivation, q: float, c: float, sigma_w: float, sigma_b: float
) -> float:
    if c == 1.0:
        return 1.0
    second_moment = _scaled_expectation(phi, q, "phi_squared")
    covariance = sigma_w**2 * _bivariate_expectation(phi, phi, q, c, phi, second_moment)
    variance = sigma_w**2 * second_moment + sigma_b**2
    covariance += sigma_b**2
    return covariance / variance


def _chaotic_fixed_point(
    phi: ResolvedActivation, q: float, sigma_w: float, sigma_b: float
) -> float:
    """The stable fixed point c* < 1 of the correlation map when chi_1 > 1."""

    def excess(c: float) -> float:
        return _correlation_step(phi, q, c, sigma_w, sigma_b) - c

    # c = 1 (and, for an odd activation at bias_std = 0, c = -1) is an unstable fixed point:
    # bracket the stable one strictly inside (-1, 1).
    low, low_value = -1.0, excess(-1.0)
    for step in CORRELATION_STEPS:
        if low_value > 0.0:
            break
        low = -1.0 + step
        low_value = excess(low)
    for step in CORRELATION_STEPS:
        high = 1.0 - step
        high_value = excess(high)
        if high_value < 0.0 < low_value:
            lower, upper = _bracketed_root(excess, low, high, low_value, high_value)
            return (lower + upper) / 2.0
    raise ValueError(
        "The correlation map has no stable fixed point inside (-1, 1) although chi_1 > 1. "
        f"Received: {phi.describe()}, weight_std={sigma_w!r}, bias_std={sigma_b!r}"
    )


# Root finding (no SciPy at run time).


def _log_root(function: Callable[[float], float], low: float, high: float) -> float:
    """The root of ``function`` in [low, high] (0 < low < high), found in log space."""
    log_function = lambda t: function(math.exp(t))
    lower, upper = _bracketed_root(
        log_function, math.log(low), math.log(high), function(low), function(high)
    )
    return math.exp((lower + upper) / 2.0)


def _bracketed_root(
    function: Callable[[float], float],
    low: float,
    high: float,
    low_value: float,
    high_value: float,
) -> tuple[float, float]:
    """A bracket [lower, upper] of width ~1e-15 around a sign change of ``function``.

    The Illinois variant of regula falsi, with a bisection whenever a step shrinks the bracket
    by less than half (so a jump, not only a root, is bracketed in at most ~2 log2 steps).
    """
    if low_value == 0.0:
        return low, low
    if high_value == 0.0:
        return high, high
    side = 0
    for _ in range(ROOT_MAX_ITERATIONS):
        width = high - low
        if width <= ROOT_XTOL * max(1.0, abs(low), abs(high)):
            break
        point = high - high_value * (high - low) / (high_value - low_value)
        if not low < point < high:
            point = (low + high) / 2.0
        value = function(point)
        if value == 0.0:
            return point, point
        if (value < 0.0) == (low_value < 0.0):
            low, low_value = point, value
            if side == -1:
                high_value /= 2.0
            side = -1
        else:
            high, high_value = point, value
            if side == 1:
                low_value /= 2.0
            side = 1
        if high - low > width / 2.0:
            middle = (low + high) / 2.0
            middle_value = function(middle)
            if middle_value == 0.0:
                return middle, middle
            if (middle_value < 0.0) == (low_value < 0.0):
                low, low_value = middle, middle_value
            else:
                high, high_value = middle, middle_value
            side = 0
    return low, high
