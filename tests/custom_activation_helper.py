"""A registered custom activation, imported by the tests and by the process that loads their files."""

import keras


@keras.saving.register_keras_serializable(package="keras_inits_tests")
def scaled_tanh(x):
    """LeCun's 1.7159 tanh(2x / 3)."""
    return 1.7159 * keras.ops.tanh(2.0 * x / 3.0)
