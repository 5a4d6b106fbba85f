"""Custom element-wise callables: checked to be element-wise, with a derivative by the
backend's autodiff or by finite differences."""

from __future__ import annotations

import functools
from typing import Any, Callable

import keras
import numpy as np

from keras_inits import backend
from keras_inits.activations.arguments import bind_kwargs
from keras_inits.activations.closed_forms import ArrayFunction, as_float
from keras_inits.activations.resolved import ResolvedActivation, cache_key

# Probe used to check that a custom callable is element-wise. Irregular values that avoid the
# usual kink locations (0, +-0.5, +-1, +-3, 6).
PROBE = np.array(
    [-3.71, -2.43, -1.87, -1.22, -0.73, -0.31, -0.12, 0.07,
     0.23, 0.41, 0.66, 0.94, 1.38, 1.91, 2.57, 4.13],
    dtype=np.float64,
)
_PROBE_PERMUTATION = np.array([5, 12, 0, 9, 15, 3, 7, 1, 14, 10, 2, 8, 13, 4, 11, 6])
_ELEMENTWISE_RTOL = 1e-5
_DERIVATIVE_AGREEMENT_RTOL = 1e-4
_DERIVATIVE_AGREEMENT_FRACTION = 0.75
_ONE_SIDED_SMOOTHNESS_FACTOR = 4.0


# --------------------------------------------------------------------------------------------
# Custom callables.
# --------------------------------------------------------------------------------------------


def callable_name(function: Any) -> str:
    name = getattr(function, "__name__", None)
    if isinstance(name, str):
        return name
    inner = getattr(function, "func", None)  # functools.partial
    if inner is not None:
        return callable_name(inner)
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


def resolve_callable(
    function: Callable, activation_kwargs: dict, received: Any, name: str | None = None
) -> ResolvedActivation:
    name = name or callable_name(function)
    bound = bind_kwargs(name, function, activation_kwargs, with_defaults=False)
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
        call_with(PROBE.copy(), as_tensor=False)
        as_tensor = False
    except Exception as numpy_error:
        try:
            call_with(PROBE.copy(), as_tensor=True)
        except Exception:
            if isinstance(numpy_error, TypeError) and activation_kwargs:
                raise numpy_error from None  # already names activation_kwargs
            raise ValueError(
                f"activation {name!r} could not be evaluated on a float64 array or on a "
                f"backend tensor: {type(numpy_error).__name__}: {numpy_error}. "
                f"Received: activation={received!r}"
            ) from numpy_error
        as_tensor = True
    call_raw = functools.partial(call_with, as_tensor=as_tensor)

    probe_output = _check_elementwise(call_raw, received)
    rtol = _dtype_rtol(probe_output)

    def phi(x: np.ndarray) -> np.ndarray:
        return as_float(call_raw(x))

    derivative = _choose_derivative(bound_function, phi, rtol)
    key = cache_key("callable", function, tuple(sorted(bound.items())))
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
    output = call_raw(PROBE.copy())
    if output.shape != PROBE.shape:
        raise ValueError(
            f"activation must be element-wise; it returned shape {output.shape} for an input "
            f"of shape {PROBE.shape}. Received: activation={received!r}"
        )
    reference = as_float(output)
    scale = float(np.nanmax(np.abs(reference), initial=0.0)) if reference.size else 0.0
    atol = _ELEMENTWISE_RTOL * max(scale, 1e-12)

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        a = as_float(a)
        return a.shape == b.shape and bool(
            np.allclose(a, b, rtol=_ELEMENTWISE_RTOL, atol=atol, equal_nan=True)
        )

    checks = (
        (PROBE[_PROBE_PERMUTATION], reference[_PROBE_PERMUTATION]),  # position-dependent
        (PROBE[:5], reference[:5]),  # depends on the other entries (mean, norm, softmax)
        (PROBE[9:10], reference[9:10]),
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
        x = as_float(x)
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
        by_tape = autodiff(PROBE)
    except Exception:
        return finite_difference
    by_difference = finite_difference(PROBE)
    tolerance = max(_DERIVATIVE_AGREEMENT_RTOL, 1e3 * rtol ** (4.0 / 5.0))
    if by_tape.shape != PROBE.shape:
        return finite_difference
    agree = np.isclose(by_tape, by_difference, rtol=tolerance, atol=tolerance)
    if np.mean(agree) >= _DERIVATIVE_AGREEMENT_FRACTION:
        return autodiff
    return finite_difference
