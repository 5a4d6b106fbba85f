"""What keras_inits knows about activations, in one place.

An activation may be given as a Keras name (``"gelu"``), a Keras activation function
(``keras.activations.gelu``), ``None`` (linear), a serialized config ``dict`` or any
element-wise Python callable. `resolve_activation` turns each into a `ResolvedActivation`
(a float64 NumPy function with its derivative and kinks) that `keras_inits.gains`
integrates.

- `registry`: `REGISTRY` (per Keras activation: closed form, bounds, closed-form moments,
  the layer classes that apply it), `bounds`, `layer_activation`, `ACTIVATION_LAYER_TYPES`;
- `closed_forms`: the NumPy closed forms; `moments`: closed-form Gaussian moments;
- `resolve`, `arguments`, `callables`, `resolved`: resolving names, keyword arguments and
  custom callables; `serialization`: safe (de)serialization inside configs.
"""

from keras_inits.activations.closed_forms import ALIASES, CLOSED_FORMS, NOT_ELEMENTWISE
from keras_inits.activations.moments import QUANTITIES, closed_form_moment
from keras_inits.activations.registry import (
    ACTIVATION_LAYER_TYPES,
    FUSED_ACTIVATION_LAYER_TYPES,
    REGISTRY,
    ActivationSpec,
    bounds,
    layer_activation,
)
from keras_inits.activations.resolve import (
    activation_derivative,
    activation_kinks,
    resolve_activation,
)
from keras_inits.activations.resolved import ResolvedActivation, cache_key
from keras_inits.activations.serialization import deserialize_activation, serialize_activation

__all__ = [
    "ACTIVATION_LAYER_TYPES",
    "ALIASES",
    "CLOSED_FORMS",
    "FUSED_ACTIVATION_LAYER_TYPES",
    "NOT_ELEMENTWISE",
    "QUANTITIES",
    "REGISTRY",
    "ActivationSpec",
    "ResolvedActivation",
    "activation_derivative",
    "activation_kinks",
    "bounds",
    "cache_key",
    "closed_form_moment",
    "deserialize_activation",
    "layer_activation",
    "resolve_activation",
    "serialize_activation",
]
