"""Independent per-layer seeds derived from one user seed."""

from __future__ import annotations

import numpy as np

#: Derived seeds are non-negative int32 values, which every Keras backend accepts.
_SEED_BITS = 31


def derive_seed(seed: int | None, index: int) -> int | None:
    """The seed of layer ``index`` for a whole-model operation seeded with ``seed``.

    ``seed + index`` would make ``seed=1`` reuse the kernels of ``seed=0`` shifted by one
    layer; a ``SeedSequence`` of ``(seed, index)`` gives streams that are independent across
    both arguments. ``None`` stays ``None`` (fresh values).

    Examples:

    >>> derive_seed(0, 1) != derive_seed(1, 0)
    True
    >>> derive_seed(None, 3) is None
    True
    """
    if seed is None:
        return None
    state = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0]
    return int(state >> (32 - _SEED_BITS))
