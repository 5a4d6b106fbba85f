"""keras_inits: activation-aware initializers for Keras 3, and the measurements that prove them.

Importing this package registers every initializer with Keras's serialization, so that
``keras.models.load_model`` can rebuild models that use them (import it *before* loading).
"""

__version__ = "0.1.0"

from keras_inits.fans import compute_fans
