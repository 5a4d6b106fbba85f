"""What keras_inits knows about a model: its layers, their weights, and how data flows.

:mod:`keras_inits.model.graph` is the only module of the package that walks a model; the
probe, ``lsuv`` and ``reinitialize`` all ask it.
"""

from keras_inits.model.graph import (
    DRAWN_ROLES,
    FLOAT_DTYPES,
    KERNEL_ROLES,
    LINEAR,
    FeedingActivation,
    ModelGraph,
    Node,
    Weight,
    children,
    einsum_fans,
    layer_weights,
    model_graph,
    own_variables,
    sample_inputs,
    walk,
    weight_fans,
)

__all__ = [
    "DRAWN_ROLES",
    "FLOAT_DTYPES",
    "KERNEL_ROLES",
    "LINEAR",
    "FeedingActivation",
    "ModelGraph",
    "Node",
    "Weight",
    "children",
    "einsum_fans",
    "layer_weights",
    "model_graph",
    "own_variables",
    "sample_inputs",
    "walk",
    "weight_fans",
]
