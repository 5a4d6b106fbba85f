"""The one registry of what keras_inits knows about each activation.

Per Keras activation name, `REGISTRY` holds an `ActivationSpec`: its NumPy closed form (value,
derivative and kinks, given its keyword arguments), its output bounds (where a unit
saturates), its closed-form Gaussian moments, and the Keras layer classes that apply it
(`keras.layers.ReLU` applies relu, ...). `layer_activation` reads the activation a layer
applies to its own output; `bounds` the saturation bounds of an activation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras

from keras_inits import backend
from keras_inits.activations.closed_forms import ALIASES, CLOSED_FORMS, NOT_ELEMENTWISE
from keras_inits.activations.moments import closed_form_moment

__all__ = [
    "ACTIVATION_LAYER_TYPES",
    "FUSED_ACTIVATION_LAYER_TYPES",
    "REGISTRY",
    "ActivationSpec",
    "bounds",
    "layer_activation",
]

Bounds = tuple[float | None, float | None]

# Output bounds of the bounded activations at their Keras defaults (None: unbounded side).
_FIXED_BOUNDS: dict[str, Bounds] = {
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "sparse_sigmoid": (0.0, 1.0),
    "relu6": (None, 6.0),
}


def _relu_bounds(kwargs: dict[str, Any]) -> Bounds | None:
    """relu saturates only at a `max_value` (its lower side is the dead side, not a bound)."""
    max_value = kwargs.get("max_value")
    return None if max_value is None else (None, float(max_value))


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """What the package knows about one Keras activation.

    Attributes:
        name: The canonical Keras name.
        closed_form: `factory(**kwargs) -> (phi, phi', kinks)` as float64 NumPy functions.
        bounds: `bounds(kwargs) -> (lower, upper) | None`: where the output saturates.
        moments: `moments(kwargs, quantity) -> float | None`: closed-form Gaussian moments
            (see `keras_inits.activations.moments`).
        layer_types: The Keras layer classes that apply this activation to their input.
    """

    name: str
    closed_form: Callable[..., tuple]
    bounds: Callable[[dict[str, Any]], Bounds | None]
    moments: Callable[[dict[str, Any], str], float | None]
    layer_types: tuple[type, ...] = ()


def _fixed_bounds(name: str) -> Callable[[dict[str, Any]], Bounds | None]:
    value = _FIXED_BOUNDS.get(name)
    return lambda kwargs: value


def _moments_of(name: str) -> Callable[[dict[str, Any], str], float | None]:
    return lambda kwargs, quantity: closed_form_moment(name, kwargs, quantity)


_LAYER_TYPES: dict[str, tuple[type, ...]] = {
    "relu": (keras.layers.ReLU,),
    "leaky_relu": (keras.layers.LeakyReLU, keras.layers.PReLU),
    "elu": (keras.layers.ELU,),
}

#: Every element-wise Keras activation with a closed form, by canonical name.
REGISTRY: dict[str, ActivationSpec] = {
    name: ActivationSpec(
        name=name,
        closed_form=factory,
        bounds=_relu_bounds if name == "relu" else _fixed_bounds(name),
        moments=_moments_of(name),
        layer_types=_LAYER_TYPES.get(name, ()),
    )
    for name, factory in CLOSED_FORMS.items()
}

#: Layers that exist to apply an activation (element-wise or not, as `Softmax`).
ACTIVATION_LAYER_TYPES: tuple[type, ...] = (
    keras.layers.Activation,
    *(layer_type for spec in REGISTRY.values() for layer_type in spec.layer_types),
    keras.layers.Softmax,
)

#: Layers whose `activation` attribute is applied to their own output (last, after the
#: kernel). Other layers may have an `activation` attribute that configures something inside
#: (keras-hub's TransformerEncoder, LSTM): it is not their output activation.
FUSED_ACTIVATION_LAYER_TYPES: tuple[type, ...] = (
    keras.layers.Activation,
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)

# keras.layers.ReLU's keyword arguments at their defaults: those are not reported.
_RELU_LAYER_DEFAULTS = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}


def _canonical_name(activation: Any) -> str | None:
    """The canonical Keras name of a name or a Keras activation function, else None."""
    if isinstance(activation, str):
        name = activation
    else:
        name = getattr(activation, "__name__", None)
        if not isinstance(name, str) or _builtin(name) is not activation:
            return None
    return ALIASES.get(name, name)


def _builtin(name: str) -> Callable | None:
    """Keras's activation function of that name, or None."""
    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):
        return None


def bounds(activation: Any, **kwargs: Any) -> Bounds | None:
    """The output bounds `(lower, upper)` of an activation, or None if it has none.

    A side is None when the output is unbounded there. relu is bounded only by a
    `max_value` (its zero side is where units die, not where they saturate).

    Examples:

    >>> bounds("tanh")
    (-1.0, 1.0)
    >>> bounds("relu", max_value=4.0)
    (None, 4.0)
    >>> bounds("gelu") is None
    True

    Args:
        activation: A Keras activation name or function (a custom callable has no known
            bounds: None).
        **kwargs: The activation's keyword arguments.

    Returns:
        `(lower, upper)` with None for an unbounded side, or None.
    """
    name = _canonical_name(activation)
    spec = REGISTRY.get(name) if name is not None else None
    if spec is None:
        return None
    return spec.bounds(kwargs)


def layer_activation(layer: keras.layers.Layer) -> tuple[str | Callable, dict[str, Any]] | None:
    """The activation a layer applies to its own output, as `(name_or_callable, kwargs)`.

    - activation layers: `ReLU` -> `("relu", non-default kwargs)`, `LeakyReLU` ->
      `("leaky_relu", {"negative_slope": a})`, `ELU` -> `("elu", {"alpha": a})`, `PReLU` ->
      `("leaky_relu", {"negative_slope": mean of its alphas})`, `Softmax` -> `("softmax", {})`
      (not element-wise: gains refuse it);
    - `Activation` layers and the layers in `FUSED_ACTIVATION_LAYER_TYPES` (Dense, Conv*,
      EinsumDense, ... and their subclasses): their `activation` attribute, as a Keras name
      when it is a Keras activation function, else the callable itself;
    - anything else, or a linear activation: None. An `activation` attribute of any other
      layer (keras-hub's TransformerEncoder configures its feed-forward layer with it, LSTM
      its cell) is not its output activation.

    Examples:

    >>> layer_activation(keras.layers.Dense(3, activation="gelu"))
    ('gelu', {})
    >>> layer_activation(keras.layers.LeakyReLU(0.1))
    ('leaky_relu', {'negative_slope': 0.1})
    >>> layer_activation(keras.layers.Dense(3)) is None
    True

    Args:
        layer: A Keras layer (a PReLU must be built for its alphas to exist).

    Returns:
        `(name_or_callable, kwargs)` or None.
    """
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        kwargs = {
            key: config[key]
            for key, default in _RELU_LAYER_DEFAULTS.items()
            if config.get(key) != default
        }
        return "relu", kwargs
    if isinstance(layer, keras.layers.LeakyReLU):
        return "leaky_relu", {"negative_slope": float(layer.negative_slope)}
    if isinstance(layer, keras.layers.ELU):
        return "elu", {"alpha": float(layer.alpha)}
    if isinstance(layer, keras.layers.PReLU):
        slope = float(backend.current().to_numpy(layer.alpha).mean())
        return "leaky_relu", {"negative_slope": slope}
    if isinstance(layer, keras.layers.Softmax):
        return "softmax", {}
    if not isinstance(layer, FUSED_ACTIVATION_LAYER_TYPES):
        return None
    activation = getattr(layer, "activation", None)
    if not callable(activation) or activation is keras.activations.linear:
        return None
    name = _canonical_name(activation)
    if name is not None and (name in REGISTRY or name in NOT_ELEMENTWISE):
        return name, {}
    return activation, {}
