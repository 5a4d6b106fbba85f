"""Safe (de)serialization of activations inside initializer configs."""

from __future__ import annotations

import types
from typing import Any, Callable

import keras

from keras_inits.activations.arguments import keras_builtin_name
from keras_inits.activations.callables import callable_name
from keras_inits.activations.resolved import ResolvedActivation, check_callable

# --------------------------------------------------------------------------------------------
# Serialization.
# --------------------------------------------------------------------------------------------


def serialize_activation(activation: Any) -> str | dict | None:
    """Turns an activation argument into a JSON-friendly config.

    A name stays the name; a ``keras.activations`` function becomes its name; a function
    registered with ``keras.saving.register_keras_serializable`` (or an instance of a registered
    class with ``get_config``/``from_config``) becomes
    ``keras.saving.serialize_keras_object(activation)``.

    Raises:
        ValueError: For a callable that is not registered (a lambda, a local function):
            ``serialize_keras_object`` would write ``{"config": "f"}`` that no other process can
            load.
        TypeError: For anything that is not a string, a dict, a callable or None.
    """
    if activation is None or isinstance(activation, str):
        return activation
    if isinstance(activation, dict):
        return dict(activation)
    if isinstance(activation, ResolvedActivation):
        raise TypeError(
            "serialize_activation takes the activation as the user gave it, not a "
            f"ResolvedActivation. Received: activation={activation!r}"
        )
    check_callable(activation)
    keras_name = keras_builtin_name(activation)
    if keras_name is not None:
        return keras.activations.serialize(activation)
    if _is_registered(activation):
        return keras.saving.serialize_keras_object(activation)
    name = callable_name(activation)
    raise ValueError(
        f"activation {name!r} cannot be serialized: it is not registered with Keras, so a saved "
        "model could not be reloaded. Define it as a named module-level function decorated with "
        "`@keras.saving.register_keras_serializable(package=...)`. "
        f"Received: activation={activation!r}"
    )


def _is_registered(activation: Any) -> bool:
    """Whether Keras can find ``activation`` (a function) or its class again by name."""
    target = activation if isinstance(activation, types.FunctionType) else type(activation)
    if isinstance(activation, types.FunctionType) and activation.__name__ == "<lambda>":
        return False
    if not isinstance(activation, types.FunctionType) and not (
        hasattr(activation, "get_config") and hasattr(type(activation), "from_config")
    ):
        return False  # an instance Keras could serialize but not rebuild
    try:
        registered_name = keras.saving.get_registered_name(target)
    except AttributeError:
        return False
    return keras.saving.get_registered_object(registered_name) is target


def deserialize_activation(config: Any) -> str | Callable | None:
    """Inverts :func:`serialize_activation`: ``None`` and names stay, dicts become callables.

    Raises:
        TypeError: For anything other than None, a string or a dict.
    """
    if config is None or isinstance(config, str):
        return config
    if isinstance(config, dict):
        return keras.saving.deserialize_keras_object(config)
    raise TypeError(
        "An activation config must be a string, a dict or None. "
        f"Received: config={config!r} (of type {type(config).__name__})"
    )
