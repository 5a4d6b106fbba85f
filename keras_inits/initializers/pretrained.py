"""`Pretrained`: a weight read from a file, by reference, so that the model saves and reloads."""

from __future__ import annotations

import os
from typing import Any, Literal

import keras
import ml_dtypes
import numpy as np
from keras import ops

from keras_inits import backend
from keras_inits.initializers.configs import deserialize_fallback
from keras_inits.initializers.base import FLOAT_DTYPES, check_choice, standardize_call
from keras_inits.initializers.variance import He
from keras_inits.saved_weights import read_file

__all__ = ["MISMATCH_POLICIES", "Pretrained"]

OnMismatch = Literal["error", "slice", "pad"]
MISMATCH_POLICIES: tuple[str, ...] = ("error", "slice", "pad")
_SHA256_LENGTH = 64
_HEX_DIGITS = frozenset("0123456789abcdef")


@keras.saving.register_keras_serializable(package="keras_inits")
class Pretrained(keras.initializers.Initializer):
    """A weight copied from an array saved in a file.

    The config holds the file's path, the array's name and the file's SHA-256, never the
    array, so a model built with it saves to ``.keras`` and reloads (after
    ``import keras_inits``) as long as the file is there, unchanged: every call reads the file
    again and compares its checksum first.

    ``source`` is one of:

    - ``.npy``: one array; ``name`` must be ``None``;
    - ``.npz``: ``name`` is the key (``np.savez(path, kernel=...)`` -> ``"kernel"``);
    - ``.weights.h5`` (``model.save_weights``) or ``.keras`` (``model.save``): ``name`` is a
      weight path ``"<layer path>/<variable>"`` such as ``"dense_1/kernel"`` or
      ``"encoder/conv/bias"``, the variable being a name of Keras's own layers or the index
      of the variable in its layer (``"dense_1/0"``), or the raw h5 path
      (``"layers/dense/vars/0"``); see `keras_inits.saved_weights` for the rule.

    ``.npy`` / ``.npz`` are read with ``allow_pickle=False``; a ``.keras`` file's
    ``config.json`` is never read. The values are cast to the dtype Keras asks for (the
    layer's). When the array's shape differs from the weight's, ``on_mismatch`` decides:

        "error": ValueError;
        "slice": W = A[:n_1, ..., :n_k]  (every axis of A at least as long as the weight's);
        "pad":   W = fallback(shape), then W[:m_1, ..., :m_k] = A[:m_1, ..., :m_k],
                 m_i = min(n_i, a_i)  (the rest stays the fallback's draw).

    The rank must match under every policy.

    Examples:

    >>> # Standalone usage:
    >>> np.save("/tmp/kernel.npy", np.ones((4, 3), "float32"))
    >>> initializer = Pretrained("/tmp/kernel.npy")
    >>> values = initializer(shape=(4, 3))

    >>> # Usage in a Keras layer, from a saved model:
    >>> source = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense_1")])
    >>> source.save("/tmp/source.keras")
    >>> layer = keras.layers.Dense(
    ...     3, kernel_initializer=Pretrained("/tmp/source.keras", "dense_1/kernel"))

    Args:
        source: The path of a ``.npy``, ``.npz``, ``.weights.h5`` or ``.keras`` file. Kept as
            given (a relative path is read relative to the working directory of each call).
        name: ``None`` for a ``.npy``; the key or weight path otherwise.
        sha256: The file's expected SHA-256 (64 hex digits). When ``None`` it is computed
            here, at construction, from the file as it is now.
        on_mismatch: ``"error"``, ``"slice"`` or ``"pad"`` (see above).
        fallback: The initializer that fills what ``"pad"`` cannot copy: an initializer or
            its identifier; ``None`` for ``keras_inits.He()``. Saved in the config.

    Raises:
        ValueError: At construction, if ``source`` does not exist, is a directory, has another
            suffix or holds pickled objects; if ``name`` names no array of it (or is not None
            for a ``.npy``); if ``sha256`` is malformed or differs from the file's; if
            ``on_mismatch`` is unknown. At call, if the file's checksum differs from
            ``sha256``, or the shapes do not fit the policy.
        TypeError: If ``source`` is not a path, ``name`` not a str, or ``fallback`` not an
            initializer.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        *,
        sha256: str | None = None,
        on_mismatch: OnMismatch = "error",
        fallback: Any = None,
    ) -> None:
        self.on_mismatch = check_choice("on_mismatch", on_mismatch, MISMATCH_POLICIES)
        self.fallback = _check_fallback(fallback)
        if sha256 is not None:
            sha256 = _check_sha256(sha256)
        saved = read_file(source)
        array = saved.array(name)
        _check_numeric(array, source, name)
        self.source = saved.path
        self.name = name
        self.sha256 = saved.sha256 if sha256 is None else sha256
        self._check_unchanged(saved.sha256)

    def __call__(self, shape, dtype=None):
        shape, dtype = standardize_call(shape, dtype)
        saved = read_file(self.source)
        self._check_unchanged(saved.sha256)
        array = saved.array(self.name)
        if array.shape == shape:
            return ops.convert_to_tensor(array, dtype=dtype)
        if len(array.shape) != len(shape):
            raise self._mismatch(array.shape, shape, "the ranks differ, which no policy can fit")
        leading = tuple(slice(0, min(have, need)) for have, need in zip(array.shape, shape))
        if self.on_mismatch == "slice":
            if any(have < need for have, need in zip(array.shape, shape)):
                advice = 'an axis is too short to slice; use on_mismatch="pad"'
                raise self._mismatch(array.shape, shape, advice)
            return ops.convert_to_tensor(array[leading], dtype=dtype)
        if self.on_mismatch == "error":
            raise self._mismatch(array.shape, shape, 'use on_mismatch="slice" or "pad" to fit it')
        values = np.array(backend.current().to_numpy(self.fallback(shape, dtype=dtype)))
        values[leading] = array[leading]
        return ops.convert_to_tensor(values, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "sha256": self.sha256,
            "on_mismatch": self.on_mismatch,
            "fallback": keras.initializers.serialize(self.fallback),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Pretrained":
        """Rebuilds the initializer; the fallback may only be a Keras or keras_inits initializer.

        Raises:
            TypeError: If ``config`` is not a dict.
            ValueError: If the fallback's config names another module, or as the constructor
                (a changed file fails here, with the checksum message).
        """
        if not isinstance(config, dict):
            raise TypeError(f"An initializer config must be a dict. Received: config={config!r}")
        config = dict(config)
        config["fallback"] = deserialize_fallback(config.get("fallback"))
        return cls(**config)

    def _check_unchanged(self, actual: str) -> None:
        if actual != self.sha256:
            raise ValueError(
                f"The checksum of {self.source!r} differs from the one this initializer was made "
                f"with: the file changed. Expected: sha256={self.sha256!r}. "
                f"Actual: sha256={actual!r}"
            )

    def _mismatch(self, have: tuple[int, ...], need: tuple[int, ...], advice: str) -> ValueError:
        return ValueError(
            f"The array {self.name!r} of {self.source!r} has shape {have}, the weight {need}: "
            f"{advice}. Received: on_mismatch={self.on_mismatch!r}"
        )


def _check_sha256(sha256: Any) -> str:
    well_formed = isinstance(sha256, str) and len(sha256) == _SHA256_LENGTH
    if not well_formed or not set(sha256.lower()) <= _HEX_DIGITS:
        raise ValueError(
            f"Argument `sha256` must be 64 hex digits or None. Received: sha256={sha256!r}"
        )
    return sha256.lower()


def _check_numeric(array: np.ndarray, source: Any, name: str | None) -> None:
    if array.dtype.kind not in "biuf" and array.dtype != ml_dtypes.bfloat16:
        raise ValueError(
            f"Argument `name` names an array of dtype {array.dtype} in {source!r}; a weight needs "
            f"numbers (one of {', '.join(FLOAT_DTYPES)} or an integer dtype). "
            f"Received: name={name!r}"
        )


def _check_fallback(fallback: Any) -> keras.initializers.Initializer:
    if fallback is None:
        return He()
    try:
        initializer = keras.initializers.get(fallback)
    except (ValueError, TypeError):
        initializer = None
    if not isinstance(initializer, keras.initializers.Initializer):
        raise TypeError(
            "Argument `fallback` must be a keras.initializers.Initializer, its name or its "
            f"config, or None. Received: fallback={fallback!r}"
        )
    return initializer
