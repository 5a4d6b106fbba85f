"""`transfer`: copy the weights of a saved (or live) model into another model, and report it.

Weights are matched layer by layer (a layer's own variables, in their order; a recurrent
layer's cells count as layers of their own, as in the file), by two rules tried in turn:

1. ``"path"``: the layer path in the source equals the one in ``model`` (paths as
   `keras_inits.model.graph.walk` gives them, ``inner/dense_3``; in a file, the chain of the
   layer names it recorded, see `keras_inits.saved_weights`);
2. ``"order"``: among the layers no path matched, the n-th layer of ``model`` of one class
   whose weights have a given list of shapes takes the n-th unmatched source layer of that
   class with those shapes (a model rebuilt with other names), except that a source layer
   whose path is the same once Keras's counters are dropped from every name
   (``bi/forward_gru_1/gru_cell`` and ``bi/forward_gru/gru_cell``: a model built twice in one
   process) is taken first. Classes are compared by Keras's saving name
   (``Conv2D`` -> ``conv2d``); cells by their name without its counter.

Within a matched pair, weight i takes source weight i. Each weight of ``model`` ends as one of
:data:`STATUSES`: ``copied`` (same shape), ``sliced`` (the source's leading block, every axis
at least as long), ``padded`` (the source copied into the leading block, the rest left as
initialized), ``skipped (shape)`` (the shapes do not fit the policy; the weight is left as
initialized) or ``missing`` (no source layer or no weight i in it). Since the order rule
needs equal shapes, ``on_mismatch`` only ever acts on layers matched by path. Only weights of
layers are matched: variables a subclassed model creates itself, outside any layer, are left
alone. Nothing is assigned until every weight is planned, so ``on_mismatch="error"`` leaves
the model unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Iterator, Literal, Mapping, Sequence

import keras
import numpy as np
from keras import ops

from keras_inits import backend
from keras_inits._checks import check_bool, check_choice, check_model
from keras_inits.model.graph import layer_weights, walk
from keras_inits.saved_weights import read_file, snake_case

__all__ = ["MISMATCH_POLICIES", "STATUSES", "TransferReport", "TransferredWeight", "transfer"]

logger = logging.getLogger("keras_inits")

OnMismatch = Literal["skip", "error", "slice", "pad"]
MISMATCH_POLICIES: tuple[str, ...] = ("skip", "error", "slice", "pad")
COPIED = "copied"
SLICED = "sliced"
PADDED = "padded"
SKIPPED = "skipped (shape)"
MISSING = "missing"
#: Every status of a weight, in the order the table counts them.
STATUSES: tuple[str, ...] = (COPIED, SLICED, PADDED, SKIPPED, MISSING)
PATH_RULE = "path"
ORDER_RULE = "order"
_SOURCE_KINDS = ("weights.h5", "keras")
_TABLE_COLUMNS = ("weight", "status", "rule", "source", "shape", "source shape")
_COUNTER_SUFFIX = "_"


@dataclasses.dataclass(frozen=True)
class TransferredWeight:
    """What `transfer` did to one weight of the model.

    Attributes:
        path: The weight's path in the model (``dense_1/kernel``).
        status: One of :data:`STATUSES`.
        rule: ``"path"`` or ``"order"``: how its layer was matched (``None`` if it was not).
        source: The source weight's path (``dense_1/kernel``, ``dense_1/0`` when the file does
            not tell the name), or ``None``.
        shape: The weight's shape.
        source_shape: The source weight's shape, or ``None``.
    """

    path: str
    status: str
    rule: str | None
    source: str | None
    shape: tuple[int, ...]
    source_shape: tuple[int, ...] | None


class TransferReport(Mapping[str, TransferredWeight]):
    """What `transfer` did: weight path -> `TransferredWeight`, in the model's order.

    ``str(report)`` is a table with one row per weight and the count of each status.

    Attributes:
        unused: The source layer paths (with weights) that no layer of the model took.
    """

    def __init__(self, weights: Mapping[str, TransferredWeight], unused: Sequence[str]) -> None:
        self._weights = dict(weights)
        self.unused = tuple(unused)

    def __getitem__(self, path: str) -> TransferredWeight:
        return self._weights[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def counts(self) -> dict[str, int]:
        """How many weights ended in each status (every status listed, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self._weights.values():
            counts[entry.status] += 1
        return counts

    def __str__(self) -> str:
        rows = [_TABLE_COLUMNS] + [
            (
                entry.path,
                entry.status,
                entry.rule or "-",
                entry.source or "-",
                _shape_text(entry.shape),
                _shape_text(entry.source_shape),
            )
            for entry in self._weights.values()
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(_TABLE_COLUMNS))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * width for width in widths))
        lines.append(", ".join(f"{count} {status}" for status, count in self.counts().items()))
        if self.unused:
            lines.append("unused source layers: " + ", ".join(self.unused))
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Group:
    """The own variables of one layer (or cell), on either side."""

    path: str
    class_key: str
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    values: tuple[Any, ...]


def transfer(
    model: keras.Model,
    source: keras.Model | str | os.PathLike,
    *,
    layers: Sequence[str] | None = None,
    on_mismatch: OnMismatch = "skip",
    report: bool = True,
) -> TransferReport:
    """Copy weights from ``source`` into the built ``model``, by layer path, then by order.

    The TF2 counterpart of ``tf.compat.v1.train.init_from_checkpoint`` for Keras 3 files, and
    unlike ``load_weights(skip_mismatch=True)`` it says what was copied. Weights are read
    through ``keras_inits.backend.current().to_numpy`` (live source) or from the file (no
    pickle, no ``config.json``), cast to each variable's dtype and set with
    ``variable.assign``; every weight not copied keeps its initialized value. The matching
    rules and statuses are in the module docstring.

    Examples:

    >>> import keras
    >>> def mlp(head, units):
    ...     return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
    ...                              keras.layers.Dense(units, name=head)])
    >>> mlp("head", 3).save("/tmp/base.keras")
    >>> new = mlp("new_head", 5)
    >>> result = transfer(new, "/tmp/base.keras")
    >>> result["body/kernel"].status, result["body/kernel"].rule, result["new_head/kernel"].status
    ('copied', 'path', 'missing')
    >>> print(result)  # doctest: +NORMALIZE_WHITESPACE
    weight           status   rule  source       shape  source shape
    ---------------  -------  ----  -----------  -----  ------------
    body/kernel      copied   path  body/kernel  4x8    4x8
    body/bias        copied   path  body/bias    8      8
    new_head/kernel  missing  -     -            8x5    -
    new_head/bias    missing  -     -            5      -
    2 copied, 0 sliced, 0 padded, 0 skipped (shape), 2 missing
    unused source layers: head

    Args:
        model: A built keras.Model to copy into.
        source: A ``.keras`` or ``.weights.h5`` file, or a built keras.Model.
        layers: Layer paths of ``model`` to fill (each with everything under it), or ``None``
            for all.
        on_mismatch: For a matched weight of another shape: ``"skip"`` (keep the initialized
            value), ``"error"`` (ValueError, nothing assigned), ``"slice"`` (the source's
            leading block when every axis of it is at least as long), ``"pad"`` (the
            source's leading block copied into the weight's, the rest kept). A weight of
            another rank is always skipped (or an error with ``"error"``).
        report: Whether to log the table (logger ``"keras_inits"``, level INFO).

    Returns:
        A `TransferReport`, weight path -> `TransferredWeight`.

    Raises:
        TypeError: If ``model`` is not a keras.Model, ``source`` is neither a model nor a
            path, ``layers`` is not a sequence of str, or ``report`` not a bool.
        ValueError: If ``model`` (or a source model) is not built; ``source`` is missing, a
            directory, a file of another kind or unreadable; a ``layers`` entry names no
            layer of ``model``; ``on_mismatch`` is unknown; or, with ``"error"``, a matched
            weight has another shape.
    """
    check_model(model)
    on_mismatch = check_choice("on_mismatch", on_mismatch, MISMATCH_POLICIES)
    report = check_bool("report", report)
    _check_built(model, "model")
    targets = _selected(_model_groups(model), model, layers)
    sources = _source_groups(source)
    pairs = _match(targets, sources)
    planned: list[tuple[Any, np.ndarray]] = []
    entries: dict[str, TransferredWeight] = {}
    for target in targets:
        matched = pairs.get(target.path)
        for index, name in enumerate(target.names):
            entry, value = _plan(target, index, name, matched, on_mismatch)
            entries[name] = entry
            if value is not None:
                planned.append((target.values[index], value))
    for variable, value in planned:
        variable.assign(ops.convert_to_tensor(value, dtype=variable.dtype))
    taken = {source_group.path for source_group, _ in pairs.values()}
    unused = [group.path for group in sources if group.path not in taken]
    result = TransferReport(entries, unused)
    if report:
        logger.info("transfer into %s:\n%s", model.name, result)
    return result


def _check_built(model: keras.Model, argument: str) -> None:
    if not model.built:
        raise ValueError(
            f"Argument `{argument}` must be a built model (call it on data or build it first). "
            f"Received: {argument}={model!r}"
        )


def _model_groups(model: keras.Model, read: bool = False) -> list[_Group]:
    """The model's layers (and recurrent cells) with their own variables, in walk order."""
    groups: list[_Group] = []
    for path, layer in walk(model).items():
        owned: dict[str, list[Any]] = {}
        for weight in layer_weights(layer, path):
            owner = weight.path.rsplit("/", 1)[0]
            owned.setdefault(owner, []).append(weight)
        for owner, weights in owned.items():
            if owner == path:
                class_key = snake_case(type(layer).__name__)
            else:
                class_key = _without_counter(owner.rsplit("/", 1)[-1])
            variables = tuple(weight.variable for weight in weights)
            values = variables
            if read:
                values = tuple(backend.current().to_numpy(variable) for variable in variables)
            groups.append(
                _Group(
                    owner,
                    class_key,
                    tuple(weight.path for weight in weights),
                    tuple(weight.shape for weight in weights),
                    values,
                )
            )
    return groups


def _stem(path: str) -> str:
    """A path without Keras's counters: ``bi/forward_gru_1/gru_cell`` -> ``bi/forward_gru/gru_cell``."""
    return "/".join(_without_counter(name) for name in path.split("/"))


def _without_counter(name: str) -> str:
    """A name without Keras's counter: ``lstm_cell_2`` -> ``lstm_cell``."""
    stem, _, counter = name.rpartition(_COUNTER_SUFFIX)
    return stem if stem and counter.isdigit() else name


def _selected(
    groups: list[_Group], model: keras.Model, layers: Sequence[str] | None
) -> list[_Group]:
    if layers is None:
        return groups
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(
            "Argument `layers` must be a sequence of layer paths or None. "
            f"Received: layers={layers!r}"
        )
    known = walk(model)
    for path in layers:
        if not isinstance(path, str) or path not in known:
            raise ValueError(
                f"Argument `layers` names {path!r}, which is not a layer path of the model "
                f"({', '.join(known)}). Received: layers={layers!r}"
            )
    return [
        group
        for group in groups
        if any(group.path == path or group.path.startswith(path + "/") for path in layers)
    ]


def _source_groups(source: Any) -> list[_Group]:
    if isinstance(source, keras.Model):
        _check_built(source, "source")
        return _model_groups(source, read=True)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "Argument `source` must be a keras.Model or the path of a .keras / .weights.h5 file. "
            f"Received: source={source!r}"
        )
    saved = read_file(source)
    if saved.kind not in _SOURCE_KINDS:
        raise ValueError(
            "Argument `source` must be a .keras or .weights.h5 file (use keras_inits.Pretrained "
            f"for a single .npy / .npz array). Received: source={source!r}"
        )
    return [
        _Group(
            layer.path,
            layer.class_key,
            tuple(f"{layer.path}/{name}" for name in layer.variable_names()),
            tuple(array.shape for array in layer.arrays),
            layer.arrays,
        )
        for layer in saved.layers.values()
        if layer.arrays
    ]


def _match(targets: list[_Group], sources: list[_Group]) -> dict[str, tuple[_Group, str]]:
    """Target path -> (source group, rule): by path first, then by order per class and shapes."""
    by_path = {group.path: group for group in sources}
    pairs: dict[str, tuple[_Group, str]] = {}
    for target in targets:
        if target.path in by_path:
            pairs[target.path] = (by_path[target.path], PATH_RULE)
    taken = {source.path for source, _ in pairs.values()}
    remaining = [source for source in sources if source.path not in taken]
    for target in targets:
        if target.path in pairs:
            continue
        candidates = [
            position
            for position, source in enumerate(remaining)
            if source.class_key == target.class_key and source.shapes == target.shapes
        ]
        if not candidates:
            continue
        stem = _stem(target.path)
        same_stem = [position for position in candidates if _stem(remaining[position].path) == stem]
        position = (same_stem or candidates)[0]
        pairs[target.path] = (remaining.pop(position), ORDER_RULE)
    return pairs


def _plan(
    target: _Group, index: int, name: str, matched: tuple[_Group, str] | None, on_mismatch: str
) -> tuple[TransferredWeight, np.ndarray | None]:
    """The entry of one weight, and the value to assign (None to leave it as initialized)."""
    shape = target.shapes[index]
    if matched is None or index >= len(matched[0].values):
        rule = None if matched is None else matched[1]
        return TransferredWeight(name, MISSING, rule, None, shape, None), None
    source, rule = matched
    source_name = source.names[index]
    source_shape = source.shapes[index]
    array = np.asarray(source.values[index])

    def entry(status: str) -> TransferredWeight:
        return TransferredWeight(name, status, rule, source_name, shape, source_shape)

    if source_shape == shape:
        return entry(COPIED), array
    fits_rank = len(source_shape) == len(shape)
    if on_mismatch == "error":
        raise ValueError(
            f"The weight {name!r} has shape {shape} and its source {source_name!r} (matched by "
            f"{rule}) {source_shape}; nothing was assigned. Received: on_mismatch='error'"
        )
    long_enough = fits_rank and all(have >= need for have, need in zip(source_shape, shape))
    if on_mismatch == "skip" or not fits_rank or (on_mismatch == "slice" and not long_enough):
        return entry(SKIPPED), None
    leading = tuple(slice(0, min(have, need)) for have, need in zip(source_shape, shape))
    if long_enough:
        return entry(SLICED), array[leading]
    current = np.array(backend.current().to_numpy(target.values[index]))
    current[leading] = array[leading]
    return entry(PADDED), current


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "x".join(str(dim) for dim in shape) or "scalar"
