"""Safe (de)serialization of activations inside initializer configs.

Loading a model must call nothing that Keras itself would not call. Keras's own layers call an
activation only at predict time, but a keras_inits initializer computes its gain from its
activation when it is built, which `keras.saving.load_model` does. So the activation a config
names is taken from an allow-list before anything is called or imported: a string (resolved
later against `keras.activations` and this package's names), a serialized `keras.activations`
function, or an object registered with `keras.saving.register_keras_serializable` (looked up by
its registered name in Keras's registry and the `custom_objects` of the load, never by importing
the module a config names). `activation_kwargs` from a config must hold plain values only.
"""

from __future__ import annotations

import types
from typing import Any, Callable

import keras
import numpy as np

from keras_inits.activations.arguments import keras_builtin_name
from keras_inits.activations.callables import callable_name
from keras_inits.activations.resolved import ResolvedActivation, check_callable

#: The keys `keras.saving.serialize_keras_object` writes into the config of an object.
SERIALIZED_OBJECT_KEYS = frozenset(
    {
        "module",
        "class_name",
        "config",
        "registered_name",
        "shared_object_id",
        "build_config",
        "compile_config",
    }
)
#: The `"module"` values under which a config may name a `keras.activations` function
#: (`serialize_keras_object` writes "builtins"; None when the key is missing).
KERAS_ACTIVATION_MODULES = (None, "builtins", "keras.activations")
#: Public names of `keras.activations` that are not activations.
KERAS_ACTIVATION_HELPERS = frozenset({"get", "serialize", "deserialize"})
#: The plain values an `activation_kwargs` entry of a config may hold (numpy scalars included).
PLAIN_KWARG_TYPES = (bool, int, float, str, np.bool_, np.integer, np.floating, np.str_)

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


# --------------------------------------------------------------------------------------------
# Deserialization: an allow-list, checked before any call or import.
# --------------------------------------------------------------------------------------------


def deserialize_activation(config: Any) -> str | Callable | None:
    """Inverts :func:`serialize_activation`, calling and importing nothing a config chose.

    ``None`` and strings stay as they are (a string is resolved later against
    ``keras.activations`` and this package's names only). A dict must be one of:

    - a serialized ``keras.activations`` function, ``{"class_name": "function", "config":
      "gelu", "module": "builtins"}`` (``"module"`` may also be ``"keras.activations"`` or
      missing);
    - a serialized function registered with ``keras.saving.register_keras_serializable`` (or
      passed in ``custom_objects``), ``{"class_name": "function", "config": "package>name",
      ...}``: it is looked up by that name, whatever ``"module"`` says;
    - a serialized instance of a registered class, ``{"class_name": "Name", "config": {...},
      "registered_name": "package>Name", ...}``: the class is looked up by its registered name
      and rebuilt by Keras.

    Everything else (a lambda, a function of another Keras module such as
    ``keras.config.set_epsilon``, a module path such as ``os.system``, an unregistered name, a
    Keras built-in class) is refused before any call or import.

    Examples:

    >>> deserialize_activation("gelu")
    'gelu'
    >>> deserialize_activation(
    ...     {"class_name": "function", "config": "tanh", "module": "builtins"}
    ... ).__name__
    'tanh'

    Args:
        config: What :func:`serialize_activation` wrote: ``None``, a string or a dict.

    Returns:
        ``None``, the string, or the function or instance the dict names.

    Raises:
        ValueError: For a dict that names anything other than the objects above; the message
            shows it as ``Received: activation=...``.
        TypeError: For anything other than None, a string or a dict.
    """
    if config is None or isinstance(config, str):
        return config
    if isinstance(config, dict):
        return _deserialize_allowed(config)
    raise TypeError(
        "An activation config must be a string, a dict or None. "
        f"Received: config={config!r} (of type {type(config).__name__})"
    )


def keras_activation_names() -> tuple[str, ...]:
    """The public functions of ``keras.activations`` (without get/serialize/deserialize)."""
    names = []
    for name in dir(keras.activations):
        if name.startswith("_") or name in KERAS_ACTIVATION_HELPERS:
            continue
        if isinstance(getattr(keras.activations, name), types.FunctionType):
            names.append(name)
    return tuple(names)


def _refuse(config: dict, reason: str) -> ValueError:
    return ValueError(
        "activation in a config must be a Keras activation name, a serialized "
        "`keras.activations` function or an object registered with "
        f"`keras.saving.register_keras_serializable`; {reason} Nothing was called or imported. "
        f"Received: activation={config!r}"
    )


def _deserialize_allowed(config: dict) -> Callable:
    """A dict activation config as the object it names, if the allow-list holds it."""
    unknown = sorted(str(key) for key in config if key not in SERIALIZED_OBJECT_KEYS)
    if unknown:
        raise _refuse(config, f"it has keys that Keras does not write: {', '.join(unknown)}.")
    if "class_name" not in config or "config" not in config:
        raise _refuse(config, "it has no 'class_name' and 'config'.")
    class_name = config["class_name"]
    module = config.get("module")
    registered_name = config.get("registered_name", class_name)
    for key, value in (("class_name", class_name), ("module", module)):
        if value is not None and not isinstance(value, str):
            raise _refuse(config, f"its {key!r} is not a string.")
    if registered_name is not None and not isinstance(registered_name, str):
        raise _refuse(config, "its 'registered_name' is not a string.")
    if class_name == "function":
        return _function_from_config(config, module, registered_name)
    return _instance_from_config(config, class_name, registered_name)


def _function_from_config(
    config: dict, module: str | None, registered_name: str | None
) -> Callable:
    # Keras looks a function up by its "config" (the registered name) before anything else.
    name = config["config"]
    if not isinstance(name, str):
        raise _refuse(config, "the 'config' of a function must be its name.")
    registered = keras.saving.get_registered_object(name)
    if registered is not None:
        if isinstance(registered, type) or not callable(registered):
            raise _refuse(config, f"{name!r} is registered, but not as a function.")
        return registered
    if name not in keras_activation_names():
        raise _refuse(
            config, f"{name!r} is neither a registered function nor in keras.activations."
        )
    if module not in KERAS_ACTIVATION_MODULES:
        raise _refuse(config, f"a Keras activation lives in keras.activations, not {module!r}.")
    if registered_name not in (None, "function", name):
        raise _refuse(config, f"a Keras activation has no registered name {registered_name!r}.")
    return getattr(keras.activations, name)


def _instance_from_config(
    config: dict, class_name: str | None, registered_name: str | None
) -> Any:
    if class_name is None or class_name.startswith("__"):
        raise _refuse(config, f"{class_name!r} is not a class (lambdas are refused).")
    if not isinstance(config["config"], dict):
        raise _refuse(config, "the 'config' of a class instance must be a dict.")
    registered = None
    if registered_name is not None:
        registered = keras.saving.get_registered_object(registered_name)
    if not isinstance(registered, type):
        raise _refuse(config, f"no class is registered as {registered_name!r}.")
    # Keras takes the registered class before it looks at "module": the class checked here. A
    # "shared_object_id" would let the config pick any object built earlier in the same load
    # (a layer, say): the instance is built afresh instead.
    fresh = {key: value for key, value in config.items() if key != "shared_object_id"}
    return keras.saving.deserialize_keras_object(fresh)


def deserialize_activation_kwargs(activation_kwargs: Any) -> dict | None:
    """``activation_kwargs`` read from a config: str keys and plain values only.

    Plain values are None, bools, real numbers and strings (numpy scalars included), as JSON
    holds them; a dict, a list or any object is refused, so a config cannot have an activation
    called with an object it chose.

    Examples:

    >>> deserialize_activation_kwargs({"negative_slope": 0.1})
    {'negative_slope': 0.1}

    Args:
        activation_kwargs: The ``"activation_kwargs"`` entry of an initializer config.

    Returns:
        ``activation_kwargs`` itself (None or a dict).

    Raises:
        ValueError: If it is neither None nor a dict, has a key that is not a string, or a
            value that is not plain.
    """
    if activation_kwargs is None:
        return None
    if not isinstance(activation_kwargs, dict):
        raise ValueError(
            "activation_kwargs in a config must be a dict or None. "
            f"Received: activation_kwargs={activation_kwargs!r}"
        )
    for key, value in activation_kwargs.items():
        if not isinstance(key, str):
            raise ValueError(
                f"activation_kwargs in a config must have string keys; {key!r} is not. "
                "Nothing was called. "
                f"Received: activation_kwargs={activation_kwargs!r}"
            )
        if value is not None and not isinstance(value, PLAIN_KWARG_TYPES):
            raise ValueError(
                f"activation_kwargs[{key!r}] in a config must be None, a bool, a number or a "
                f"string, not a {type(value).__name__}. Nothing was called. "
                f"Received: activation_kwargs={activation_kwargs!r}"
            )
    return activation_kwargs
