"""Configs read back by `from_config`: nothing a file names is called or imported.

`keras.saving.load_model` rebuilds every initializer from its config and builds every layer,
which calls the initializer. An activation-aware initializer evaluates its activation to
compute its gain, so the activation a config names is checked against an allow-list first (see
`keras_inits.activations.serialization`). The other entries of a keras_inits config call
nothing: `mode`, `distribution` and `layout` are compared against fixed tuples, `sparsity`,
`connections`, `std`, `scale` and `gain` are numbers, and a dict `seed` may only be a
`keras.random.SeedGenerator` config (Keras's own initializers would rebuild any Keras object a
seed config names). A `Pretrained` config names a file (read without pickle, its SHA-256
compared before any array is used) and a fallback initializer, rebuilt only when its config is
a Keras initializer's or a registered ``keras_inits>`` one's (`deserialize_fallback`).
"""

from __future__ import annotations

from typing import Any

import keras

from keras_inits._checks import is_int
from keras_inits.activations.serialization import (
    deserialize_activation,
    deserialize_activation_kwargs,
)

__all__ = ["activation_initializer_config", "deserialize_fallback", "seeded_initializer_config"]

#: What `keras.saving.serialize_keras_object` writes for a `keras.random.SeedGenerator`.
SEED_GENERATOR_CLASS = "SeedGenerator"
SEED_GENERATOR_MODULES = ("keras.random", "keras.src.random.seed_generator")
SEED_GENERATOR_KEYS = frozenset({"module", "class_name", "config", "registered_name"})
#: Kept from the file, so that initializers that shared one generator share it after loading.
SHARED_OBJECT_KEY = "shared_object_id"
SEED_GENERATOR_ARGUMENTS = frozenset({"seed", "name"})
#: Modules whose initializers a `Pretrained` config may name as ``fallback``.
FALLBACK_MODULES = ("keras.initializers", "keras.src.initializers")
#: Prefix of the registered names of keras_inits classes.
REGISTERED_PREFIX = "keras_inits>"


def seeded_initializer_config(config: Any) -> dict[str, Any]:
    """The config of a seeded initializer with its ``"seed"`` entry checked and rebuilt.

    Examples:

    >>> seeded_initializer_config({"scale": 0.1, "seed": 3})
    {'scale': 0.1, 'seed': 3}

    Args:
        config: The dict that `get_config` wrote (and JSON returned).

    Returns:
        A copy of ``config`` whose ``"seed"``, if it is a dict, is the `SeedGenerator` it
        describes.

    Raises:
        TypeError: If ``config`` is not a dict.
        ValueError: If ``"seed"`` is a dict other than a `SeedGenerator` config.
    """
    if not isinstance(config, dict):
        raise TypeError(f"An initializer config must be a dict. Received: config={config!r}")
    config = dict(config)
    if isinstance(config.get("seed"), dict):
        config["seed"] = _seed_generator_from_config(config["seed"])
    return config


def activation_initializer_config(config: Any) -> dict[str, Any]:
    """The config of an activation-aware initializer, checked before anything is called.

    ``"activation"`` goes through `deserialize_activation` (Keras names, `keras.activations`
    functions and registered objects only), ``"activation_kwargs"`` through
    `deserialize_activation_kwargs` (plain values only) and ``"seed"`` through
    `seeded_initializer_config`.

    Examples:

    >>> activation_initializer_config({"activation": "gelu", "activation_kwargs": {}})
    {'activation': 'gelu', 'activation_kwargs': {}}

    Args:
        config: The dict that `get_config` wrote (and JSON returned).

    Returns:
        A copy of ``config`` with the activation as the object it names.

    Raises:
        TypeError: If ``config`` is not a dict.
        ValueError: If the activation, its keyword arguments or the seed is not one of the
            allowed forms; the message names the argument and shows its value.
    """
    config = seeded_initializer_config(config)
    if "activation" in config:
        config["activation"] = deserialize_activation(config["activation"])
    if "activation_kwargs" in config:
        config["activation_kwargs"] = deserialize_activation_kwargs(config["activation_kwargs"])
    return config


def deserialize_fallback(fallback: Any) -> Any:
    """The ``"fallback"`` of a `Pretrained` config, rebuilt only if Keras or keras_inits made it.

    Examples:

    >>> type(deserialize_fallback({"module": "keras.initializers", "class_name": "Zeros",
    ...                            "config": {}, "registered_name": None})).__name__
    'Zeros'

    Args:
        fallback: ``None``, a Keras initializer name, or a serialized initializer.

    Returns:
        ``None``, the name, or the initializer the config describes.

    Raises:
        ValueError: If the config names another module or a registered object outside
            ``keras_inits`` (nothing is imported or called).
    """
    if fallback is None or isinstance(fallback, str):
        return fallback
    registered = fallback.get("registered_name") if isinstance(fallback, dict) else None
    module = fallback.get("module") if isinstance(fallback, dict) else None
    if isinstance(registered, str) and registered.startswith(REGISTERED_PREFIX):
        return keras.saving.deserialize_keras_object(fallback)
    if isinstance(module, str) and module.startswith(FALLBACK_MODULES) and registered is None:
        return keras.saving.deserialize_keras_object(fallback)
    raise ValueError(
        "Argument `fallback` in a config must name a Keras or keras_inits initializer. "
        f"Nothing was built. Received: fallback={fallback!r}"
    )


def _seed_generator_from_config(seed: dict) -> keras.random.SeedGenerator:
    allowed = SEED_GENERATOR_KEYS | {SHARED_OBJECT_KEY}
    unknown = sorted(str(key) for key in seed if key not in allowed)
    arguments = seed.get("config")
    if (
        unknown
        or seed.get("class_name") != SEED_GENERATOR_CLASS
        or seed.get("module") not in SEED_GENERATOR_MODULES
        or seed.get("registered_name") is not None
        or not isinstance(arguments, dict)
        or not set(arguments) <= SEED_GENERATOR_ARGUMENTS
        or not (arguments.get("seed") is None or is_int(arguments.get("seed")))
        or not isinstance(arguments.get("name"), (str, type(None)))
    ):
        raise ValueError(
            "Argument `seed` in a config must be an int, None or the config of a "
            "`keras.random.SeedGenerator` ({'module': 'keras.random', 'class_name': "
            "'SeedGenerator', 'config': {'seed': ..., 'name': ...}, 'registered_name': None}). "
            f"Nothing was built. Received: seed={seed!r}"
        )
    checked = {
        "module": "keras.random",
        "class_name": SEED_GENERATOR_CLASS,
        "config": dict(arguments),
        "registered_name": None,
    }
    if SHARED_OBJECT_KEY in seed:
        checked[SHARED_OBJECT_KEY] = seed[SHARED_OBJECT_KEY]
    generator = keras.saving.deserialize_keras_object(checked)
    if not isinstance(generator, keras.random.SeedGenerator):
        raise ValueError(
            "Argument `seed` in a config names a shared object that is not a "
            f"`keras.random.SeedGenerator`. Received: seed={seed!r}"
        )
    return generator
