"""Initializers: He, Xavier, Sparse, Dirac, the orthogonal family, ScaledRandom, Pretrained.

Every class is a `keras.initializers.Initializer` registered as ``"keras_inits>Name"`` (the
registered names are those of 0.1, so ``.keras`` files written by 0.1 still load):

- `base`: argument checks, dtypes, seeds and the dense draw every class shares;
- `variance`: `He`, `Xavier`; `sparse`: `Sparse`; `structured`: `Dirac`;
  `scaled`: `ScaledRandom`; `orthogonal`: `ScaledOrthogonal`, `DeltaOrthogonal` and the Haar
  draw they share; `mirrored`: `LooksLinear`; `pretrained`: `Pretrained` (an array read
  from a file, checked by its SHA-256).
"""

from keras_inits.initializers.base import TRUNCATED_NORMAL_STD
from keras_inits.initializers.mirrored import LooksLinear
from keras_inits.initializers.orthogonal import DeltaOrthogonal, ScaledOrthogonal
from keras_inits.initializers.pretrained import Pretrained
from keras_inits.initializers.scaled import ScaledRandom
from keras_inits.initializers.sparse import DEFAULT_CONNECTIONS, Sparse
from keras_inits.initializers.structured import Dirac
from keras_inits.initializers.variance import He, Xavier

__all__ = [
    "DEFAULT_CONNECTIONS",
    "TRUNCATED_NORMAL_STD",
    "DeltaOrthogonal",
    "Dirac",
    "He",
    "LooksLinear",
    "Pretrained",
    "ScaledOrthogonal",
    "ScaledRandom",
    "Sparse",
    "Xavier",
]
