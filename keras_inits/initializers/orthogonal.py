"""The orthogonal family: `ScaledOrthogonal` (any kernel) and `DeltaOrthogonal` (convolutions).

Both draw a Haar-distributed (uniformly random) orthogonal matrix and scale it by a gain, He's
forward gain of the activation unless `gain` is given.

The matrix is built by Stewart's method (1980), the cheap half of a QR decomposition of a
Gaussian matrix. Householder QR of a Gaussian `A` (m x k, m >= k) reflects column `j` onto the
axis; by the rotation invariance of the Gaussian the column it reflects at step `j` is a fresh
Gaussian vector of dimension `m - j`, independent of the reflections before it. So the
reflectors are drawn directly, one Gaussian column each (the lower triangle of `A`), and only
the product `Q = H_0 H_1 ... H_{k-1}` is formed, with each column's sign set to the sign of
R's diagonal entry `beta_j = -sign(a_jj) ||A[j:, j]||` (without that correction Q's law
depends on the sign convention of the QR routine and is not Haar; Mezzadri 2007, "How to
generate random matrices from the classical compact groups"). The law is exactly that of
Keras's `Orthogonal` (the Q of `qr(A)` with the sign correction); the work is one of QR's two
halves. The product is accumulated in blocks of `HOUSEHOLDER_BLOCK` reflectors in the compact
WY form `H_s ... H_{s+b-1} = I - V T^{-1} V^T` with `T = triu(V^T V)` halved on its diagonal
(Joffrain et al. 2006, "Accumulating Householder transformations, revisited"), so nearly all
of the work is `keras.ops.matmul` on the backend.

With an int seed (or ``seed=None``) the Gaussian is drawn by NumPy's
``numpy.random.default_rng(seed)``, so an int seed gives the same kernel on every backend up to
float rounding; with a `keras.random.SeedGenerator` by `keras.random.normal` (which traces
under `tf.function` and `jax.jit`). NumPy's own linear algebra is not used: its multithreaded
OpenBLAS slowed by 10x to 50x on a loaded 2-core machine (a (2304, 256) QR took 5-9 s beside
TensorFlow's thread pool, 0.15 s with one thread). float16 and bfloat16 kernels are built in
float32 and cast; float64 kernels in float64.

Reference:
    - [Stewart, 1980](https://doi.org/10.1137/0717034), "The efficient generation of random
      orthogonal matrices with an application to condition estimators".
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import keras
import numpy as np
from keras import ops

from keras_inits import _sampling
from keras_inits.initializers.base import (
    Activation,
    ActivationInitializer,
    Seed,
    check_positive,
    check_representable,
    standardize_call,
)
from keras_inits.initializers.configs import activation_initializer_config
from keras_inits.initializers.structured import at_centre_tap

__all__ = ["DeltaOrthogonal", "ScaledOrthogonal"]

#: Kernel ranks of Conv1D, Conv2D and Conv3D (channels last: `(*spatial, in, out)`).
CONVOLUTION_RANKS = (3, 4, 5)
#: Smallest kernel rank `ScaledOrthogonal` takes: a matrix.
MATRIX_RANK = 2
#: Householder reflectors accumulated per matrix product (measured at 4096 x 4096: 256 is
#: the fastest of 64/128/256 on jax, within 10% of the fastest on tensorflow and torch).
HOUSEHOLDER_BLOCK = 256


def orthogonal_matrix(rows: int, cols: int, dtype: str, seed: Any, gain: float = 1.0):
    """`gain` times a Haar-distributed `(rows, cols)` matrix with orthonormal columns or rows.

    The smaller side is orthonormal: `W^T W = gain^2 I` if `rows >= cols`, else
    `W W^T = gain^2 I`. Drawn and built in float32 (float64 for float64) by Stewart's method
    (see the module docstring), then cast to `dtype`.

    Examples:

    >>> matrix = keras.ops.convert_to_numpy(orthogonal_matrix(4, 3, "float32", seed=0))
    >>> bool(np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-6))
    True

    Args:
        rows: Number of rows (> 0).
        cols: Number of columns (> 0).
        dtype: The dtype of the result (a float dtype name).
        seed: An int (NumPy's draw, the same kernel on every backend to rounding) or a
            `keras.random.SeedGenerator` (the backend's draw).
        gain: The factor every singular value gets.

    Returns:
        A backend tensor of `dtype`.
    """
    tall = max(rows, cols)
    short = min(rows, cols)
    work_dtype = _sampling.compute_dtype(dtype)
    matrix = haar_columns(_gaussian(tall, short, work_dtype, seed)) * gain
    if rows < cols:
        matrix = ops.transpose(matrix)
    if keras.backend.standardize_dtype(matrix.dtype) == dtype:
        return matrix
    return ops.cast(matrix, dtype)


def haar_columns(gaussian):
    """The Haar-distributed `(m, k)` matrix with orthonormal columns that a Gaussian `(m, k)` gives.

    Column `j`'s reflector is built from `x = gaussian[j:, j]` as LAPACK's ``larfg`` does:
    `beta = -sign(x_0) ||x||`, `v = x / (x_0 - beta)` (so `v_0 = 1`) and `H_j = I - 2 v v^T /
    (v^T v)`, which maps `x` to `beta e_0`. The result is `H_0 ... H_{k-1}` applied to the first
    `k` columns of the identity, column `j` times `sign(beta_j)`: the sign-corrected Q of a QR
    decomposition, in law (Stewart 1980). The entries above the diagonal are not read.

    Args:
        gaussian: A backend tensor `(m, k)`, `m >= k`, of i.i.d. N(0, 1) values.

    Returns:
        A backend tensor `(m, k)` of the same dtype with `Q^T Q = I`.
    """
    rows, cols = gaussian.shape
    dtype = gaussian.dtype
    heads = ops.diagonal(gaussian)
    below = ops.tril(gaussian, -1)
    norms = ops.sqrt(heads * heads + ops.sum(below * below, axis=0))
    head_signs = ops.cast(ops.where(heads < 0, -1.0, 1.0), dtype)
    betas = -head_signs * norms
    reflectors = below / (heads - betas) + ops.eye(rows, cols, dtype=dtype)
    product = None
    for start in reversed(range(0, cols, HOUSEHOLDER_BLOCK)):
        stop = min(start + HOUSEHOLDER_BLOCK, cols)
        product = _apply_block(reflectors[start:, start:stop], product, cols - stop)
    return product * -head_signs


def _apply_block(block, product, later_columns: int):
    """`H_s ... H_{s+b-1}` (the reflectors `block`, `(m - s, b)`) times the identity bordered
    by `product`, the `(m - s - b, later_columns)` product of the later reflectors.

    The later reflectors act on rows past `s + b` only, so before this block the trailing
    `(m - s, k - s)` part of Q is `[[I_b, 0], [0, product]]`.
    """
    dtype = block.dtype
    rows, width = block.shape
    gram = ops.matmul(ops.transpose(block), block)
    factor = ops.triu(gram, 1) + ops.diag(ops.diagonal(gram) / 2)
    if product is None:  # the last block: V^T I[:, :b] is the transpose of V's first b rows
        projection = ops.solve_triangular(factor, ops.transpose(block[:width]), lower=False)
        return ops.eye(rows, width, dtype=dtype) - ops.matmul(block, projection)
    top = ops.concatenate([ops.eye(width, dtype=dtype), ops.zeros((width, later_columns), dtype)], axis=1)
    bottom = ops.concatenate([ops.zeros((rows - width, width), dtype), product], axis=1)
    bordered = ops.concatenate([top, bottom], axis=0)
    projection = ops.solve_triangular(factor, ops.matmul(ops.transpose(block), bordered), lower=False)
    return bordered - ops.matmul(block, projection)


def _gaussian(rows: int, cols: int, work_dtype: str, seed: Any):
    """Standard normal `(rows, cols)` values: NumPy's for an int seed, the backend's for a
    `keras.random.SeedGenerator`."""
    if isinstance(seed, keras.random.SeedGenerator):
        return keras.random.normal((rows, cols), dtype=work_dtype, seed=seed)
    values = np.random.default_rng(seed).standard_normal((rows, cols), dtype=work_dtype)
    return ops.convert_to_tensor(values)


class _ScaledOrthogonalBase(ActivationInitializer):
    """What both orthogonal initializers share: the gain, the config, safe loading."""

    def __init__(
        self,
        activation: Activation = "relu",
        gain: float | None = None,
        seed: Seed = None,
        activation_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if gain is not None:
            gain = check_positive("gain", gain)
        super().__init__(activation, activation_kwargs, seed)
        self._given_gain = gain
        self.gain = gain if gain is not None else self._gain("forward")

    def _check_representable(self, dtype: str, shape: tuple[int, ...]) -> None:
        """An orthogonal matrix's entries are at most 1 in magnitude: `gain` bounds the kernel.

        Raises:
            ValueError: If `gain` (or the activation's gain) overflows `dtype`.
        """
        if self._given_gain is not None:
            check_representable("gain", self._given_gain, self.gain, dtype, shape)
        else:
            check_representable("activation", self.activation, self.gain, dtype, shape)

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """Rebuilds the initializer from a config that `get_config` wrote.

        The activation must be a Keras activation or a registered object and its keyword
        arguments plain values (see `keras_inits.initializers.configs`): a model file cannot
        have any other function called while it loads.

        Raises:
            ValueError: If the activation, `activation_kwargs`, `gain` or the seed is not one
                of the allowed forms (nothing is called or imported before).
        """
        return cls(**activation_initializer_config(config))

    def get_config(self) -> dict[str, Any]:
        return {
            **self._activation_config(),
            "gain": self._given_gain,
            "seed": self._seed_config(),
        }


@keras.saving.register_keras_serializable(package="keras_inits")
class ScaledOrthogonal(_ScaledOrthogonalBase):
    """Orthogonal initializer whose gain comes from the activation that follows the layer.

    The kernel, flattened to the matrix `W` of shape `(prod(shape[:-1]), shape[-1])` (a
    convolution kernel `(*k, in, out)` over its receptive field, as Keras's `Orthogonal` does),
    is `g` times a Haar-distributed orthogonal matrix:

        W^T W = g^2 I   if rows >= cols,      W W^T = g^2 I   otherwise,

    with `g = 1 / sqrt(E[phi(z)^2])`, z ~ N(0, 1), He's forward gain of `activation` (see
    `keras_inits.gains.gain`; sqrt(2) for ReLU), unless `gain` is given. Every singular value
    of `W` is `g`, so a linear network built with it is an exact isometry up to `g` per layer
    and keeps the whole spectrum of its input-output Jacobian at 1 with a linear activation
    (dynamical isometry; with tanh near its criticality, Pennington et al. 2017).

    `W` has the law of the Q of the QR decomposition of a Gaussian matrix with the sign
    correction by R's diagonal (Haar), built by Stewart's method at half QR's cost (see the
    module docstring). With an int seed the Gaussian comes from
    ``numpy.random.default_rng(seed)``, so the kernel is the same on every backend up to float
    rounding; with a `keras.random.SeedGenerator`, from `keras.random.normal`. float16 and
    bfloat16 kernels are built in float32 and cast.

    Examples:

    >>> # Standalone usage:
    >>> initializer = ScaledOrthogonal("tanh", seed=0)
    >>> values = initializer(shape=(256, 128))

    >>> # Usage in a Keras layer:
    >>> initializer = ScaledOrthogonal("relu")
    >>> layer = keras.layers.Dense(3, kernel_initializer=initializer)

    Args:
        activation: The activation that follows the layer: a Keras name, a
            `keras.activations` function, an element-wise callable (registered to be saved) or
            `None` (linear, g = 1). Only recorded when `gain` is given.
        gain: The gain `g` (> 0); `None` takes He's forward gain of `activation`.
        seed: An int in [0, 2**63) (the same values on every call, on every backend up to
            rounding, and after `from_config`), a `keras.random.SeedGenerator` (new values on every call) or
            `None` (new values on every call, so one instance can be shared by many layers).
        activation_kwargs: Keyword arguments of the activation, e.g.
            `{"negative_slope": 0.1}` for `"leaky_relu"`.

    Raises:
        ValueError: If `gain` is not a positive finite number, `seed` is not one of the forms
            above or `activation` is unknown or not element-wise; at call time, if the shape
            has rank below 2 or the gain overflows the dtype.

    Reference:
        - [Stewart, 1980](https://doi.org/10.1137/0717034), "The efficient generation of
          random orthogonal matrices with an application to condition estimators".
        - [Saxe et al., 2014](https://arxiv.org/abs/1312.6120), "Exact solutions to the
          nonlinear dynamics of learning in deep linear neural networks".
        - [Pennington et al., 2017](https://arxiv.org/abs/1711.04735), "Resurrecting the
          sigmoid in deep learning through dynamical isometry: theory and practice".
    """

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        if len(shape) < MATRIX_RANK:
            raise ValueError(
                "ScaledOrthogonal needs a kernel of rank 2 or more (a matrix, or a convolution "
                f"kernel flattened to (prod(shape[:-1]), shape[-1])). Received: shape={shape!r}"
            )
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        self._check_representable(dtype, shape)
        rows = math.prod(shape[:-1])
        matrix = orthogonal_matrix(rows, shape[-1], dtype, self._seed_for_call(), self.gain)
        return ops.reshape(matrix, shape)


@keras.saving.register_keras_serializable(package="keras_inits")
class DeltaOrthogonal(_ScaledOrthogonalBase):
    """Delta-orthogonal initializer for Conv1D/2D/3D kernels (Xiao et al. 2018).

    A channels-last kernel `W` of shape `(*k, in, out)` is zero everywhere except at the tap
    `c = ((k_1 - 1) // 2, ..., (k_d - 1) // 2)` that `padding="same"` aligns with the output
    (the tap `Dirac` uses; TensorFlow pads the extra element of an even kernel at the end),
    which holds `g` times a Haar-distributed `(in, out)` matrix `H` with orthonormal rows:

        W[c] = g H,   H H^T = I_in,   W[t] = 0 for every other tap t,

    with `g` He's forward gain of `activation` unless `gain` is given. A stride-1 convolution
    with `padding="same"` then maps the channel vector at every position by `g H`:
    `||conv(x)[p]|| = g ||x[p]||` at every position `p`, so a deep plain CNN of such layers
    starts as an isometry of its input times `g` per layer. This needs `out >= in`: with fewer
    outputs than inputs, `H` cannot keep the norm of every input.

    Examples:

    >>> # Standalone usage:
    >>> initializer = DeltaOrthogonal("tanh", seed=0)
    >>> values = initializer(shape=(3, 3, 16, 32))

    >>> # Usage in a Keras layer:
    >>> initializer = DeltaOrthogonal(gain=1.0)
    >>> layer = keras.layers.Conv2D(16, 3, padding="same", kernel_initializer=initializer)

    Args:
        activation: The activation that follows the layer (as in `ScaledOrthogonal`). Only
            recorded when `gain` is given.
        gain: The gain `g` (> 0); `None` takes He's forward gain of `activation`.
        seed: An int, a `keras.random.SeedGenerator` or `None`, as in `ScaledOrthogonal`.
        activation_kwargs: Keyword arguments of the activation.

    Raises:
        ValueError: If `gain` is not a positive finite number, `seed` is not one of the forms
            of `ScaledOrthogonal` or `activation` is unknown or not element-wise; at call time,
            if the shape is not of rank 3 to 5, has fewer output than input channels, or the
            gain overflows the dtype.

    Reference:
        - [Xiao et al., 2018](https://arxiv.org/abs/1806.05393), "Dynamical Isometry and a
          Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural
          Networks".
        - [Saxe et al., 2014](https://arxiv.org/abs/1312.6120), "Exact solutions to the
          nonlinear dynamics of learning in deep linear neural networks".
    """

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        if len(shape) not in CONVOLUTION_RANKS:
            raise ValueError(
                "DeltaOrthogonal needs a channels-last Conv1D/2D/3D kernel (*spatial, in, out) "
                f"of rank 3 to 5. Received: shape={shape!r}"
            )
        inputs, outputs = shape[-2], shape[-1]
        if outputs < inputs:
            raise ValueError(
                "DeltaOrthogonal needs at least as many output channels as input channels: "
                "only then can the centre tap be an isometry of every input (with fewer "
                f"outputs some inputs map to zero). Received: shape={shape!r} "
                f"(in={inputs}, out={outputs})"
            )
        if math.prod(shape) == 0:
            return ops.zeros(shape, dtype=dtype)
        self._check_representable(dtype, shape)
        matrix = orthogonal_matrix(inputs, outputs, dtype, self._seed_for_call(), self.gain)
        return at_centre_tap(matrix, shape)

