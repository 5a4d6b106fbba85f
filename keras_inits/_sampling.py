"""Random draws behind the initializers, written with `keras.ops` / `keras.random` only.

Three samplers:

- `truncated_normal`: N(0, stddev^2) truncated at +-2 stddev, drawn without rejection as the
  inverse CDF of a uniform restricted to [Phi(-2), Phi(2)].
- `normal`, `uniform`: plain draws, made in float32 (float64 for float64) and cast, so that
  float16 / bfloat16 weights get the same law as float32 ones.
- `sparse_kernel`: a (fan_in, fan_out) matrix with exactly `k` non-zero N(0, stddev^2)
  entries in every column, the rows of each column being a uniformly random k-subset.

Up to 256 rows, the sparse sampler takes the top-k of uniform keys per column (uniform up
to ties between float32 keys, and cheap there). Beyond, it picks the k rows of a column as the images of 0, 1, 2, ... under a
per-column random bijection of [0, a*b) (a*b >= fan_in), keeping the first k images that fall
in [0, fan_in). The bijection is an alternating Feistel network on Z_a x Z_b (Black & Rogaway,
"Ciphers with arbitrary finite domains", 2002, scheme FE2) whose round functions are random
lookup tables, so each column costs O(k + a*b - fan_in) work instead of the O(fan_in) of a
top-k mask. Skipping out-of-range images replaces cycle walking: because a bijection never
repeats, the kept rows are distinct, and because a*b - fan_in < a, drawing
k + (a*b - fan_in) images always yields at least k in range, with static shapes (no loop, so
the sampler traces under `tf.function` and `jax.jit`).

Everything one call needs (Feistel tables and the non-zero values) comes from one
`keras.random.uniform` draw, split afterwards: an integer seed is one stateless stream in
Keras, and a `SeedGenerator` advances once per call.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_inits import backend

# erf(sqrt(2)) = 2 * Phi(2) - 1: the uniform range [-C, C] maps to z in [-2, 2].
# (keras_inits.backend.tensorflow repeats these two constants for its fast path.)
_ERF_SQRT2 = math.erf(math.sqrt(2.0))
_SQRT2 = math.sqrt(2.0)

# Even, so that the alternating Feistel network ends in the (a, b) layout it started in.
# Measured (chi-square of k-subset, pair and Feistel-structure statistics): 6 rounds leave
# detectable bias on unbalanced domains such as 59 x 17; 8 rounds do not, for sides >= 8.
_FEISTEL_ROUNDS = 8

# Longest side ratio of the Feistel domain Z_a x Z_b; an unbalanced network mixes poorly.
_MAX_SIDE_RATIO = 2

# Up to this many rows a column's subset is drawn exactly (top-k of uniform keys). Feistel
# networks on small sides (a, b <= ~5) stay far from uniform even after 8 rounds (for 7 rows,
# sides 4 x 2, the law of 3-subsets is off at p < 1e-9), and top-k costs little here.
_EXACT_SUBSET_FAN_IN = 256

# Int32 indices hold flat positions up to this size; larger kernels use int64.
_INT32_LIMIT = 2**31 - 1


def compute_dtype(dtype: str) -> str:
    """The dtype random draws are made in: float64 for float64, float32 otherwise."""
    return "float64" if dtype == "float64" else "float32"


def _finish(values, dtype: str):
    if keras.backend.standardize_dtype(values.dtype) == dtype:
        return values
    return ops.cast(values, dtype)


def normal(shape, stddev: float, dtype: str, seed):
    """N(0, stddev^2) values of `shape`."""
    return _draw_dense("normal", shape, stddev, dtype, seed)


def uniform(shape, limit: float, dtype: str, seed):
    """U(-limit, limit) values of `shape`."""
    return _draw_dense("uniform", shape, limit, dtype, seed)


def truncated_normal(shape, stddev: float, dtype: str, seed):
    """N(0, stddev^2) truncated to [-2 stddev, 2 stddev], drawn by inverse CDF.

    `stddev` is the standard deviation of the normal *before* truncation; the values have
    standard deviation 0.87962566103423978 * stddev. With w ~ U(-erf(sqrt 2), erf(sqrt 2)),
    z = sqrt(2) erfinv(w) has CDF (Phi(z) - Phi(-2)) / (Phi(2) - Phi(-2)) on [-2, 2]: exactly
    the truncated standard normal, with no rejection loop. (Drawn in float32 for every dtype
    but float64: w has 2**-24 resolution, where erfinv's slope is below 7, so z is resolved to
    about 4e-7.)
    """
    return _draw_dense("truncated_normal", shape, stddev, dtype, seed)


def _draw_dense(law: str, shape, scale: float, dtype: str, seed):
    work_dtype = compute_dtype(dtype)
    values = backend.current().fast_dense_draw(law, shape, scale, work_dtype, seed)
    if values is not None:
        return _finish(values, dtype)
    if law == "normal":
        values = keras.random.normal(shape, mean=0.0, stddev=scale, dtype=work_dtype, seed=seed)
    elif law == "uniform":
        values = keras.random.uniform(
            shape, minval=-scale, maxval=scale, dtype=work_dtype, seed=seed
        )
    else:
        bound = keras.random.uniform(
            shape, minval=-_ERF_SQRT2, maxval=_ERF_SQRT2, dtype=work_dtype, seed=seed
        )
        values = ops.erfinv(bound) * (_SQRT2 * scale)
    return _finish(values, dtype)


def _uniform_to_normal(uniforms, work_dtype: str):
    """Standard normal values from U[0, 1) values by the inverse CDF."""
    eps = 2.0**-52 if work_dtype == "float64" else 2.0**-23
    centred = ops.clip(2.0 * uniforms - 1.0, -1.0 + eps, 1.0 - eps)
    return _SQRT2 * ops.erfinv(centred)


def feistel_sides(fan_in: int) -> tuple[int, int]:
    """Sides (a, b) of the Feistel domain Z_a x Z_b for rows [0, fan_in).

    a >= b, a <= 2 b, a * b >= fan_in and the excess a * b - fan_in is the smallest such;
    it is always below a, since b = ceil(fan_in / a).
    """
    first = math.isqrt(fan_in - 1) + 1 if fan_in > 1 else 1
    best = (first, -(-fan_in // first))
    side_a = first
    while True:
        side_b = -(-fan_in // side_a)
        if side_a > _MAX_SIDE_RATIO * side_b:
            break
        if side_a * side_b - fan_in < best[0] * best[1] - fan_in:
            best = (side_a, side_b)
        if side_a * side_b == fan_in:
            break
        side_a += 1
    return best


def sparse_kernel(fan_in: int, fan_out: int, connections: int, stddev: float, dtype: str, seed):
    """A (fan_in, fan_out) tensor with exactly `connections` non-zeros per column.

    The rows of the non-zeros of each column are a random `connections`-subset of
    [0, fan_in), independent across columns; the non-zeros are i.i.d. N(0, stddev^2) (a value
    that would round to exactly 0 in `dtype` is replaced by the smallest normal number of its
    sign, so that the count is exact). `1 <= connections <= fan_in` and `fan_in * fan_out > 0`
    are the caller's to check.

    Up to `_EXACT_SUBSET_FAN_IN` rows, the subset is the top-k of uniform keys (O(fan_in) per
    column); beyond, the Feistel bijection (O(connections) per column).
    """
    work_dtype = compute_dtype(dtype)
    if connections == fan_in:
        # Every row is used: the kernel is dense and needs no permutation.
        uniforms = keras.random.uniform((fan_in, fan_out), dtype=work_dtype, seed=seed)
        return _nonzero(_uniform_to_normal(uniforms, work_dtype) * stddev, dtype)
    if fan_in <= _EXACT_SUBSET_FAN_IN:
        uniforms = keras.random.uniform(
            (fan_out, fan_in + connections), dtype=work_dtype, seed=seed
        )
        _, rows = ops.top_k(uniforms[:, :fan_in], connections, sorted=False)
        value_uniforms = uniforms[:, fan_in:]
        kept = None
    else:
        rows, value_uniforms, kept = _feistel_rows(fan_in, fan_out, connections, work_dtype, seed)

    values = _nonzero(_uniform_to_normal(value_uniforms, work_dtype) * stddev, dtype)
    if kept is not None:
        values = ops.where(kept, values, ops.zeros((), dtype=dtype))
    index_dtype = "int32" if fan_in * fan_out <= _INT32_LIMIT else "int64"
    columns = ops.arange(fan_out, dtype=index_dtype)[:, None]
    flat_positions = ops.cast(rows, index_dtype) * fan_out + columns
    # Dropped candidates carry the value 0 to a valid position: summing adds nothing.
    dense = ops.segment_sum(
        ops.reshape(values, (-1,)),
        ops.reshape(flat_positions, (-1,)),
        num_segments=fan_in * fan_out,
    )
    return ops.reshape(dense, (fan_in, fan_out))


def _feistel_rows(fan_in: int, fan_out: int, connections: int, work_dtype: str, seed):
    """Rows, value uniforms and keep-mask of the candidates, each (fan_out, candidates).

    `kept` is None when every candidate is kept (a * b == fan_in); otherwise dropped
    candidates have row 0.
    """
    side_a, side_b = feistel_sides(fan_in)
    domain = side_a * side_b
    candidates = min(connections + domain - fan_in, domain)
    table_width = side_a
    table_size = _FEISTEL_ROUNDS * table_width

    uniforms = keras.random.uniform(
        (fan_out, table_size + candidates), dtype=work_dtype, seed=seed
    )
    table_uniforms = uniforms[:, :table_size]
    value_uniforms = uniforms[:, table_size:]

    # Round r adds T_r[right] modulo a (even r) or b (odd r): table entries in [0, modulus).
    moduli = [side_a if r % 2 == 0 else side_b for r in range(_FEISTEL_ROUNDS)]
    round_moduli = ops.reshape(ops.convert_to_tensor(moduli, dtype=work_dtype), (1, -1, 1))
    largest_entry = ops.reshape(ops.convert_to_tensor(moduli, dtype="int32") - 1, (1, -1, 1))
    table_uniforms = ops.reshape(table_uniforms, (fan_out, _FEISTEL_ROUNDS, table_width))
    table = ops.cast(ops.floor(table_uniforms * round_moduli), "int32")
    # Guards against u * modulus rounding up to the modulus itself.
    table = ops.reshape(ops.minimum(table, largest_entry), (-1,))

    rows = _feistel_images(table, fan_out, candidates, side_a, side_b, table_width)
    if candidates == connections:
        return rows, value_uniforms, None
    in_range = rows < fan_in
    rank_in_range = ops.cumsum(ops.cast(in_range, "int32"), axis=1)
    kept = ops.logical_and(in_range, rank_in_range <= connections)
    return ops.where(in_range, rows, 0), value_uniforms, kept


def _feistel_images(table, fan_out: int, candidates: int, side_a: int, side_b: int, width: int):
    """Images of 0 .. candidates-1 under each column's bijection of [0, a*b): (fan_out, candidates).

    x = left * b + right with left in Z_a, right in Z_b. Round r maps (left, right) to
    (right, (left + T_r[right]) mod m_r), m_r = a for even r and b for odd r, so the sides
    alternate and an even number of rounds ends in the (a, b) layout. Each round is a
    bijection, whatever the table T_r of the column.
    """
    positions = ops.arange(candidates, dtype="int32")
    left = ops.broadcast_to(positions // side_b, (fan_out, candidates))
    right = ops.broadcast_to(positions % side_b, (fan_out, candidates))
    column_offsets = ops.arange(fan_out, dtype="int32")[:, None] * (_FEISTEL_ROUNDS * width)
    for round_index in range(_FEISTEL_ROUNDS):
        modulus = side_a if round_index % 2 == 0 else side_b
        lookup = ops.take(table, column_offsets + (round_index * width) + right)
        left, right = right, ops.mod(left + lookup, modulus)
    return left * side_b + right


def _nonzero(values, dtype: str):
    """Cast to `dtype`, replacing entries that are (or round to) exactly 0 by +-tiny.

    A normal value is 0 with probability 0, but erfinv can return 0 and a float16 cast
    flushes |v| < 2**-25 to 0. The smallest non-zero magnitude of `dtype` (with the sign of
    the value) takes its place, i.e. the value is rounded away from 0 instead of to it, so
    the promised non-zero count holds exactly.
    """
    cast = _finish(values, dtype)
    tiny = ops.convert_to_tensor(_SMALLEST_NONZERO[dtype], dtype=dtype)
    signed_tiny = ops.where(values < 0, -tiny, tiny)
    return ops.where(cast == 0, signed_tiny, cast)


# float16 keeps its subnormals (TensorFlow converts halves in software); for the others the
# smallest *normal* number is used, since CPUs running with denormals-are-zero (as
# TensorFlow's threads do) would read a subnormal as 0.
_SMALLEST_NONZERO = {
    "float16": 2.0**-24,
    "bfloat16": 2.0**-126,
    "float32": 2.0**-126,
    "float64": 2.0**-1022,
}
