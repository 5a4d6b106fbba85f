"""Arrays read from weight files: ``.npy``, ``.npz``, ``.weights.h5`` and ``.keras``, no pickle.

`Pretrained` and `transfer` read their source through this module. A file is read once into
memory, its SHA-256 taken from those bytes, and parsed from them, so the checksum always
describes the very bytes the arrays came from. ``.npy`` / ``.npz`` are parsed with
``allow_pickle=False``; ``.weights.h5`` with h5py (a Keras dependency); a ``.keras`` file is a
zip archive whose member ``model.weights.h5`` is that same h5 layout (its ``config.json`` is
never read, so nothing a file names is called or imported).

The h5 layout Keras 3.15 writes
-------------------------------

Every object with variables gets a group ``.../vars`` holding one dataset per variable,
named ``0``, ``1``, ... in the order of the layer's own variables (``layer.weights`` of that
layer alone: trainable first, then non-trainable). The group *keys* come from the class, not
from the layer name: the layers of a model are under ``layers/<snake_case class>[_<n>]``
(``layers/dense``, ``layers/dense_1``, ... counted per class in the model's layer order), and
a nested model's under ``layers/<its key>/layers/...``. The layer's own name is the ``name``
attribute of its ``vars`` group: ``layers/dense/vars`` may belong to ``dense_1``.

So a **layer path** here is the chain of ``name`` attributes from the model down to the layer
(``dense_1``, ``inner/d``, ``lstm/lstm_cell``), as `keras_inits.model.graph.walk` names layers
(a group without a ``name`` attribute is named by its key; the model's own root ``vars`` is
left out). A **variable name** in a weight path ``"<layer path>/<variable>"`` is either the
dataset's index (``"dense_1/0"``) or a name read by the variable order of Keras's own layer
(:data:`VARIABLE_ORDER`, looked up by the class part of the group key): ``"dense_1/kernel"``
is dataset ``0``, ``"dense_1/bias"`` dataset ``1``. A layer saved under an attribute name
instead of ``layers/`` (a recurrent layer's ``cell``, the layers of a subclassed model) has no
class in its key: the layer's name without its counter stands for it, so ``lstm/lstm_cell``
reads by name while a subclassed model's ``self.d = Dense(...)`` reads by index (``"d/0"``).
The variables a model holds itself (the root ``vars``) are reachable by raw path only. A name is only read this way when the
group holds exactly the variables of that order, or all but a last ``bias`` (``use_bias=False``);
any other layout (``BatchNormalization(scale=False)``, custom layers) takes the index or the
raw h5 path (``"layers/dense/vars/0"``), which is always accepted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import zipfile
from typing import Any, Literal

import h5py
import ml_dtypes
import numpy as np

__all__ = [
    "FILE_KINDS",
    "VARIABLE_ORDER",
    "SavedLayer",
    "WeightFile",
    "file_kind",
    "read_file",
    "snake_case",
]

FileKind = Literal["npy", "npz", "weights.h5", "keras"]
#: File suffixes read, in the order they are tested (``.weights.h5`` before a plain ``.h5``).
FILE_KINDS: tuple[tuple[str, str], ...] = (
    (".weights.h5", "weights.h5"),
    (".keras", "keras"),
    (".npz", "npz"),
    (".npy", "npy"),
)
#: The member of a ``.keras`` archive that holds the weights.
KERAS_WEIGHTS_MEMBER = "model.weights.h5"
_VARS = "vars"
_LAYERS = "layers"
_NAME_ATTRIBUTE = "name"
_DTYPE_ATTRIBUTE = "dtype"
BFLOAT16 = "bfloat16"
_OPTIONAL_LAST = "bias"
_KERNEL_AND_BIAS = ("kernel", "bias")

#: Variable order of Keras's layers built with their default arguments, by the class part of
#: the h5 group key (``snake_case`` of the class name).
VARIABLE_ORDER: dict[str, tuple[str, ...]] = {
    **{
        name: _KERNEL_AND_BIAS
        for name in (
            "dense",
            "einsum_dense",
            "conv1d",
            "conv2d",
            "conv3d",
            "conv1d_transpose",
            "conv2d_transpose",
            "conv3d_transpose",
            "depthwise_conv1d",
            "depthwise_conv2d",
        )
    },
    "separable_conv1d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "embedding": ("embeddings",),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "layer_normalization": ("gamma", "beta"),
    "lstm_cell": ("kernel", "recurrent_kernel", "bias"),
    "gru_cell": ("kernel", "recurrent_kernel", "bias"),
    "simple_rnn_cell": ("kernel", "recurrent_kernel", "bias"),
}
_KEY_COUNTER = re.compile(r"_\d+$")
#: Groups that hold no layer: the variables themselves and the optimizer's state.
_SKIPPED_KEYS = frozenset({_VARS, "optimizer"})


def snake_case(name: str) -> str:
    """A class name as Keras's saving names it (``Conv2D`` -> ``conv2d``, ``BatchNormalization``
    -> ``batch_normalization``)."""
    words = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", words).lower()


def file_kind(source: Any) -> tuple[str, FileKind]:
    """The path of an existing weight file and its kind.

    Raises:
        TypeError: If ``source`` is not a str or an ``os.PathLike``.
        ValueError: If it does not exist, is a directory, or has none of the suffixes
            ``.npy``, ``.npz``, ``.weights.h5``, ``.keras``.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "Argument `source` must be the path of a .npy, .npz, .weights.h5 or .keras file "
            f"(a str or os.PathLike). Received: source={source!r}"
        )
    path = os.fspath(source)
    if os.path.isdir(path):
        raise ValueError(
            f"Argument `source` is a directory, not a weight file. Received: source={source!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(f"Argument `source` names no existing file. Received: source={source!r}")
    for suffix, kind in FILE_KINDS:
        if path.endswith(suffix):
            return path, kind  # type: ignore[return-value]
    suffixes = ", ".join(suffix for suffix, _ in FILE_KINDS)
    raise ValueError(
        f"Argument `source` must end in one of {suffixes}. Received: source={source!r}"
    )


@dataclasses.dataclass(frozen=True)
class SavedLayer:
    """The variables one layer saved in an h5 weights file.

    Attributes:
        path: The layer path (chain of layer names, see the module docstring).
        class_key: The class part of the group key (``dense`` for ``layers/dense_1``).
        h5_paths: The h5 path of each variable's dataset, in the layer's variable order.
        arrays: The values, in the same order.
    """

    path: str
    class_key: str
    h5_paths: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]

    def variable_names(self) -> list[str]:
        """The name of each variable by :data:`VARIABLE_ORDER` where it applies, else its index."""
        order = VARIABLE_ORDER.get(self.class_key, ())
        names = []
        for index in range(len(self.arrays)):
            named = index < len(order) and self.index_of(order[index]) == index
            names.append(order[index] if named else str(index))
        return names

    def index_of(self, variable: str) -> int | None:
        """The position of ``variable`` (an index or a name of :data:`VARIABLE_ORDER`), or None."""
        if variable.isdigit():
            index = int(variable)
            return index if index < len(self.arrays) else None
        order = VARIABLE_ORDER.get(self.class_key)
        if order is None:
            return None
        count = len(self.arrays)
        complete = count == len(order)
        without_bias = order[-1] == _OPTIONAL_LAST and count == len(order) - 1
        if not (complete or without_bias) or variable not in order[:count]:
            return None
        return order.index(variable)


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """The parsed content of one weight file.

    Attributes:
        path: The file's path.
        kind: ``"npy"``, ``"npz"``, ``"weights.h5"`` or ``"keras"``.
        sha256: The hex SHA-256 of the file's bytes.
        arrays: For ``.npy`` the one array under the key ``None``; for ``.npz`` key -> array;
            for h5 files raw h5 dataset path -> array.
        layers: For h5 files, layer path -> :class:`SavedLayer` in the file's order; else empty.
    """

    path: str
    kind: str
    sha256: str
    arrays: dict[Any, np.ndarray]
    layers: dict[str, SavedLayer]

    def array(self, name: str | None) -> np.ndarray:
        """The array that ``name`` names (see the module docstring for the forms).

        Raises:
            ValueError: If ``name`` names no array of the file (naming the argument, its value
                and what the file holds).
            TypeError: If ``name`` is not a str (or not None for a ``.npy`` file).
        """
        if self.kind == "npy":
            if name is not None:
                raise ValueError(
                    "A .npy file holds one array: argument `name` must be None. "
                    f"Received: name={name!r}, source={self.path!r}"
                )
            return self.arrays[None]
        if not isinstance(name, str):
            raise TypeError(
                f"Argument `name` must be a str naming an array of {self.path!r}. "
                f"Received: name={name!r}"
            )
        if name in self.arrays:
            return self.arrays[name]
        if self.kind != "npz" and "/" in name:
            layer_path, variable = name.rsplit("/", 1)
            layer = self.layers.get(layer_path)
            index = None if layer is None else layer.index_of(variable)
            if index is not None:
                return layer.arrays[index]
        raise ValueError(
            f"Argument `name` names no weight of {self.path!r}; it holds {self._listing()}. "
            f"Received: name={name!r}"
        )

    def _listing(self) -> str:
        if self.kind == "npz":
            return "the keys " + ", ".join(repr(key) for key in self.arrays)
        described = [
            f"{layer.path}/{{{','.join(layer.variable_names())}}}" for layer in self.layers.values()
            if layer.arrays
        ]
        return "the weights " + ", ".join(described) if described else "no weights"


def read_file(source: Any) -> WeightFile:
    """Reads a weight file once: its SHA-256 and every array in it (no pickle).

    Raises:
        TypeError, ValueError: As `file_kind`; ValueError also for a file that is not what its
            suffix says, or a ``.npy`` / ``.npz`` that holds pickled objects.
    """
    path, kind = file_kind(source)
    with open(path, "rb") as handle:
        content = handle.read()
    sha256 = hashlib.sha256(content).hexdigest()
    try:
        if kind == "npy":
            arrays: dict[Any, np.ndarray] = {None: np.load(io.BytesIO(content), allow_pickle=False)}
            layers: dict[str, SavedLayer] = {}
        elif kind == "npz":
            with np.load(io.BytesIO(content), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            layers = {}
        else:
            h5_bytes = content if kind == "weights.h5" else _keras_weights(content)
            arrays, layers = _read_h5(h5_bytes)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"Argument `source` could not be read as a {kind} file without pickle ({error}). "
            f"Received: source={source!r}"
        ) from None
    return WeightFile(path, kind, sha256, arrays, layers)


def _keras_weights(content: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        if KERAS_WEIGHTS_MEMBER not in archive.namelist():
            raise KeyError(f"no {KERAS_WEIGHTS_MEMBER} in the archive")
        return archive.read(KERAS_WEIGHTS_MEMBER)


def _read_h5(content: bytes) -> tuple[dict[Any, np.ndarray], dict[str, SavedLayer]]:
    arrays: dict[Any, np.ndarray] = {}
    layers: dict[str, SavedLayer] = {}
    with h5py.File(io.BytesIO(content), "r") as h5_file:
        _read_group(h5_file, "", None, arrays, layers)
    return arrays, layers


def _read_group(
    group: h5py.Group,
    key_path: str,
    layer_path: str | None,
    arrays: dict[Any, np.ndarray],
    layers: dict[str, SavedLayer],
) -> None:
    """Depth first: the group's own ``vars``, then its sub-groups in the file's order."""
    variables = group.get(_VARS)
    path = layer_path
    if isinstance(variables, h5py.Group):
        prefix = f"{key_path}/{_VARS}" if key_path else _VARS
        keys = sorted(variables.keys(), key=_variable_order)
        h5_paths = tuple(f"{prefix}/{key}" for key in keys)
        values = tuple(_dataset_array(variables[key]) for key in keys)
        arrays.update(zip(h5_paths, values))
    if isinstance(variables, h5py.Group) and key_path:  # the model's own root ``vars`` is no layer
        key = key_path.rsplit("/", 1)[-1]
        name = variables.attrs.get(_NAME_ATTRIBUTE, key)
        if isinstance(name, bytes):
            name = name.decode()
        path = _unique(f"{layer_path}/{name}" if layer_path else str(name), layers)
        parent_key = key_path.rsplit("/", 2)[-2] if "/" in key_path else ""
        class_key = _KEY_COUNTER.sub("", key if parent_key == _LAYERS else str(name))
        layers[path] = SavedLayer(path, class_key, h5_paths, values)
    for child_key in sorted(group.keys(), key=_model_order):
        child = group[child_key]
        if child_key in _SKIPPED_KEYS or not isinstance(child, h5py.Group):
            continue
        child_key_path = f"{key_path}/{child_key}" if key_path else child_key
        _read_group(child, child_key_path, path, arrays, layers)


def _dataset_array(dataset: h5py.Dataset) -> np.ndarray:
    """A dataset's values; Keras marks bfloat16 ones with a ``dtype`` attribute."""
    if dataset.attrs.get(_DTYPE_ATTRIBUTE) == BFLOAT16:
        return np.array(dataset, dtype=ml_dtypes.bfloat16)
    return np.asarray(dataset)


def _variable_order(key: str) -> tuple[int, int, str]:
    """Datasets ``0``, ``1``, ... ``10`` in number order (any other key after them, by name)."""
    if key.isdigit():
        return 0, int(key), ""
    return 1, 0, key


def _model_order(key: str) -> tuple[str, int]:
    """Keras numbers the keys of one class in the model's order: ``dense``, ``dense_1``, ..."""
    counter = _KEY_COUNTER.search(key)
    if counter is None:
        return key, 0
    return key[: counter.start()], int(counter.group()[1:])


def _unique(path: str, taken: dict[str, Any]) -> str:
    if path not in taken:
        return path
    suffix = 1
    while f"{path}#{suffix}" in taken:
        suffix += 1
    return f"{path}#{suffix}"
