"""0.1's import path of the activation helpers: a re-export of `keras_inits.activations`.

Kept for modules that still import from here (stats.py, reinit.py, _probe.py); new code
imports `keras_inits.activations`.
"""

from keras_inits.activations import (  # noqa: F401
    ALIASES,
    CLOSED_FORMS,
    NOT_ELEMENTWISE,
    ResolvedActivation,
    activation_derivative,
    activation_kinks,
    cache_key,
    deserialize_activation,
    resolve_activation,
    serialize_activation,
)
